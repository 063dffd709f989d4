"""The deals' personas: deals need two admins (one writes terms or computes, another signs
or approves), ada and grace; finance staff who hold one money step each, ivy (approves)
and pat (pays). The deals themselves come from `tests.support.deals`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.personas import make_admin, make_staff


@pytest.fixture
def grace(db: None) -> Any:
    return make_admin("grace")


@pytest.fixture
def ivy(db: None) -> Any:
    """Finance approver: signs terms, approves payouts."""
    return make_staff("ivy", "finance approvers")


@pytest.fixture
def pat(db: None) -> Any:
    """Finance payer: marks approved payouts paid."""
    return make_staff("pat", "finance payers")
