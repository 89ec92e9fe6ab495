"""The aarch64 audit: each atomic of the core, from a table, in aarch64 code.

x86 hides a missing acquire or release (its loads and stores are ordered
anyway, and GCC emits the same mov for a relaxed store as for a release);
aarch64 does not.  No aarch64 machine is at hand, and qemu-user would not
emulate its weak memory anyway, so the audit reads the machine code instead.
It cross-compiles _core.pyx with gcc-aarch64-linux-gnu (-O2, a release build
or a mutant), twice: for armv8-a, where read-modify-writes call GCC's outline
atomics (what a distribution's wheel gets), and for armv8.1-a, where they are
LSE instructions inline (what -march=native gets on recent cores); with #line
directives, so that the debug info names _core.pyx lines.  It holds each row
of the table of atomics to the instructions of its line:

    acquire load                  ldar / ldapr
    release store                 stlr
    seq_cst fence                 dmb ish
    read-modify-write (cas, fetch_add, exchange)
                                  exactly the orders it claims: a call to
                                  __aarch64_<op><bytes>_<relax|acq|rel|acq_rel>,
                                  or the same op inline (LSE, -march=armv8.1-a)
    relaxed load or store         listed; no instruction to check

The table is parsed from _core.pyx (each call of atomics.pxd's functions,
its width and its orders) and mutants.pxd (what its macros are in a correct
build, from the C preprocessor).  A row must be found, with its instruction,
in every function that its line was compiled into: inlining may copy a line,
never drop its barrier.

    python -m stress.aarch64 [--table] [--mutant NAME]

The Python headers are the host's: the extension ABI is the same on x86-64
and aarch64 Linux (LP64, little-endian), which the audit checks in
pyconfig.h before it uses it; the C library headers are the cross
compiler's own."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass

from shmring.testing import processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CC, OBJDUMP = "aarch64-linux-gnu-gcc", "aarch64-linux-gnu-objdump"
CFLAGS = ["-O2", "-g", "-fPIC", "-fwrapv", "-fno-strict-aliasing", "-DNDEBUG"]
TARGETS = {"armv8-a": ["-march=armv8-a", "-moutline-atomics"], "armv8.1-a": ["-march=armv8.1-a"]}
X86_ONLY = {"stream_fence"}         # after streaming stores, which aarch64 builds never make
ORDERS = ("RELAXED", "ACQUIRE", "RELEASE", "ACQ_REL", "SEQ_CST")
CALL = re.compile(r"\b(load|store|cas|fetch_add|exchange)(32|64)\(|\b(fence|handshake_fence|"
                  r"stream_fence|seal_cas)\(")
MACRO_RMW = {"seal_cas": ("cas", 64)}   # mutants.pxd macros that are a read-modify-write
RMW_OPS = {"cas": "cas", "fetch_add": "ldadd", "exchange": "swp"}
LSE = re.compile(r"(cas|ldadd|swp|stadd)(a?)(l?)$")     # stadd: an ldadd whose result is unused


@dataclass
class Atomic:
    """One row of the table: an atomic operation in _core.pyx."""
    line: int
    function: str
    lines: range                # the function's lines
    op: str                     # load, store, cas, fetch_add, exchange, fence
    width: int                  # bits (0 for a fence)
    orders: tuple               # the orders it claims (cas: success, failure)
    source: str

    def expected(self):
        """The instruction the line must hold, or None (relaxed load/store)."""
        acq = any(o in ("ACQUIRE", "ACQ_REL", "SEQ_CST") for o in self.orders)
        rel = self.orders[0] in ("RELEASE", "ACQ_REL", "SEQ_CST")
        if self.op == "load":
            return "ldar" if acq else None
        if self.op == "store":
            return "stlr" if rel else None
        if self.op == "fence":
            return "dmb ish" if rel else "dmb ishld"
        return f"{RMW_OPS[self.op]}{self.width // 8}_{suffix(acq, rel)}"

    def describe(self):
        return (f"_core.pyx:{self.line} {self.function}: {self.op}"
                f"{self.width or ''} {'/'.join(self.orders)}")


def suffix(acq, rel):
    return {(False, False): "relax", (True, False): "acq", (False, True): "rel",
            (True, True): "acq_rel"}[(acq, rel)]


def arguments(text, start):
    """The top-level, comma-separated arguments of the call whose "(" is at start."""
    depth, args, current = 0, [], ""
    for ch in text[start:]:
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                break
        if ch == "," and depth == 1:
            args.append(current.strip())
            current = ""
        else:
            current += ch
    return args + ([current.strip()] if current.strip() else [])


def macro_orders(tree):
    """Cython name -> the orders its mutants.pxd macro stands for in a correct
    build (no SHMRING_MUTANT_* defined), from the C preprocessor."""
    with open(os.path.join(tree, "shmring", "includes", "mutants.pxd")) as f:
        text = f.read()
    c_code = text[text.index('"""') + 3:text.rindex('"""')]
    names = dict(re.findall(r"(\w+) \"(SHMRING_\w+)\"", text))
    macros = subprocess.run(["gcc", "-E", "-dM", "-x", "c", "-"], input=c_code, text=True,
                            capture_output=True, check=True).stdout
    out = {}
    for name, macro in names.items():
        found = re.search(rf"#define {macro}(?:\([^)]*\))? (.*)", macros)
        orders = found and re.findall(r"__ATOMIC_(\w+)", found.group(1))
        if orders:
            out[name] = tuple(orders)
    return out


def table(tree=ROOT):
    """Every atomic operation in _core.pyx, in source order."""
    macros = macro_orders(tree)
    rows, function, start = [], "?", 1
    with open(os.path.join(tree, "shmring", "_core.pyx")) as f:
        lines = f.read().splitlines()
    starts = [n for n, text in enumerate(lines, 1) if re.match(r"(?:cdef|def)\s", text)]
    for number, text in enumerate(lines, 1):
        code = text.split("#")[0]
        defined = re.match(r"(?:cdef|def)\s.*?(\w+)\(", code)
        if defined and not code.startswith(" "):
            function, start = defined.group(1), number
        for m in CALL.finditer(code):
            name, bits = (m.group(1), int(m.group(2))) if m.group(1) else (m.group(3), 0)
            if name in X86_ONLY:
                continue
            args = arguments(code, m.end() - 1)
            if name == "handshake_fence":
                orders = macros["handshake_fence"]
            elif name in MACRO_RMW:
                orders = macros[name]
                name, bits = MACRO_RMW[name]
            else:
                picked = {"load": [1], "store": [2], "cas": [4, 5], "fetch_add": [2],
                          "exchange": [2], "fence": [0]}[name]
                orders = tuple(a if a in ORDERS else macros[a][0] for a in (args[k] for k in picked))
            end = min([n for n in starts if n > start] + [len(lines) + 1])
            rows.append(Atomic(number, function, range(start, end),
                               "fence" if bits == 0 else name, bits, orders, code.strip()))
    return rows


def python_include(dest):
    """The host's Python headers, for the cross compiler: a copy whose
    pyconfig.h is the host's resolved one, once it shows the LP64,
    little-endian ABI that aarch64 Linux shares."""
    src = sysconfig.get_paths()["include"]
    shutil.copytree(src, dest)
    config = sysconfig.get_config_h_filename()
    with open(config) as f:
        text = f.read()
    for want in ("#define SIZEOF_VOID_P 8", "#define SIZEOF_LONG 8", "#define SIZEOF_SIZE_T 8"):
        if want not in text:
            raise RuntimeError(f"{config} lacks {want!r}: not an LP64 ABI like aarch64 Linux's")
    if re.search(r"^#define WORDS_BIGENDIAN", text, re.MULTILINE):
        raise RuntimeError(f"{config} is big-endian: not aarch64 Linux's ABI")
    shutil.copy(config, os.path.join(dest, "pyconfig.h"))
    return dest


def generate(work):
    """_core.c with #line directives, from a copy of the tree's package."""
    shutil.copytree(os.path.join(ROOT, "shmring"), os.path.join(work, "shmring"),
                    ignore=lambda d, names: [n for n in names if n.endswith((".so", ".c"))
                                             or n == "__pycache__"])
    processes.run([sys.executable, "-m", "cython", "-3", "--line-directives",
                   "shmring/_core.pyx", "-o", "_core.c"], 300, cwd=work, check=True,
                  capture_output=True)
    return python_include(os.path.join(work, "python-include"))


