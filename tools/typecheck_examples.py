"""Type-check the code users copy: every ```python block of README.md and
every docs/examples/*.py, with mypy --strict against this tree's shmring
(its stubs and annotations), under the mypy settings in pyproject.toml.

    python tools/typecheck_examples.py      # exit status 1 on any error

Each README block is its own module, padded with blank lines so that mypy's
line numbers are README.md's; its errors are reported against README.md."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the first line, code) of each ```python block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def main() -> int:
    blocks = readme_blocks((ROOT / "README.md").read_text())
    if not blocks:
        print("README.md has no ```python block: nothing to check", file=sys.stderr)
        return 1
    examples = sorted(str(p) for p in (ROOT / "docs" / "examples").glob("*.py"))
    with tempfile.TemporaryDirectory() as tmp:
        copies = []
        for i, (line, code) in enumerate(blocks, 1):
            path = pathlib.Path(tmp) / f"readme_example_{i}.py"
            path.write_text("\n" * (line - 1) + code)
            copies.append(str(path))
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
             *copies, *examples],
            cwd=ROOT, capture_output=True, text=True)
    report = result.stdout
    for copy in copies:
        report = report.replace(copy, "README.md")
    print(f"{len(blocks)} README block(s), {len(examples)} docs/examples file(s): ", end="")
    print(report, end="")
    print(result.stderr, end="", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
