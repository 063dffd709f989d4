"""Where a process keeps the quota row (the ingest, for a second), `get_quota` reads it
at most that often, sees its own changes at once and hands out copies."""

from __future__ import annotations

import pytest

from quotas.actions import get_quota, keep_quota_for, set_quota
from quotas.models import QUOTA_ROW_ID, QuotaChange, ServerQuota


@pytest.fixture
def kept():
    keep_quota_for(60)
    yield
    keep_quota_for(0)


def test_the_row_is_read_once_while_kept_and_again_after_a_change_here(
    db, kept, django_assert_num_queries
) -> None:
    with django_assert_num_queries(1):
        first = get_quota()
        for _ in range(20):
            assert get_quota().max_streams == first.max_streams
    # Changed elsewhere (another process): not seen while kept.
    ServerQuota.objects.filter(pk=QUOTA_ROW_ID).update(max_streams=first.max_streams + 7)
    assert get_quota().max_streams == first.max_streams
    # Changed here: seen at once.
    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test", max_streams=3)
    assert get_quota().max_streams == 3
    # Each caller gets its own copy.
    get_quota().max_streams = 999
    assert get_quota().max_streams == 3


def test_not_kept_every_call_reads_the_row(db, django_assert_num_queries) -> None:
    get_quota()
    ServerQuota.objects.filter(pk=QUOTA_ROW_ID).update(max_streams=41)
    with django_assert_num_queries(1):
        assert get_quota().max_streams == 41
