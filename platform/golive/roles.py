"""Who may do what across apps: the roles the platform knows, as plain predicates."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def is_ops(user: Any) -> bool:
    """Staff in the ops group (or superusers) may read and set the quota."""
    if not (user and user.is_authenticated and user.is_staff):
        return False
    return bool(user.is_superuser or user.groups.filter(name=settings.GOLIVE_OPS_GROUP).exists())
