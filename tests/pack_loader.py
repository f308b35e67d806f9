"""The pack loaded as ComfyUI loads it: by path, as a package under a name that is not its folder's. Without
ComfyUI its registration does nothing, so the node logic runs in the default test suite."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE = "deis_pack_under_test"


def load_pack():
    if MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(MODULE, REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE] = module
        spec.loader.exec_module(module)
    return sys.modules[MODULE]
