from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from golive.admin import AppendOnlyAdmin

from .actions import QuotaError, get_quota, set_quota
from .models import QuotaChange, ServerQuota


class ServerQuotaForm(forms.ModelForm[ServerQuota]):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the audit trail with your name and the old and new values.",
    )

    class Meta:
        model = ServerQuota
        fields = ["max_streams", "max_transcodes", "partner_reserve"]


@admin.register(ServerQuota)
class ServerQuotaAdmin(admin.ModelAdmin[ServerQuota]):
    form = ServerQuotaForm
    list_display = ["__str__", "max_streams", "max_transcodes", "partner_reserve", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ServerQuota | None = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # One row: the list is a detour, go straight to the form.
        quota = get_quota()
        return HttpResponseRedirect(
            reverse("admin:quotas_serverquota_change", args=[quota.pk])
        )

    def save_model(
        self, request: HttpRequest, obj: ServerQuota, form: Any, change: bool
    ) -> None:
        # Through the one write path, never obj.save(): that is where the audit row is made.
        try:
            set_quota(
                actor=request.user,
                source=QuotaChange.Source.ADMIN,
                reason=form.cleaned_data["reason"],
                max_streams=form.cleaned_data["max_streams"],
                max_transcodes=form.cleaned_data["max_transcodes"],
                partner_reserve=form.cleaned_data["partner_reserve"],
            )
        except QuotaError as error:
            self.message_user(request, str(error), level="error")
        obj.refresh_from_db()


@admin.register(QuotaChange)
class QuotaChangeAdmin(AppendOnlyAdmin[QuotaChange]):
    list_display = ["changed_at", "changed_by_name", "source", "summary", "reason"]
    list_filter = ["source"]
    search_fields = ["changed_by_name", "reason"]
    date_hierarchy = "changed_at"
