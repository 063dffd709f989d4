"""drop_realtime puts real-time threads back on the normal scheduler (needs CAP_SYS_NICE,
which root has, the only case where SVT-AV1 switches threads to SCHED_FIFO)."""

from __future__ import annotations

import os
import threading

import pytest

from tests.scheduling import drop_realtime


def test_a_real_time_thread_is_put_back_on_the_normal_scheduler() -> None:
    made_real_time = threading.Event()
    checked = threading.Event()
    seen: list[int] = []

    def worker() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            seen.append(-1)
        made_real_time.set()
        checked.wait(10)
        seen.append(os.sched_getscheduler(0))

    thread = threading.Thread(target=worker)
    thread.start()
    made_real_time.wait(10)
    if seen == [-1]:
        checked.set()
        thread.join()
        pytest.skip("needs CAP_SYS_NICE to make a thread real-time")
    try:
        assert drop_realtime() == 1
    finally:
        checked.set()
        thread.join()
    assert seen == [os.SCHED_OTHER]
    assert drop_realtime() == 0
