"""Admin pieces shared by the apps."""

from __future__ import annotations

from typing import TypeVar

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

M = TypeVar("M", bound=Model)
Parent = TypeVar("Parent", bound=Model)


class AppendOnlyAdmin(admin.ModelAdmin[M]):
    """A log that the code writes and nobody edits: audit trails, the ledger. Viewable by
    whoever may view the model; no add, change or delete from the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False


class AppendOnlyInline(admin.TabularInline[M, Parent]):
    """The same, as rows under the object they belong to (audit trails, calculations)."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Parent | None = None) -> bool:
        return False

    # `obj` is the parent object, as Django passes it to an inline; BaseModelAdmin's stubs
    # call it the inline's own model, so it is typed as what both are.
    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
