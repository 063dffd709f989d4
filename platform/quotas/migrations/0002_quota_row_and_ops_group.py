from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import migrations


def create_quota_row_and_ops_group(apps: Any, schema_editor: Any) -> None:
    ServerQuota = apps.get_model("quotas", "ServerQuota")
    ServerQuota.objects.get_or_create(
        pk=1,
        defaults={
            "max_streams": settings.GOLIVE_DEFAULT_MAX_STREAMS,
            "max_transcodes": settings.GOLIVE_DEFAULT_MAX_TRANSCODES,
            "partner_reserve": min(
                settings.GOLIVE_DEFAULT_PARTNER_RESERVE, settings.GOLIVE_DEFAULT_MAX_STREAMS
            ),
        },
    )
    Group = apps.get_model("auth", "Group")
    Group.objects.get_or_create(name=settings.GOLIVE_OPS_GROUP)


class Migration(migrations.Migration):
    dependencies = [("quotas", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [
        migrations.RunPython(create_quota_row_and_ops_group, migrations.RunPython.noop),
    ]
