"""The coordinator's side of the pause-point control segment.

The layout is the one shmring/includes/lab.pxd describes: a `free` word at
offset 0 and one 64-byte cell per participant (arrivals, point, grants).  The
lab adds two stop words at offsets 4 (producers) and 8 (the consumer), a
`sent` word at offset 12 of each cell (frames a producer has sent) and a
`refused` word at offset 16 (1 once a send raised Sealed).  A
participant reaching a pause point bumps arrivals and sleeps until grants
moves; the coordinator grants one turn at a time and waits for the next
arrival, so each turn runs a participant from one pause point to the next.

After the cells come the handshake notes (lab.pxd): the core's marks of each
wake decision, and its count of lost wakeups, which must stay at zero."""
import ctypes
import mmap
import os
import time

from shmring import _core

CELL = 64
STOP = {"producers": 4, "consumer": 8}
NOTES = 64 + 8 * 256                # lab.pxd's shmring_lab_notes
LOST = ("data", "space")
POINT_NAMES = {v: k for k, v in _core.LAB_POINTS.items()}


class Control:
    def __init__(self, path, participants):
        self.notes = CELL * (participants + 1)
        self.size = self.notes + NOTES
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, self.size)
            self.map = mmap.mmap(fd, self.size)
        finally:
            os.close(fd)
        os.unlink(path)                 # children inherit the mapping across fork
        self._buf = ctypes.c_char.from_buffer(self.map)
        self.base = ctypes.addressof(self._buf)

    def _word(self, offset):
        return ctypes.c_uint32.from_address(self.base + offset)

    def cell(self, i):
        return CELL * (i + 1)

    def install(self, i):
        """In participant i (a child): park at every pause point from now on,
        and keep the handshake notes."""
        self.keep_notes()
        _core._lab_install(self.base, self.base + self.cell(i))

    def keep_notes(self):
        """In a child: mark wake decisions and count lost wakeups (no pauses).
        A release build has no notes to keep: its counts stay at zero."""
        if _core.lab_enabled():
            _core._lab_notes(self.base + self.notes)

    def lost_wakeups(self):
        """{"data": (count, the first one's cursor), "space": (count, the head it saw)}"""
        def u64(offset):
            return ctypes.c_uint64.from_address(self.base + self.notes + offset).value
        return {name: (u64(8 * k), u64(16 + 8 * k)) for k, name in enumerate(LOST)}

    def arrivals(self, i):
        return self._word(self.cell(i)).value

    def point(self, i):
        return self._word(self.cell(i) + 4).value

    def grant(self, i):
        """Let participant i run to its next pause point."""
        off = self.cell(i) + 8
        # An aligned 32-bit store (release on x86); pairs with shmring_lab_turn's acquire load of grants.
        self._word(off).value += 1
        _core._lab_futex_wake(self.base + off, 1)

    def wait_arrival(self, i, seen, timeout):
        """True once participant i's arrivals moved past seen, False at the timeout."""
        deadline = time.monotonic() + timeout
        while self.arrivals(i) == seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _core._lab_futex_wait(self.base + self.cell(i), seen, min(left, 0.05))
        return True

    def set_sent(self, i, n):
        self._word(self.cell(i) + 12).value = n     # read by the coordinator after we exit

    def sent(self, i):
        return self._word(self.cell(i) + 12).value

    def set_refused(self, i):
        self._word(self.cell(i) + 16).value = 1     # read by the coordinator after we exit

    def refused(self, i):
        return self._word(self.cell(i) + 16).value != 0

    def stop(self, who):
        """Tell "producers" or the "consumer" to finish."""
        self._word(STOP[who]).value = 1

    def stopped(self, who):
        return self._word(STOP[who]).value != 0

    def release_all(self, participants):
        """Let every pause point pass from now on."""
        # An aligned 32-bit store; pairs with shmring_lab_turn's acquire loads of free.
        self._word(0).value = 1
        for i in range(participants):
            _core._lab_futex_wake(self.base + self.cell(i) + 8, 1)

    def close(self):
        del self._buf
        self.map.close()
