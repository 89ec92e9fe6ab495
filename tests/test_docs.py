"""docs/usage.md's signature lines name every parameter the API takes
(shmring/_ring.pyi, which stubtest holds to the extension)."""
import ast
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
CALL = re.compile(r"(?:shmring\.Ring|\bring)\.(create|attach|open_or_create|producer|consumer)"
                  r"\(([^)]*)\)", re.DOTALL)


def parameters(arglist):
    """The parameter names of `def f(arglist)`, or None if that is not Python."""
    try:
        (fn,) = ast.parse(f"def f({arglist}): pass").body
    except SyntaxError:
        return None
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs
            if p.arg != "self" and not p.arg.startswith("_")]      # _start: a test hook


def stub_parameters():
    """Ring's methods in the stubs: name -> parameter names."""
    with open(os.path.join(ROOT, "shmring", "_ring.pyi")) as f:
        tree = ast.parse(f.read())
    (ring,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Ring"]
    return {fn.name: parameters(ast.unparse(fn.args)) for fn in ring.body
            if isinstance(fn, ast.FunctionDef)}


@pytest.mark.parametrize("method", ["create", "attach", "open_or_create", "producer",
                                    "consumer"])
def test_usage_signature_lines_are_complete(method):
    with open(os.path.join(ROOT, "docs", "usage.md")) as f:
        shown = [parameters(args) for name, args in CALL.findall(f.read()) if name == method]
    assert stub_parameters()[method] in shown, (
        f"docs/usage.md has no line showing all of {method}()'s parameters")
