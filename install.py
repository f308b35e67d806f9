"""Run by ComfyUI-Manager on install and by the A1111/Forge WebUI at every start.

It must be idempotent, fast, work offline, exit 0, and never install or upgrade torch. The pack
needs only numpy and tqdm besides torch, and every host already has them, so this only checks
and says what is missing; it installs nothing.
"""

import importlib.util
import os
import sys

REQUIRED = ("numpy", "tqdm", "torch")


def main():
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    log = os.environ.get("DEIS_INSTALL_LOG")  # set by the tests, to see that a host ran this file
    if log:
        with open(log, "a") as f:
            f.write(f"install.py ran in {os.getcwd()}; missing: {', '.join(missing) or 'nothing'}\n")
    if missing:
        print(f"[DEIS samplers] missing Python packages: {', '.join(missing)}; "
              f"install them into this interpreter ({sys.executable}) with pip", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
