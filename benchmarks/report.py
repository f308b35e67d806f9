"""Where a benchmark's markdown goes: the terminal, and a file when one is named."""


def publish(text, out=None):
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
