"""Hourly admission tallies: one row per hour, result and reason, counted in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import transaction
from django.db.models import QuerySet

from quotas import tally
from quotas.models import AdmissionTally


def counts() -> dict[tuple[datetime, str, str], int]:
    return {
        (row.hour, row.result, row.reason): row.count for row in AdmissionTally.objects.all()
    }


def test_counts_add_up_in_one_row_per_hour_result_and_reason(db) -> None:
    at = datetime(2026, 11, 21, 14, 7, 30, 123, tzinfo=UTC)
    tally.count("admitted", at=at)
    tally.count("admitted", at=at + timedelta(minutes=50))
    tally.count("refused", "capacity", at=at)
    tally.count("refused", "capacity", n=3, at=at)
    tally.count("refused", "banned", at=at)
    tally.count("admitted", at=at + timedelta(hours=1))
    hour = datetime(2026, 11, 21, 14, tzinfo=UTC)
    assert counts() == {
        (hour, "admitted", ""): 2,
        (hour, "refused", "capacity"): 4,
        (hour, "refused", "banned"): 1,
        (hour + timedelta(hours=1), "admitted", ""): 1,
    }


def test_the_hour_is_truncated_in_utc_whatever_the_time_zone_of_the_instant(db) -> None:
    # 00:30 at UTC+05:30 is 19:00 UTC the day before.
    india = timezone(timedelta(hours=5, minutes=30))
    tally.count("lease_expired", at=datetime(2026, 11, 22, 0, 30, tzinfo=india))
    assert AdmissionTally.objects.get().hour == datetime(2026, 11, 21, 19, tzinfo=UTC)


def test_without_an_instant_it_counts_into_the_current_hour(db) -> None:
    before = tally.hour_of(datetime.now(UTC))
    tally.count("resumed")
    after = tally.hour_of(datetime.now(UTC))
    row = AdmissionTally.objects.get()
    assert row.hour in {before, after}
    assert row.count == 1


def test_counting_inside_a_transaction_that_rolls_back_counts_nothing(db) -> None:
    def stop_and_fail() -> None:
        with transaction.atomic():
            tally.count("force_stopped")
            raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError):
        stop_and_fail()
    assert not AdmissionTally.objects.exists()


def test_a_row_created_by_someone_else_meanwhile_is_incremented_not_duplicated(
    db, monkeypatch
) -> None:
    at = datetime(2026, 11, 21, 14, 7, tzinfo=UTC)
    AdmissionTally.objects.create(
        hour=tally.hour_of(at), result="refused", reason="capacity", count=5
    )
    real_update = QuerySet.update
    calls = []

    def update_as_if_the_row_did_not_exist_yet(self: QuerySet, **changes: object) -> int:
        # The first increment finds nothing: the other admission's insert was not
        # visible yet. Ours then collides with it on the unique constraint.
        calls.append(changes)
        return 0 if len(calls) == 1 else real_update(self, **changes)

    monkeypatch.setattr(QuerySet, "update", update_as_if_the_row_did_not_exist_yet)
    tally.count("refused", "capacity", at=at)
    assert len(calls) == 2
    assert counts() == {(datetime(2026, 11, 21, 14, tzinfo=UTC), "refused", "capacity"): 6}


@pytest.mark.parametrize(
    ("result", "reason", "n"),
    [("maybe", "", 1), ("refused", "x" * 33, 1), ("admitted", "", 0)],
)
def test_nonsense_is_refused_before_touching_the_database(result, reason, n) -> None:
    with pytest.raises(ValueError, match=r"result|reason|n must"):
        tally.count(result, reason, n=n)


@pytest.fixture
def deferred(transactional_db):
    # Transactional: a deferred count joins the buffer when its transaction commits, and
    # the `db` fixture's never does.
    tally.defer()
    yield
    tally.defer(False)
    tally.flush()


def test_deferred_counts_wait_in_memory_and_one_flush_writes_each_kind_once(
    deferred, django_assert_num_queries, django_assert_max_num_queries
) -> None:
    at = datetime(2026, 11, 21, 14, 7, tzinfo=UTC)
    hour = datetime(2026, 11, 21, 14, tzinfo=UTC)
    with django_assert_num_queries(0):  # nothing on the way to the answer
        for _ in range(40):
            tally.count("refused", "capacity", at=at)
        for _ in range(7):
            tally.count("admitted", at=at)
    assert counts() == {}
    # Two kinds: an update that finds no row, then an insert (in a savepoint), for each.
    with django_assert_max_num_queries(2 * 4):
        assert tally.flush() == 47
    assert counts() == {(hour, "refused", "capacity"): 40, (hour, "admitted", ""): 7}
    assert tally.flush() == 0
    tally.count("admitted", at=at)
    assert tally.flush() == 1
    assert counts()[(hour, "admitted", "")] == 8


def test_a_deferred_count_inside_a_transaction_that_rolls_back_is_not_counted(
    deferred,
) -> None:
    at = datetime(2026, 11, 21, 14, 7, tzinfo=UTC)

    def admission_that_fails() -> None:
        with transaction.atomic():
            tally.count("admitted", at=at)
            raise RuntimeError("the admission failed")

    with pytest.raises(RuntimeError):
        admission_that_fails()
    with transaction.atomic():
        tally.count("admitted", "source_only", at=at)
    assert tally.flush() == 1
    assert list(counts().values()) == [1]


def test_counts_a_failed_flush_could_not_write_wait_for_the_next(deferred, monkeypatch) -> None:
    at = datetime(2026, 11, 21, 14, 7, tzinfo=UTC)
    tally.count("refused", "banned", at=at, n=2)
    real_write = tally._write

    def down(*args: object) -> None:
        raise OSError("database away")

    monkeypatch.setattr(tally, "_write", down)
    with pytest.raises(OSError, match="away"):
        tally.flush()
    monkeypatch.setattr(tally, "_write", real_write)
    assert tally.flush() == 2
    assert sum(counts().values()) == 2
