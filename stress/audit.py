"""Fence audit: every handshake fence in _core.pyx must reach the machine code.

x86 needs the seq_cst fence of the futex handshake (a store-load barrier)
and nothing dynamic on x86 can miss it reliably: without it a wakeup is lost
only when two store buffers race within nanoseconds.  So the lab checks the
binary: it counts the full barriers in the built _core and requires at least
one per handshake_fence() call in the source (inlining may copy them, never
remove them).  docs/model/wakeup.pml shows why each one is needed.

Likewise for the streaming copy: its stores are weakly ordered, and only the
sfence after them keeps a commit from being seen before the payload.  The
audit requires copy_payload (or copy_span, its streaming half, where the
compiler did not inline it) to hold streaming stores (movntdq), and every
function that holds them to have an sfence after the last."""
import os
import platform
import re

import shmring._core
from shmring.testing import processes

BARRIER = re.compile(r"\tmfence|\tlock or[lq]? +\$0x0,\(%rsp\)")
SFENCE = re.compile(r"\tsfence")
COPY = re.compile(r"<__pyx_f_7shmring_5_core_copy_(?:payload|span)>:\n(.*?)(?:\n\n|\Z)", re.DOTALL)


def check_fences():
    """(violations, summary line)."""
    if platform.machine() != "x86_64":
        return [], f"skipped: the audit reads x86_64 code, this is {platform.machine()}"
    so = shmring._core.__file__
    source = os.path.join(os.path.dirname(so), "_core.pyx")
    with open(source) as f:
        text = f.read()
    sites = len(re.findall(r"^\s*handshake_fence\(\)", text, re.MULTILINE))
    stream_sites = len(re.findall(r"^\s*stream_fence\(\)", text, re.MULTILINE))
    code = processes.run(["objdump", "-d", so], 60, capture_output=True, text=True,
                         check=True).stdout
    barriers = len(BARRIER.findall(code))
    sfences = len(SFENCE.findall(code))
    summary = (f"{barriers} full barriers in {os.path.basename(so)} for {sites} handshake "
               f"fences, {sfences} sfence for {stream_sites} streaming copy")
    bad = []
    if barriers < sites:
        bad.append(f"only {barriers} full barriers for {sites} handshake fences: "
                   "a fence was compiled out")
    if sfences < stream_sites:
        bad.append(f"only {sfences} sfence for {stream_sites} streaming copies: "
                   "a payload could be seen after its commit")
    bodies = [body for body in COPY.findall(code) if "movntdq" in body]
    if not bodies:
        bad.append("copy_payload has no streaming stores (movntdq): the copy never streams")
    for body in bodies:
        if body.rfind("sfence") < body.rfind("movntdq"):
            bad.append("copy_payload has no sfence after its last streaming store")
    return bad, summary
