"""Deals and payouts in Django admin. Every change goes through `deals.actions`."""

from __future__ import annotations

import csv
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import (
    display_for_field,
    display_for_value,
    label_for_field,
    lookup_field,
)
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst

from golive.admin import AppendOnlyAdmin, AppendOnlyInline

from . import actions
from .actions import DealError
from .calculation import CalculationError, Period, format_money
from .calculation import hours as to_hours
from .models import Deal, DealEvent, LedgerEntry, Payout, PayoutEvent, PayoutLine
from .progress import progress, with_period_sessions


class PeriodForm(forms.Form):
    period = forms.CharField(
        max_length=7, help_text="A calendar month in UTC, written YYYY-MM.",
        widget=forms.TextInput(attrs={"placeholder": "YYYY-MM", "size": 8}),
    )

    def clean_period(self) -> Period:
        try:
            return Period.parse(self.cleaned_data["period"])
        except CalculationError as error:
            raise forms.ValidationError(str(error)) from None


class ReferenceForm(forms.Form):
    reference = forms.CharField(
        max_length=200, help_text="The payment's reference: bank transfer id, invoice number."
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), help_text="Kept in the payout's audit trail."
    )


def last_month() -> str:
    return Period.containing(timezone.now()).previous().label


def run_each(
    request: HttpRequest, items: QuerySet[Any], step: Callable[[Any], object], done: str
) -> None:
    """Applies ``step`` to each item, one transaction each; reports successes and refusals."""
    succeeded = 0
    for item in items:
        try:
            step(item)
            succeeded += 1
        except DealError as error:
            messages.error(request, f"{item}: {error}")
    if succeeded:
        messages.success(request, f"{done}: {succeeded}.")


def form_step(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any],
    form_class: type[forms.Form], title: str, initial: dict[str, Any] | None = None,
) -> forms.Form | TemplateResponse:
    """An action that asks for one value first: the valid form, or the page asking for it."""
    if "apply" in request.POST:
        form = form_class(request.POST)
        if form.is_valid():
            return form
    else:
        form = form_class(initial=initial)
    return TemplateResponse(
        request,
        "admin/deals/action_form.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": title,
            "form": form,
            "queryset": queryset,
            "action": request.POST.get("action", ""),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": model_admin.model._meta,
        },
    )


def ask_then_each(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any],
    form_class: type[forms.Form], title: str, field: str,
    step: Callable[[Any, Any], object], done: str, initial: dict[str, Any] | None = None,
) -> TemplateResponse | None:
    """An action that asks for one value (the form's ``field``) first, then applies
    ``step(item, value)`` to each item; ``done`` may name the value as ``{value}``."""
    asked = form_step(model_admin, request, queryset, form_class, title, initial)
    if isinstance(asked, TemplateResponse):
        return asked
    value = asked.cleaned_data[field]
    run_each(request, queryset, lambda item: step(item, value), done.format(value=value))
    return None


# --- Deals --------------------------------------------------------------------------------


class DealEventInline(AppendOnlyInline):
    model = DealEvent
    fields = ["at", "actor_name", "from_status", "to_status", "note"]
    readonly_fields = fields


