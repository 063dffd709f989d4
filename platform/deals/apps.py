from __future__ import annotations

from django.apps import AppConfig


class DealsConfig(AppConfig):
    name = "deals"
    verbose_name = "Deals and payouts"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system check)
