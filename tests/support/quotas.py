"""The quota, set for a test through its write path."""

from __future__ import annotations


def quota(**limits: int) -> None:
    from quotas.actions import set_quota
    from quotas.models import QuotaChange

    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test", **limits)