def disassemble(work, include, target, mutant=None):
    """Cross-compile _core.c for target; {(function, pyx line): [instructions]}."""
    defines = [f"-DSHMRING_MUTANT_{mutant.upper()}"] if mutant else []
    obj = f"_core-{target}.o"
    processes.run([CC, *CFLAGS, *TARGETS[target], *defines, "-I", include, "-c", "_core.c",
                   "-o", obj], 600, cwd=work, check=True, capture_output=True)
    dump = processes.run([OBJDUMP, "-d", "-l", "-r", "--no-show-raw-insn", obj], 300,
                         cwd=work, check=True, capture_output=True, text=True).stdout
    code, function, line = {}, None, None
    for text in dump.splitlines():
        if m := re.match(r"[0-9a-f]+ <(.+)>:$", text):
            function, line = m.group(1), None
        elif m := re.match(r"/\S+:(\d+)", text):
            line = int(m.group(1)) if re.match(r"/\S+/shmring/_core\.pyx:", text) else None
        elif (m := re.match(r"\s+[0-9a-f]+:\s+R_AARCH64_CALL26\s+__aarch64_(\w+)", text)) \
                and line is not None:
            code.setdefault((function, line), []).append(m.group(1))
        elif (m := re.match(r"\s+[0-9a-f]+:\s+(\S+)\s*(.*)", text)) and line is not None:
            code.setdefault((function, line), []).append(instruction(m.group(1), m.group(2)))
    return code


