"""The request a view behind `login_required` is called with."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest


class SignedInRequest(HttpRequest):
    """For annotations only (Django never makes one): `login_required` lets only a
    signed-in user through, which `HttpRequest.user` (a user or anonymous) cannot say."""

    user: User
