from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from golive.roles import is_ops
from streams.models import Channel


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
