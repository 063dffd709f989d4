# Steps that move money as permissions of their own, and the two groups finance hands out:
# approvers sign deal terms and approve or void payouts; payers mark them paid. Four eyes
# still apply inside a group (nobody approves what they computed or pays what they approved).

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = {
    "finance approvers": [
        "view_deal", "add_deal", "change_deal", "sign_deal", "view_dealversion",
        "view_payout", "change_payout", "approve_payout", "view_ledgerentry",
    ],
    "finance payers": ["view_deal", "view_payout", "change_payout", "pay_payout",
                       "view_ledgerentry"],
}


def create_groups(apps: Any, schema_editor: Any) -> None:
    # Permissions are otherwise created after all migrations ran: create this app's now.
    # (a migration's app config is a stub without models_module, which create_permissions
    # reads only to tell whether the app has models).
    config = apps.get_app_config("deals")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(
            content_type__app_label="deals", codename__in=codenames))


class Migration(migrations.Migration):

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('deals', '0004_drop_deal_terms'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='deal',
            options={'ordering': ['-starts_on', '-id'], 'permissions': [('sign_deal', 'Can sign deal terms')]},
        ),
        migrations.AlterModelOptions(
            name='payout',
            options={'ordering': ['-period_start', 'deal_id', 'id'], 'permissions': [('approve_payout', 'Can approve or void payouts'), ('pay_payout', 'Can mark payouts paid or recovered')]},
        ),
        migrations.RunPython(create_groups, migrations.RunPython.noop),
    ]
