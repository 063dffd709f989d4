from __future__ import annotations

from django.apps import AppConfig


class GoliveConfig(AppConfig):
    name = "golive"
    verbose_name = "golive"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
