from __future__ import annotations

from django.apps import AppConfig


class SurgeConfig(AppConfig):
    name = "surge"
    verbose_name = "surge simulator"