@admin.register(Deal)
class DealAdmin(admin.ModelAdmin):
    list_display = ["streamer", "kind", "amount", "status", "term", "this_period"]
    list_filter = ["status", "kind", "exclusive"]
    search_fields = ["streamer__display_name", "streamer__user__username"]
    list_select_related = ["streamer"]
    autocomplete_fields = ["streamer"]
    readonly_fields = ["status", "created_by", "created_at", "signed_by", "signed_at"]
    fieldsets = [
        (None, {"fields": ["streamer", "status"]}),
        ("Money", {"fields": ["kind", "amount_cents", "currency", "revenue_share_bps"]}),
        ("Term", {"fields": ["starts_on", "ends_on"]}),
        (
            "Requirements per period (a calendar month)",
            {"fields": ["min_hours", "min_streams", "exclusive", "shortfall"]},
        ),
        ("Record", {"fields": ["notes", "created_by", "created_at", "signed_by", "signed_at"]}),
    ]
    inlines = [DealEventInline]
    actions = ["sign", "pause", "resume", "end", "terminate", "compute_for_period"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Deal]:
        return with_period_sessions(super().get_queryset(request), timezone.now())

    def has_change_permission(self, request: HttpRequest, obj: Deal | None = None) -> bool:
        if obj is not None and obj.status in (Deal.Status.ENDED, Deal.Status.TERMINATED):
            return False  # a finished deal is a record: read-only
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Deal | None = None) -> bool:
        return False  # terminate instead: a deal's history is kept

    def save_model(self, request: HttpRequest, obj: Deal, form: Any, change: bool) -> None:
        # Through the one write path, which writes the audit row. Its warnings (an amount
        # outside the usual range) are shown, never blocking: big names get big packages.
        for warning in actions.save_deal(obj, actor=request.user):
            messages.warning(request, warning)

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, deal: Deal) -> str:
        unit = "hour" if deal.kind == "per_hour" else "month"
        return f"{format_money(deal.amount_cents, deal.currency)} / {unit}"

    @admin.display(description="term", ordering="starts_on")
    def term(self, deal: Deal) -> str:
        return f"{deal.starts_on} → {deal.ends_on}"

    @admin.display(description="this period: hours against the minimum")
    def this_period(self, deal: Deal) -> str:
        current = progress(deal, timezone.now())
        if current is None:
            return "outside the term"
        streamed = to_hours(current.activity.seconds)
        needed = to_hours(int(current.required.seconds))
        colour = "#2e7d32" if current.met else "#f9a825"
        return format_html(
            '<div title="{} h of {} h, {} of {} streams" style="display:flex;'
            'align-items:center;gap:.5em"><span style="display:inline-block;width:8em;'
            'height:.8em;background:#ddd;border-radius:3px;overflow:hidden">'
            '<span style="display:block;height:100%;width:{}%;background:{}"></span></span>'
            "<span>{} / {} h · {} / {} streams</span></div>",
            streamed, needed, current.activity.streams, current.required.streams,
            current.hours_percent, colour,
            streamed, needed, current.activity.streams, current.required.streams,
        )

    @admin.action(description="Sign and activate", permissions=["change"])
    def sign(self, request: HttpRequest, queryset: QuerySet[Deal]) -> None:
        run_each(request, queryset, lambda d: actions.sign_deal(d, actor=request.user), "Signed")

    @admin.action(description="Pause (payments on hold)", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Deal]) -> None:
        self._set(request, queryset, Deal.Status.PAUSED, "Paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Deal]) -> None:
        self._set(request, queryset, Deal.Status.ACTIVE, "Resumed")

    @admin.action(description="End today", permissions=["change"])
    def end(self, request: HttpRequest, queryset: QuerySet[Deal]) -> None:
        self._set(request, queryset, Deal.Status.ENDED, "Ended")

    @admin.action(description="Terminate today…", permissions=["change"])
    def terminate(self, request: HttpRequest, queryset: QuerySet[Deal]) -> Any:
        return ask_then_each(
            self, request, queryset, ReasonForm, "Terminate deals", "reason",
            lambda deal, reason: actions.set_deal_status(
                deal, Deal.Status.TERMINATED, actor=request.user, note=reason
            ),
            "Terminated",
        )

    def _set(
        self, request: HttpRequest, queryset: QuerySet[Deal], status: str, done: str
    ) -> None:
        run_each(
            request, queryset,
            lambda deal: actions.set_deal_status(deal, status, actor=request.user),
            done,
        )

    @admin.action(description="Compute payouts for a period…", permissions=["change"])
    def compute_for_period(self, request: HttpRequest, queryset: QuerySet[Deal]) -> Any:
        return ask_then_each(
            self, request, queryset, PeriodForm, "Compute payouts", "period",
            lambda deal, period: actions.compute_payout(deal, period, actor=request.user),
            "Computed {value} drafts (another admin approves them)",
            initial={"period": last_month()},
        )


# --- Payouts ------------------------------------------------------------------------------


class PeriodFilter(admin.SimpleListFilter):
    title = "period"
    parameter_name = "period"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        starts = (
            Payout.objects.order_by("-period_start")
            .values_list("period_start", flat=True)
            .distinct()[:36]
        )
        return [(Period.of(start).label, Period.of(start).label) for start in starts]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        try:
            return queryset.filter(period_start=Period.parse(self.value() or "").first_day)
        except CalculationError:
            return queryset.none()


class PayoutLineInline(AppendOnlyInline):
    model = PayoutLine
    verbose_name_plural = "calculation, line by line"
    fields = ["position", "label", "detail", "amount"]
    readonly_fields = fields

    @admin.display(description="amount")
    def amount(self, line: PayoutLine) -> str:
        if line.amount_cents is None:
            return ""
        return format_money(line.amount_cents, line.payout.currency)


class PayoutEventInline(AppendOnlyInline):
    model = PayoutEvent
    verbose_name_plural = "audit trail"
    fields = ["at", "actor_name", "from_status", "to_status", "amount_cents", "note"]
    readonly_fields = fields


class LedgerEntryInline(AppendOnlyInline):
    model = LedgerEntry
    fields = ["created_at", "kind", "account", "debit_cents", "credit_cents", "transaction_id"]
    readonly_fields = fields


@admin.register(Payout)
class PayoutAdmin(admin.ModelAdmin):
    list_display = [
        "streamer", "period", "status", "amount", "hours", "streams", "requirements",
        "computed_by_name", "approved_by", "payment_reference",
    ]
    list_filter = ["status", PeriodFilter, "deal__kind"]
    search_fields = ["deal__streamer__display_name", "payment_reference"]
    list_select_related = ["deal__streamer", "approved_by"]
    readonly_fields = [field.name for field in Payout._meta.fields]
    inlines = [PayoutLineInline, PayoutEventInline, LedgerEntryInline]
    actions = ["approve", "mark_paid", "void", "recompute", "export_csv"]
    change_list_template = "admin/deals/payout/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # payouts are computed: "Compute for a period" or the deals' action

    def has_delete_permission(self, request: HttpRequest, obj: Payout | None = None) -> bool:
        return False  # void instead

    def save_model(self, request: HttpRequest, obj: Payout, form: Any, change: bool) -> None:
        pass  # every field is read-only; changes are the actions, through deals.actions

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        no_buttons = {"show_save": False, "show_save_and_continue": False,
                      "show_save_and_add_another": False, "show_delete": False}
        return super().change_view(request, object_id, form_url, no_buttons | (extra_context or {}))

    @admin.display(description="streamer", ordering="deal__streamer__display_name")
    def streamer(self, payout: Payout) -> str:
        return str(payout.deal.streamer)

    @admin.display(description="period", ordering="period_start")
    def period(self, payout: Payout) -> str:
        return payout.period.label

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, payout: Payout) -> str:
        return format_money(payout.amount_cents, payout.currency)

    @admin.display(description="hours", ordering="streamed_seconds")
    def hours(self, payout: Payout) -> str:
        return str(to_hours(payout.streamed_seconds))

    @admin.display(description="requirements", ordering="requirements_met")
    def requirements(self, payout: Payout) -> str:
        return "met" if payout.requirements_met else "missed"

    @admin.action(description="Approve (not your own computation)", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        run_each(
            request, queryset, lambda p: actions.approve_payout(p, actor=request.user),
            "Approved",
        )

    @admin.action(description="Mark paid…", permissions=["change"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Payout]) -> Any:
        return ask_then_each(
            self, request, queryset, ReferenceForm, "Mark payouts paid", "reference",
            lambda p, reference: actions.mark_paid(p, actor=request.user, reference=reference),
            "Marked paid",
        )

    @admin.action(description="Void…", permissions=["change"])
    def void(self, request: HttpRequest, queryset: QuerySet[Payout]) -> Any:
        return ask_then_each(
            self, request, queryset, ReasonForm, "Void payouts", "reason",
            lambda p, reason: actions.void_payout(p, actor=request.user, reason=reason),
            "Voided",
        )

    @admin.action(description="Recompute (drafts and void ones)", permissions=["change"])
    def recompute(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        run_each(
            request, queryset,
            lambda p: actions.compute_payout(p.deal, p.period, actor=request.user),
            "Recomputed",
        )

    @admin.action(description="Export to CSV (the list's columns)", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Payout]) -> HttpResponse:
        """The same columns and the same text as the list page, one row per payout."""
        names = list(self.get_list_display(request))
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="payouts.csv"'
        writer = csv.writer(response)
        writer.writerow([capfirst(str(label_for_field(n, self.model, self))) for n in names])
        empty = str(self.get_empty_value_display())
        for payout in queryset:
            writer.writerow(
                [spreadsheet_safe(self.cell(name, payout), empty) for name in names]
            )
        return response

    def cell(self, name: str, obj: Payout) -> str:
        # What the changelist shows for this column (admin.templatetags.admin_list does the
        # same: lookup_field, then display_for_field or display_for_value).
        field, attr, value = lookup_field(name, obj, self)
        empty = self.get_empty_value_display()
        if field is None:
            return str(display_for_value(value, empty, getattr(attr, "boolean", False)))
        if value is None:
            return str(empty)
        return str(display_for_field(value, field, empty))

    def get_urls(self) -> list[URLPattern]:
        compute = path(
            "compute/", self.admin_site.admin_view(self.compute_view), name="deals_payout_compute"
        )
        return [compute, *super().get_urls()]

    def compute_view(self, request: HttpRequest) -> HttpResponse:
        """Closes a period: draft payouts for every deal that owes one (like the command)."""
        if not self.has_change_permission(request):
            return HttpResponse(status=403)
        form = PeriodForm(request.POST or None, initial={"period": last_month()})
        if request.method == "POST" and form.is_valid():
            period = form.cleaned_data["period"]
            try:
                results = actions.close_period(period, actor=request.user)
            except DealError as error:
                form.add_error("period", str(error))
            else:
                for result in results:
                    level = messages.ERROR if result.outcome == "failed" else messages.INFO
                    messages.add_message(
                        request, level, f"{result.deal.streamer}: {result.outcome} "
                        f"({result.detail})",
                    )
                changelist = reverse("admin:deals_payout_changelist")
                return HttpResponseRedirect(f"{changelist}?period={period}")
        return TemplateResponse(
            request,
            "admin/deals/payout/compute.html",
            {
                **self.admin_site.each_context(request),
                "title": "Compute payouts for a period",
                "form": form,
                "opts": self.model._meta,
            },
        )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(AppendOnlyAdmin):
    """The ledger, read-only: rows are written by the payout workflow and never edited."""

    list_display = [
        "created_at", "transaction_id", "kind", "account", "debit_cents", "credit_cents",
        "currency", "payout",
    ]
    list_filter = ["account", "kind", "currency"]
    search_fields = ["transaction_id", "payout__deal__streamer__display_name"]
    list_select_related = ["payout__deal__streamer"]
    date_hierarchy = "created_at"


def spreadsheet_safe(text: str, empty: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection). The list's
    empty-value mark ("-") is left alone: alone, it is no formula."""
    if text != empty and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return f"'{text}"
    return text
