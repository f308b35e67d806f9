"""Where a benchmark's markdown goes: the terminal, and a file when one is named."""


def publish(text, out=None):
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def command(default_out, make_text):
    """A benchmark's command line: ``--out`` (default ``default_out``), torch on one thread, the text published."""
    import argparse
    from pathlib import Path

    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(default_out))
    args = parser.parse_args()
    torch.set_num_threads(1)
    publish(make_text(), args.out)
