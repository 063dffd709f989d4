from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from streams.models import Channel


def is_ops(user: Any) -> bool:
    """Staff in the ops group (or superusers) may read and set the quota."""
    if not (user and user.is_authenticated and user.is_staff):
        return False
    return bool(user.is_superuser or user.groups.filter(name=settings.GOLIVE_OPS_GROUP).exists())


class IsOps(BasePermission):
    message = "Only ops staff may see or change the quota."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_ops(request.user)


class IsChannelOwnerOrReadOnly(BasePermission):
    message = "Only the channel's streamer may do this."

    def has_object_permission(self, request: Request, view: Any, obj: Channel) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return bool(obj.owner.user_id == request.user.pk)


class IsChannelOwnerOrStaff(BasePermission):
    message = "Only the channel's streamer may see this."

    def has_object_permission(self, request: Request, view: Any, obj: Channel) -> bool:
        return bool(obj.owner.user_id == request.user.pk or request.user.is_staff)
