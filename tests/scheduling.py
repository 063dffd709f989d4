"""Keeping test processes out of real-time scheduling.

SVT-AV1 (in PyAV's FFmpeg), run as root, switches every thread of the process that opens
an encoder to SCHED_FIFO priority 99, and every process that process starts inherits it.
On a 2-core machine two such threads that spin (Chromium does, shutting down) hold both
cores for good: nothing else runs, not even a SIGKILL. Tests that encode in-process call
`drop_realtime()` after the encoder is open; `tests/conftest.py` checks after every test.
"""

from __future__ import annotations

import os


def drop_realtime() -> int:
    """Puts every thread of this process back on the normal scheduler; returns how many
    were real-time."""
    dropped = 0
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        try:
            if os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR):
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                dropped += 1
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return dropped
