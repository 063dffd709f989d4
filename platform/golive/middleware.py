"""Site-wide middleware of golive's own."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from delivery.responses import DATABASE_DOWN, REDIS_ERRORS, dependency_down


class DependencyOutageMiddleware(MiddlewareMixin):
    """Pages and the API answer 503 + Retry-After, not 500 and a traceback, while the
    database or Redis cannot be reached, as the origin's views do (delivery.responses).
    Any other exception is left to Django."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_DOWN):
            return dependency_down("the database", exception)
        if isinstance(exception, REDIS_ERRORS):
            return dependency_down("Redis", exception)
        return None
