"""`database_call` outside requests: a dead connection is replaced before a call, and a
thread in a burst of calls trusts its connection for a moment instead of checking it
before each one; a failed call ends the trust."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import OperationalError, connection, connections

from golive.db import database_call

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("select pg_backend_pid()")
        return int(cursor.fetchone()[0])


def terminate(pid: int) -> None:
    with connection.cursor() as cursor:  # the test's own connection, another backend
        cursor.execute("select pg_terminate_backend(%s)", [pid])
    time.sleep(0.1)


@pytest.fixture
def worker():
    if connection.vendor != "postgresql":
        pytest.skip("a backend to end takes PostgreSQL")
    with ThreadPoolExecutor(1) as pool:
        yield lambda function: pool.submit(function).result(10)
        pool.submit(connections.close_all).result(10)


def test_a_connection_that_died_while_idle_is_replaced_before_the_call(worker) -> None:
    pid = database_call(backend_pid, trust_for=0.2)
    first = worker(pid)
    terminate(first)
    time.sleep(0.25)  # idle for longer than it is trusted: checked, and replaced
    assert worker(pid) != first


def test_within_a_burst_no_check_and_a_failed_call_ends_the_trust(
    worker, django_assert_num_queries
) -> None:
    pid = database_call(backend_pid, trust_for=60)
    first = worker(pid)
    assert worker(pid) == first
    terminate(first)
    with pytest.raises(OperationalError):
        worker(pid)  # trusted, not checked: this call finds the connection dead
    assert worker(pid) != first, "the next call checked and reconnected"


def test_a_trusted_thread_skips_the_check_others_check_before_each_call(
    worker, monkeypatch
) -> None:
    checks = []
    wrapper = type(connections["default"])
    usable = wrapper.is_usable

    def counted(self) -> bool:  # type: ignore[no-untyped-def]
        checks.append(1)
        return usable(self)

    monkeypatch.setattr(wrapper, "is_usable", counted)
    always, trusted = (database_call(backend_pid, trust_for=t) for t in (0, 60))
    for _ in range(3):
        worker(always)
    assert len(checks) == 2, "each call after the first (which connects) checks"
    for _ in range(3):
        worker(trusted)
    assert len(checks) == 2
