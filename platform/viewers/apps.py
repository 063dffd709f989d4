from __future__ import annotations

from django.apps import AppConfig


class ViewersConfig(AppConfig):
    name = "viewers"
    verbose_name = "Viewer counts and playback telemetry"

    def ready(self) -> None:
        from quotas.metrics import PLATFORM

        from .metrics import ViewersCollector

        PLATFORM.register(ViewersCollector())