def instruction(mnemonic, operands):
    """An instruction as the table names it."""
    if mnemonic.startswith(("ldar", "ldapr")):
        return "ldar"
    if mnemonic == "dmb":
        return f"dmb {operands.split()[0]}"
    if m := LSE.match(mnemonic):            # inline LSE: cas, casa, casl, casal, ...
        size = 8 if operands.startswith("x") else 4
        op = "ldadd" if m.group(1) == "stadd" else m.group(1)
        return f"{op}{size}_{suffix(bool(m.group(2)), bool(m.group(3)))}"
    return mnemonic


def audit(rows, code, target):
    """(violations, rows checked): rows whose line lacks its instruction
    somewhere.  A row whose whole function was compiled away (lab-only code
    in this build) has nothing to check; a row with nothing to check may be
    merged into a neighbouring line."""
    bad, checked = [], set()
    compiled = {line for (_, line) in code}
    by_line = {}
    for row in rows:
        by_line.setdefault(row.line, []).append(row)
    functions = {}
    for (function, line) in code:
        functions.setdefault(line, set()).add(function)
    for line, line_rows in sorted(by_line.items()):
        if line not in functions:
            row = line_rows[0]
            if any(r.expected() for r in line_rows) and compiled.intersection(row.lines):
                bad.append(f"{target}: {row.describe()}: its line is not in the machine code")
            continue
        for function in sorted(functions[line]):
            found = list(code[(function, line)])
            for row in line_rows:
                want = row.expected()
                if want is None:
                    continue
                checked.add(id(row))
                if want in found:
                    found.remove(want)
                else:
                    rmw = [i for i in found if re.match(r"(cas|ldadd|swp)\d", i)]
                    bad.append(f"{target}: {row.describe()}: no {want} in {function}"
                               + (f" (found {', '.join(rmw)})" if rmw else ""))
    return bad, [row for row in rows if id(row) in checked]


def check_aarch64(mutant=None):
    """(violations, summary line)."""
    if not shutil.which(CC):
        return [f"{CC} is not installed (apt-get install -y gcc-aarch64-linux-gnu)"], "not run"
    started = time.monotonic()
    rows, bad, checked = table(), [], []
    with tempfile.TemporaryDirectory(prefix="shmring-aarch64-") as work:
        include = generate(work)
        for target in TARGETS:
            found, checked = audit(rows, disassemble(work, include, target, mutant), target)
            bad += found
    kinds = {}
    for row in checked:
        kinds[row.expected()] = kinds.get(row.expected(), 0) + 1
    absent = sorted({r.function for r in rows if r.expected() and r not in checked})
    summary = (f"{len(checked)} atomics, in every function they were compiled into, for "
               f"{' and '.join(TARGETS)}: {kinds.get('ldar', 0)} acquire loads (ldar), "
               f"{kinds.get('stlr', 0)} release stores (stlr), {kinds.get('dmb ish', 0)} fences "
               f"(dmb ish), {sum(n for k, n in kinds.items() if '_' in k)} read-modify-writes "
               f"with their orders; {sum(1 for r in rows if not r.expected())} relaxed"
               f"{'; not in this build: ' + ', '.join(absent) if absent else ''} "
               f"({time.monotonic() - started:.0f} s)")
    return bad, summary


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m stress.aarch64", description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="store_true", help="print the table of atomics and exit")
    ap.add_argument("--mutant", help="audit this mutant (shmring/includes/mutants.pxd)")
    args = ap.parse_args(argv)
    if args.table:
        for row in table():
            print(f"{row.line:5} {row.function:22} {row.op + str(row.width or ''):12} "
                  f"{'/'.join(row.orders):17} {row.expected() or '-'}")
        return 0
    bad, summary = check_aarch64(args.mutant)
    print(f"aarch64 {'FAIL' if bad else 'ok'} {summary}")
    for line in bad:
        print("    " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
