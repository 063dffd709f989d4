"""Deals and payouts in Django admin. Every change goes through `deals.actions`.

Money is typed in units with two decimals ("5000.00") and shown formatted everywhere
(`deals.money`). A deal's page edits its terms (a draft's in place, a signed deal's as a
new version another admin signs) and signs them; a payout's page has the workflow as
buttons that show the amount; the ledger's list starts with the balances per account.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import (
    display_for_field,
    display_for_value,
    label_for_field,
    lookup_field,
    unquote,
)
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join, strip_tags
from django.utils.text import capfirst

from golive.admin import AppendOnlyAdmin, AppendOnlyInline

from . import actions, ledger
from .actions import DealError, DealTerms
from .calculation import CalculationError, DealKind, Period, Shortfall, calculate
from .calculation import hours as to_hours
from .models import Deal, DealEvent, DealVersion, LedgerEntry, Payout, PayoutEvent, PayoutLine
from .money import (
    CURRENCY_CHOICES,
    AmountError,
    Money,
    format_money,
    parse_basis_points,
    parse_cents,
    percent,
    units,
)
from .progress import progress, sessions_of, with_period_sessions

ADMIN_CSS = {"all": ["deals/admin.css"]}

M = TypeVar("M", bound=Model)


# --- Form fields --------------------------------------------------------------------------


class MoneyField(forms.CharField):
    """Units with at most two decimals ("5000.00") → integer cents; cents shown as units."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "widget",
            forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "5000.00", "size": 14}),
        )
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        return units(value) if isinstance(value, int) else value

    def clean(self, value: Any) -> int | None:
        text = super().clean(value)
        if text in self.empty_values:
            return None
        try:
            return parse_cents(text)
        except AmountError as error:
            raise ValidationError(str(error)) from None


class PercentField(forms.CharField):
    """A percentage with at most two decimals ("15", "12.5") → basis points."""

    def prepare_value(self, value: Any) -> Any:
        return percent(value) if isinstance(value, int) else value

    def clean(self, value: Any) -> int:
        text = super().clean(value)
        if text in self.empty_values:
            return 0
        try:
            return parse_basis_points(text)
        except AmountError as error:
            raise ValidationError(str(error)) from None


class DealForm(forms.ModelForm[Deal]):
    """A deal and its terms. On a signed deal the terms become a proposal (a new version)
    that applies from ``effective_from`` once another admin signs it."""

    currency = forms.ChoiceField(choices=CURRENCY_CHOICES, initial="USD")
    kind = forms.ChoiceField(choices=Deal.KIND_CHOICES, initial=DealKind.FLAT.value)
    amount = MoneyField(
        label="Amount",
        help_text="A month's guarantee, or the rate per hour, in the currency above, with at "
        "most two decimals: 5000.00 is 5,000.00.",
    )
    revenue_share = PercentField(
        label="Revenue share (%)", required=False, initial="0",
        help_text="Minimum-plus-share deals only, in percent: 15 or 12.5.",
    )
    ends_on = forms.DateField(label="Ends on", help_text="Last day of the term (included).")
    effective_from = forms.DateField(
        label="New terms apply from", required=False,
        help_text="The deal's first day or the 1st of a month. The signed terms apply until "
        "another admin signs these.",
    )
    min_hours = forms.DecimalField(
        label="Minimum hours per period", max_digits=6, decimal_places=2, min_value=0,
        initial=0,
    )
    min_streams = forms.IntegerField(
        label="Minimum streams per period", min_value=0, max_value=10_000, initial=0
    )
    exclusive = forms.BooleanField(required=False, help_text="Streams only on golive.")
    shortfall = forms.ChoiceField(
        label="When a minimum is missed", choices=Deal.SHORTFALL_CHOICES,
        initial=Shortfall.PRO_RATA.value,
    )
    confirm = forms.BooleanField(
        label="I have checked the figures", required=False,
        help_text="Needed only when the figures deserve a second look (they are listed "
        "above when they do).",
    )

    class Meta:
        model = Deal
        fields = ["streamer", "starts_on", "notes"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        deal = self.instance
        if deal.pk is None:
            return
        signed = deal.signed_versions()
        version = deal.pending_version() or (signed[-1] if signed else None)
        if version is not None:
            self.initial.update({
                "currency": version.currency, "kind": version.kind,
                "amount": version.amount_cents, "revenue_share": version.revenue_share_bps,
                "ends_on": version.ends_on, "min_hours": version.min_hours,
                "min_streams": version.min_streams, "exclusive": version.exclusive,
                "shortfall": version.shortfall,
            })
        if deal.signed_at is not None:
            pending = deal.pending_version()
            self.initial["effective_from"] = (
                pending.effective_from if pending is not None
                else actions.default_effective_from(deal, timezone.now().date())
            )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        needed = ["currency", "kind", "amount", "ends_on", "min_hours", "min_streams",
                  "shortfall"]
        if any(data.get(name) is None for name in needed):
            return data
        probe = Deal(
            pk=self.instance.pk, status=self.instance.status,
            signed_at=self.instance.signed_at,
            streamer=data.get("streamer") or self.instance.streamer,
            starts_on=data.get("starts_on") or self.instance.starts_on,
        )
        if probe.starts_on is None or probe.streamer_id is None:
            return data
        self.terms = DealTerms(
            kind=data["kind"], amount_cents=data["amount"], ends_on=data["ends_on"],
            currency=data["currency"], revenue_share_bps=data.get("revenue_share") or 0,
            min_hours=data["min_hours"], min_streams=data["min_streams"],
            exclusive=bool(data.get("exclusive")), shortfall=data["shortfall"],
        )
        effective = data.get("effective_from")
        if probe.signed_at is not None and effective is None:
            effective = self.initial.get("effective_from")
            self.cleaned_data["effective_from"] = effective
        result = actions.review_deal(probe, self.terms, effective_from=effective)
        for name, message in result.errors.items():
            self.add_error(name if name in self.fields else None, message)
        if result.warnings and not data.get("confirm") and not result.errors:
            self.add_error("confirm", ValidationError(
                [*result.warnings, "Tick “I have checked the figures” to save them as they are."]
            ))
        return data


# --- Helpers for actions ------------------------------------------------------------------


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
        widget=forms.Textarea(attrs={"rows": 2}), help_text="Kept in the audit trail."
    )


class TerminateForm(ReasonForm):
    last_day = forms.DateField(
        help_text="The term's last day (YYYY-MM-DD); never later than its current end. A "
        "deal never signed is cancelled instead.",
    )


class CorrectionForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[(Payout.Kind.ADJUSTMENT.value, "Adjustment: golive owes the streamer more"),
                 (Payout.Kind.CLAWBACK.value, "Clawback: the streamer owes golive some back")],
        widget=forms.RadioSelect,
    )
    amount = MoneyField(help_text="In the payout's currency, with at most two decimals.")
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why the paid amount was wrong; kept in both payouts' audit trails.",
    )


def last_month() -> str:
    return Period.containing(timezone.now()).previous().label


def run_each(
    request: HttpRequest, items: QuerySet[Any], step: Callable[[Any], object], done: str,
    already: str = "",
) -> None:
    """Applies ``step`` to each item, one transaction each; reports what changed, what was
    already done (when ``step`` returns an object whose ``changed`` is False) and refusals."""
    succeeded = unchanged = 0
    for item in items:
        try:
            result = step(item)
        except DealError as error:
            messages.error(request, f"Refused for {item}: {error}.")
            continue
        if getattr(result, "changed", True):
            succeeded += 1
        else:
            unchanged += 1
    if succeeded:
        messages.success(request, f"{done}: {succeeded}.")
    if unchanged:
        messages.info(request, f"Nothing changed for {unchanged}: {already or 'already done'}.")


def form_step(
    model_admin: admin.ModelAdmin[M], request: HttpRequest, queryset: QuerySet[M],
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
    model_admin: admin.ModelAdmin[M], request: HttpRequest, queryset: QuerySet[M],
    form_class: type[forms.Form], title: str, field: str,
    step: Callable[[M, Any], object], done: str, initial: dict[str, Any] | None = None,
    already: str = "",
) -> TemplateResponse | None:
    """An action that asks for a value (the form's ``field``; ``"*"`` for all its cleaned
    data) first, then applies ``step(item, value)`` to each item; ``done`` may name the
    value as ``{value}``."""
    asked = form_step(model_admin, request, queryset, form_class, title, initial)
    if isinstance(asked, TemplateResponse):
        return asked
    value = asked.cleaned_data if field == "*" else asked.cleaned_data[field]
    run_each(request, queryset, lambda item: step(item, value), done.format(value=value),
             already)
    return None


def trail_rows(events: Any, currency: Callable[[Any], str] | None = None) -> list[dict[str, Any]]:
    """Audit rows for the History page: what happened, or what was refused."""
    rows = []
    for event in events:
        change = f"{event.from_status or '—'} → {event.to_status}"
        amount = getattr(event, "amount_cents", None)
        rows.append({
            "at": event.at, "who": event.actor_name, "refused": event.refused,
            "what": ("refused: " if event.refused else "") + change,
            "amount": format_money(amount, currency(event)) if currency and amount is not None
            else "",
            "note": event.note,
        })
    return rows


def refused_mark(event: Any) -> str:
    if event.refused:
        return format_html('<strong class="{}">refused</strong>', "deals-refused")
    return "done"


# --- Deals --------------------------------------------------------------------------------


class DealVersionInline(AppendOnlyInline[DealVersion, Deal]):
    model = DealVersion
    verbose_name_plural = "terms, version by version"
    fields = readonly_fields = (
        "number", "status", "effective_from", "amount", "kind", "minimums", "ends_on",
        "proposed_by_name", "changed_by_name", "signed_by_name", "signed_at",
    )

    @admin.display(description="amount")
    def amount(self, version: DealVersion) -> str:
        share = (f" + {percent(version.revenue_share_bps)}% share"
                 if version.kind == DealKind.MINIMUM_PLUS_SHARE else "")
        return version.amount_display() + share

    @admin.display(description="minimums a month")
    def minimums(self, version: DealVersion) -> str:
        return f"{version.min_hours} h, {version.min_streams} streams"


class DealEventInline(AppendOnlyInline[DealEvent, Deal]):
    model = DealEvent
    verbose_name_plural = "audit trail"
    fields = readonly_fields = (
        "at", "actor_name", "outcome", "action", "from_status", "to_status", "note",
    )

    @admin.display(description="outcome")
    def outcome(self, event: DealEvent) -> str:
        return refused_mark(event)


class SignatureFilter(admin.SimpleListFilter):
    title = "signature"
    parameter_name = "signature"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("waiting", "terms waiting for a signature")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "waiting":
            return queryset.filter(versions__status=DealVersion.Status.PROPOSED).distinct()
        return queryset


@admin.register(Deal)
class DealAdmin(admin.ModelAdmin[Deal]):
    form = DealForm
    list_display = ["streamer", "terms", "status", "term", "waiting", "this_period"]
    list_filter = ["status", SignatureFilter]
    search_fields = ["streamer__display_name", "streamer__user__username"]
    list_select_related = ["streamer"]
    autocomplete_fields = ["streamer"]
    inlines = [DealVersionInline, DealEventInline]
    actions = ["sign", "pause", "resume", "end", "terminate", "compute_for_period"]
    change_form_template = "admin/deals/deal/change_form.html"
    object_history_template = "admin/deals/object_history.html"

    class Media:
        css = ADMIN_CSS

    def get_fieldsets(self, request: HttpRequest, obj: Deal | None = None) -> Any:
        signed = obj is not None and obj.signed_at is not None
        term = ["starts_on", "ends_on", *(["effective_from"] if signed else [])]
        return [
            (None, {"fields": ["streamer", "status"]}),
            ("Money", {"fields": ["currency", "kind", "amount", "revenue_share"]}),
            ("Term", {"fields": term}),
            (
                "Requirements per period (a calendar month)",
                {"fields": ["min_hours", "min_streams", "exclusive", "shortfall"]},
            ),
            ("Check", {"fields": ["confirm"]}),
            ("Record", {"fields": ["notes", "created_by", "created_at", "signed_by",
                                   "signed_at"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Deal | None = None) -> Any:
        fixed = ["status", "created_by", "created_at", "signed_by", "signed_at"]
        if obj is not None and obj.signed_at is not None:
            return ["streamer", "starts_on", *fixed]  # signed: terminate and start anew
        return fixed

    def get_queryset(self, request: HttpRequest) -> QuerySet[Deal]:
        return with_period_sessions(super().get_queryset(request), timezone.now())

    def has_change_permission(self, request: HttpRequest, obj: Deal | None = None) -> bool:
        if obj is not None and obj.status in (
            Deal.Status.ENDED, Deal.Status.TERMINATED, Deal.Status.CANCELLED
        ):
            return False  # a finished deal is a record: read-only
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Deal | None = None) -> bool:
        return False  # terminate (or cancel) instead: a deal's history is kept

    def save_model(self, request: HttpRequest, obj: Deal, form: Any, change: bool) -> None:
        # Through the one write path, which writes the version and the audit row; the form
        # has already shown the warnings and had them confirmed.
        saved = actions.save_deal(
            obj, form.terms, actor=request.user,
            effective_from=form.cleaned_data.get("effective_from"),
            confirmed=bool(form.cleaned_data.get("confirm")),
        )
        version = saved.version
        if saved.outcome == "created":
            messages.info(request, "Saved as a draft: another admin signs it (Sign on its page) "
                                   "before it pays anything.")
        elif saved.outcome == "proposed" and version is not None:
            messages.warning(
                request, f"Proposed v{version.number}, applying from {version.effective_from} "
                "once another admin signs it; until then the signed terms apply.",
            )
        elif saved.outcome == "changed" and version is not None and obj.signed_at is not None:
            messages.warning(request, f"Proposal v{version.number} changed: it still needs "
                                      "another admin's signature.")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        deal = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if deal is not None:
            pending = deal.pending_version()
            context["pending"] = pending
            if pending is not None:
                context["pending_authors"] = actions.authors(pending)
        return super().change_view(request, object_id, form_url, context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        deal = self.get_object(request, unquote(object_id))
        trail = trail_rows(deal.events.all()) if deal is not None else []
        return super().history_view(request, object_id, {"trail": trail, **(extra_context or {})})

    @admin.display(description="terms")
    def terms(self, deal: Deal) -> str:
        version = deal.shown_version(timezone.now().date())
        if version is None:
            return "—"
        signed = "" if version.status == DealVersion.Status.SIGNED else " (unsigned)"
        return f"{version.amount_display()}{signed}"

    @admin.display(description="term", ordering="starts_on")
    def term(self, deal: Deal) -> str:
        return f"{deal.starts_on} → {deal.ends_on}"

    @admin.display(description="waiting for a signature")
    def waiting(self, deal: Deal) -> str:
        pending = deal.pending_version()
        if pending is None:
            return ""
        return f"v{pending.number}: {pending.amount_display()} from {pending.effective_from}"

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

    @admin.action(description="Sign the terms waiting for a signature", permissions=["change"])
    def sign(self, request: HttpRequest, queryset: QuerySet[Deal]) -> None:
        run_each(request, queryset, lambda d: actions.sign_deal(d, actor=request.user),
                 "Signed", "nothing was waiting for a signature")

    @admin.action(description="Pause (payments on hold)", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Deal]) -> None:
        self._set(request, queryset, Deal.Status.PAUSED, "Paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Deal]) -> None:
        self._set(request, queryset, Deal.Status.ACTIVE, "Resumed")

    @admin.action(description="End today", permissions=["change"])
    def end(self, request: HttpRequest, queryset: QuerySet[Deal]) -> None:
        self._set(request, queryset, Deal.Status.ENDED, "Ended (or cancelled, if never signed)")

    @admin.action(description="Terminate (or cancel a draft)…", permissions=["change"])
    def terminate(self, request: HttpRequest, queryset: QuerySet[Deal]) -> Any:
        return ask_then_each(
            self, request, queryset, TerminateForm, "Terminate deals", "*",
            lambda deal, data: actions.set_deal_status(
                deal, Deal.Status.TERMINATED, actor=request.user, note=data["reason"],
                effective_on=data["last_day"],
            ),
            "Terminated (or cancelled, if never signed)",
            initial={"last_day": timezone.now().date()},
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

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/sign/", view(self.sign_view), name="deals_deal_sign"),
            path("<int:pk>/withdraw/", view(self.withdraw_view), name="deals_deal_withdraw"),
            *super().get_urls(),
        ]

    def sign_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The terms waiting for a signature beside the signed ones; POST signs them."""
        deal = self._deal_to_change(request, pk)
        back = reverse("admin:deals_deal_change", args=[deal.pk])
        pending = deal.pending_version()
        if request.method == "POST":
            try:
                signed = actions.sign_deal(deal, actor=request.user)
            except DealError as error:
                messages.error(request, f"Refused: {error}.")
            else:
                if signed.changed:
                    messages.success(request, f"Signed: {deal.streamer}'s terms now apply "
                                              f"({pending.amount_display() if pending else ''}).")
                else:
                    messages.info(request, "Nothing changed: no terms were waiting for a "
                                           "signature.")
            return HttpResponseRedirect(back)
        if pending is None:
            messages.info(request, "No terms are waiting for a signature.")
            return HttpResponseRedirect(back)
        signed_versions = deal.signed_versions()
        current = DealTerms.of(signed_versions[-1]) if signed_versions else None
        terms = DealTerms.of(pending)
        checked = actions.review_deal(
            deal, terms,
            effective_from=pending.effective_from if deal.signed_at is not None else None,
        )
        return TemplateResponse(request, "admin/deals/deal/sign.html", {
            **self.admin_site.each_context(request),
            "title": f"Sign v{pending.number} of {deal.streamer}'s deal",
            "opts": self.model._meta, "original": deal, "deal": deal, "pending": pending,
            "terms": terms.describe(),
            "changes": terms.differences(current) if current else [],
            "warnings": checked.warnings,
            "errors": list(checked.errors.values()),
            "is_author": request.user.pk in actions.authors(pending),
            "may_sign": request.user.has_perm(actions.SIGN),
        })

    def withdraw_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        deal = self._deal_to_change(request, pk)
        if request.method == "POST":
            try:
                actions.withdraw_proposal(deal, actor=request.user,
                                          reason=request.POST.get("reason", ""))
                messages.success(request, "Proposal withdrawn: the signed terms go on applying.")
            except DealError as error:
                messages.error(request, f"Refused: {error}.")
        return HttpResponseRedirect(reverse("admin:deals_deal_change", args=[deal.pk]))

    def _deal_to_change(self, request: HttpRequest, pk: int) -> Deal:
        deal = get_object_or_404(Deal.objects.select_related("streamer"), pk=pk)
        if not self.has_change_permission(request, deal):
            raise PermissionDenied
        return deal


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


class PayoutLineInline(AppendOnlyInline[PayoutLine, Payout]):
    model = PayoutLine
    verbose_name_plural = "calculation, line by line"
    fields = readonly_fields = ("position", "label", "detail", "amount")

    @admin.display(description="amount")
    def amount(self, line: PayoutLine) -> str:
        if line.amount_cents is None:
            return ""
        return format_money(line.amount_cents, line.payout.currency)


class PayoutEventInline(AppendOnlyInline[PayoutEvent, Payout]):
    model = PayoutEvent
    verbose_name_plural = "audit trail"
    fields = readonly_fields = (
        "at", "actor_name", "outcome", "from_status", "to_status", "amount", "note",
    )

    @admin.display(description="outcome")
    def outcome(self, event: PayoutEvent) -> str:
        return refused_mark(event)

    @admin.display(description="amount")
    def amount(self, event: PayoutEvent) -> str:
        return format_money(event.amount_cents, event.payout.currency)


class LedgerEntryInline(AppendOnlyInline[LedgerEntry, Payout]):
    model = LedgerEntry
    verbose_name_plural = "ledger entries"
    fields = readonly_fields = (
        "created_at", "kind", "account", "debit", "credit", "transaction_id",
    )

    @admin.display(description="debit")
    def debit(self, entry: LedgerEntry) -> str:
        return format_money(entry.debit_cents, entry.currency) if entry.debit_cents else ""

    @admin.display(description="credit")
    def credit(self, entry: LedgerEntry) -> str:
        return format_money(entry.credit_cents, entry.currency) if entry.credit_cents else ""


@admin.register(Payout)
class PayoutAdmin(admin.ModelAdmin[Payout]):
    list_display = [
        "streamer", "period", "kind", "status_shown", "amount", "hours", "streams",
        "requirements", "computed_by_name", "approved_by", "payment_reference",
    ]
    list_filter = ["status", "kind", PeriodFilter]
    search_fields = ["deal__streamer__display_name", "payment_reference"]
    list_select_related = ["deal__streamer", "approved_by"]
    fieldsets = [
        ("Payout", {"fields": ["streamer", "deal_link", "period", "kind", "corrects_link",
                               "status_shown", "amount", "terms_version", "reason",
                               "corrections_list"]}),
        ("Activity in the period", {"fields": ["hours", "streams", "peak_viewers",
                                               "requirements"]}),
        ("Workflow", {"fields": ["computed", "approved", "paid", "voided"]}),
    ]
    readonly_fields = [
        "streamer", "deal_link", "period", "kind", "corrects_link", "status_shown", "amount",
        "terms_version", "reason", "corrections_list", "hours", "streams", "peak_viewers",
        "requirements", "computed", "approved", "paid", "voided",
    ]
    inlines = [PayoutLineInline, PayoutEventInline, LedgerEntryInline]
    actions = ["approve", "mark_paid", "void", "recompute", "export_csv"]
    change_list_template = "admin/deals/payout/change_list.html"
    change_form_template = "admin/deals/payout/change_form.html"
    object_history_template = "admin/deals/object_history.html"

    class Media:
        css = ADMIN_CSS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # payouts are computed: "Compute for a period" or the deals' action

    def has_delete_permission(self, request: HttpRequest, obj: Payout | None = None) -> bool:
        return False  # void instead

    def save_model(self, request: HttpRequest, obj: Payout, form: Any, change: bool) -> None:
        pass  # every field is read-only; changes are the buttons, through deals.actions

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        no_buttons = {"show_save": False, "show_save_and_continue": False,
                      "show_save_and_add_another": False, "show_delete": False}
        payout = self.get_object(request, unquote(object_id))
        workflow = self.workflow(request, payout) if payout is not None else {}
        return super().change_view(
            request, object_id, form_url, no_buttons | workflow | (extra_context or {})
        )

    def workflow(self, request: HttpRequest, payout: Payout) -> dict[str, Any]:
        """Which buttons the page shows this admin, and why one is not offered."""
        user = request.user
        status, kind = payout.status, payout.kind
        alone = actions._alone_allowed(payout)
        context: dict[str, Any] = {"payout": payout, "amount_text": payout.amount_display,
                                   "may_change": self.has_change_permission(request, payout)}
        may_approve, may_pay = user.has_perm(actions.APPROVE), user.has_perm(actions.PAY)
        if status == Payout.Status.DRAFT:
            context["can_approve"] = may_approve and (payout.computed_by_id != user.pk or alone)
            if not may_approve:
                context["approve_hint"] = (
                    "Approving needs the “approve or void payouts” permission."
                )
            elif not context["can_approve"]:
                context["approve_hint"] = (
                    "You computed this payout: another admin must approve it."
                )
        if status == Payout.Status.APPROVED:
            context["can_pay"] = may_pay and (payout.approved_by_id != user.pk or alone)
            if not may_pay:
                context["pay_hint"] = "Marking paid needs the “mark payouts paid” permission."
            elif not context["can_pay"]:
                context["pay_hint"] = (
                    "You approved this payout: another admin must mark it paid."
                )
        context["can_void"] = may_approve and status in (Payout.Status.DRAFT,
                                                         Payout.Status.APPROVED)
        context["can_correct"] = status == Payout.Status.PAID and kind == Payout.Kind.REGULAR
        context["can_recompute"] = kind == Payout.Kind.REGULAR and status in (
            Payout.Status.DRAFT, Payout.Status.VOID
        )
        context["pay_label"] = "Mark recovered" if kind == Payout.Kind.CLAWBACK else "Mark paid"
        return context

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        payout = self.get_object(request, unquote(object_id))
        trail = (
            trail_rows(payout.events.select_related("payout"), lambda e: e.payout.currency)
            if payout is not None else []
        )
        return super().history_view(request, object_id, {"trail": trail, **(extra_context or {})})

    @admin.display(description="streamer", ordering="deal__streamer__display_name")
    def streamer(self, payout: Payout) -> str:
        return str(payout.deal.streamer)

    @admin.display(description="deal")
    def deal_link(self, payout: Payout) -> str:
        url = reverse("admin:deals_deal_change", args=[payout.deal_id])
        return format_html('<a href="{}">deal #{}</a> ({})', url, payout.deal_id,
                           payout.deal.status)

    @admin.display(description="period", ordering="period_start")
    def period(self, payout: Payout) -> str:
        return payout.period.label

    @admin.display(description="status", ordering="status")
    def status_shown(self, payout: Payout) -> str:
        return payout.status_display

    @admin.display(description="corrects")
    def corrects_link(self, payout: Payout) -> str:
        if payout.corrects_id is None:
            return ""
        url = reverse("admin:deals_payout_change", args=[payout.corrects_id])
        return format_html('<a href="{}">payout #{}</a>', url, payout.corrects_id)

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, payout: Payout) -> str:
        return payout.amount_display

    @admin.display(description="computed with terms")
    def terms_version(self, payout: Payout) -> str:
        version = payout.version
        if version is None:
            return "none recorded (computed before terms had versions: recompute it)"
        return f"v{version.number}: {version.amount_display()}, signed by " \
               f"{version.signed_by_name or '?'}"

    @admin.display(description="corrections")
    def corrections_list(self, payout: Payout) -> str:
        corrections = list(payout.corrections.all())
        if not corrections:
            return ""
        links = format_html_join(
            ", ", '<a href="{}">{} #{}: {} ({})</a>',
            ((reverse("admin:deals_payout_change", args=[c.pk]), c.kind, c.pk,
              c.amount_display, c.status_display) for c in corrections),
        )
        settled = format_money(actions.settled_cents(payout), payout.currency)
        return format_html("{}; settled for the month: {}", links, settled)

    @admin.display(description="hours", ordering="streamed_seconds")
    def hours(self, payout: Payout) -> str:
        return str(to_hours(payout.streamed_seconds))

    @admin.display(description="streams")
    def streams(self, payout: Payout) -> int:
        return payout.streams

    @admin.display(description="peak viewers")
    def peak_viewers(self, payout: Payout) -> str:
        return "unknown" if payout.peak_viewers is None else f"{payout.peak_viewers:,}"

    @admin.display(description="requirements", ordering="requirements_met")
    def requirements(self, payout: Payout) -> str:
        if payout.kind != Payout.Kind.REGULAR:
            return ""
        if payout.requirements_met:
            return "met"
        return format_html('<span class="{}">missed</span>', "deals-missed")

    @admin.display(description="computed")
    def computed(self, payout: Payout) -> str:
        return f"{payout.computed_at:%Y-%m-%d %H:%M} UTC by {payout.computed_by_name or 'system'}"

    @admin.display(description="approved")
    def approved(self, payout: Payout) -> str:
        if payout.approved_at is None:
            return ""
        return f"{payout.approved_at:%Y-%m-%d %H:%M} UTC by {payout.approved_by}"

    @admin.display(description="paid")
    def paid(self, payout: Payout) -> str:
        if payout.paid_at is None:
            return ""
        return (f"{payout.paid_at:%Y-%m-%d %H:%M} UTC by {payout.paid_by}, reference "
                f"{payout.payment_reference}")

    @admin.display(description="voided")
    def voided(self, payout: Payout) -> str:
        if payout.voided_at is None:
            return ""
        return f"{payout.voided_at:%Y-%m-%d %H:%M} UTC by {payout.voided_by}: {payout.void_reason}"

    @admin.action(description="Approve (not your own computation)", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        run_each(
            request, queryset, lambda p: actions.approve_payout(p, actor=request.user),
            "Approved", "already approved",
        )

    @admin.action(description="Mark paid (not your own approval)…", permissions=["change"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Payout]) -> Any:
        return ask_then_each(
            self, request, queryset, ReferenceForm, "Mark payouts paid", "reference",
            lambda p, reference: actions.mark_paid(p, actor=request.user, reference=reference),
            "Marked paid", already="already paid with that reference",
        )

    @admin.action(description="Void…", permissions=["change"])
    def void(self, request: HttpRequest, queryset: QuerySet[Payout]) -> Any:
        return ask_then_each(
            self, request, queryset, ReasonForm, "Void payouts", "reason",
            lambda p, reason: actions.void_payout(p, actor=request.user, reason=reason),
            "Voided", already="already void",
        )

    @admin.action(description="Recompute (drafts and void ones)", permissions=["change"])
    def recompute(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        def step(payout: Payout) -> Payout:
            if payout.kind != Payout.Kind.REGULAR:
                raise DealError("a correction is not computed: void it and enter a new one")
            return actions.compute_payout(payout.deal, payout.period, actor=request.user)

        run_each(request, queryset, step, "Recomputed")

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

    def cell(self, name: str | Callable[[Payout], str | bool], obj: Payout) -> str:
        # What the changelist shows for this column (admin.templatetags.admin_list does the
        # same: lookup_field, then display_for_field or display_for_value), as plain text.
        field, attr, value = lookup_field(name, obj, self)
        empty = self.get_empty_value_display()
        if field is None:
            text = str(display_for_value(value, empty, getattr(attr, "boolean", False)))
        elif value is None:
            text = str(empty)
        else:
            text = str(display_for_field(value, field, empty))
        return strip_tags(text)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("compute/", view(self.compute_view), name="deals_payout_compute"),
            path("<int:pk>/approve/", view(self.approve_view), name="deals_payout_approve"),
            path("<int:pk>/pay/", view(self.pay_view), name="deals_payout_pay"),
            path("<int:pk>/void/", view(self.void_view), name="deals_payout_void"),
            path("<int:pk>/recompute/", view(self.recompute_view),
                 name="deals_payout_recompute"),
            path("<int:pk>/correct/", view(self.correct_view), name="deals_payout_correct"),
            *super().get_urls(),
        ]

    def _posted(self, request: HttpRequest, pk: int) -> Payout:
        if request.method != "POST":
            raise Http404("these buttons post")
        payout = get_object_or_404(Payout.objects.select_related("deal__streamer"), pk=pk)
        if not self.has_change_permission(request, payout):
            raise PermissionDenied
        return payout

    def _done(
        self, request: HttpRequest, payout: Payout, step: Callable[[], Payout], done: str,
        already: str,
    ) -> HttpResponse:
        try:
            result = step()
        except DealError as error:
            messages.error(request, f"Refused: {error}.")
        else:
            if result.changed:
                messages.success(request, f"{done}: {result.amount_display} for {result}.")
            else:
                messages.info(request, f"Nothing changed: the payout was {already}.")
        return HttpResponseRedirect(reverse("admin:deals_payout_change", args=[payout.pk]))

    def approve_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        payout = self._posted(request, pk)
        return self._done(request, payout,
                          lambda: actions.approve_payout(payout, actor=request.user),
                          "Approved", "already approved")

    def pay_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        payout = self._posted(request, pk)
        reference = request.POST.get("reference", "")
        done = "Marked recovered" if payout.kind == Payout.Kind.CLAWBACK else "Marked paid"
        return self._done(
            request, payout,
            lambda: actions.mark_paid(payout, actor=request.user, reference=reference),
            done, "already marked paid with that reference",
        )

    def void_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        payout = self._posted(request, pk)
        reason = request.POST.get("reason", "")
        return self._done(
            request, payout,
            lambda: actions.void_payout(payout, actor=request.user, reason=reason),
            "Voided", "already void",
        )

    def recompute_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        payout = self._posted(request, pk)
        return self._done(
            request, payout,
            lambda: actions.compute_payout(payout.deal, payout.period, actor=request.user),
            "Recomputed", "unchanged",
        )

    def correct_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """A paid payout's correction: an adjustment or a clawback, drafted for approval."""
        original = get_object_or_404(Payout.objects.select_related("deal__streamer"), pk=pk)
        if not self.has_change_permission(request, original):
            raise PermissionDenied
        form = CorrectionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                correction = actions.correct_payout(
                    original, kind=form.cleaned_data["kind"],
                    amount_cents=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"], actor=request.user,
                )
            except DealError as error:
                form.add_error(None, str(error))
            else:
                messages.success(
                    request, f"{capfirst(correction.kind)} {correction.amount_display} drafted: "
                    "another admin approves it, then it is paid like any payout.",
                )
                return HttpResponseRedirect(
                    reverse("admin:deals_payout_change", args=[correction.pk])
                )
        return TemplateResponse(request, "admin/deals/payout/correct.html", {
            **self.admin_site.each_context(request),
            "title": f"Correct {original}",
            "opts": self.model._meta, "original": original, "form": form,
            "settled": format_money(actions.settled_cents(original), original.currency),
            "recalculated": self.recalculated(original),
        })

    def recalculated(self, payout: Payout) -> str:
        """What the month would come to if computed now, as a hint for the correction."""
        if payout.version is None:
            return ""
        try:
            result = calculate(payout.version.terms(payout.deal), payout.period,
                               sessions_of(payout.deal, payout.period), now=timezone.now())
        except CalculationError:
            return ""
        money = Money(payout.currency)
        difference = result.amount_cents - actions.settled_cents(payout)
        return (f"Computed now, with the same terms, {payout.period} comes to "
                f"{money(result.amount_cents)}: {money.signed(difference)} against what is "
                "settled.")

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
                    messages.add_message(request, closing_level(result), closing_text(result))
                if not results:
                    messages.info(request, f"{period}: no signed deal covers it.")
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


def closing_level(result: actions.Closing) -> int:
    """Green only for a payout computed with every minimum met."""
    if result.outcome == "failed":
        return messages.ERROR
    if result.requirements_met is False:
        return messages.WARNING
    if result.outcome == "computed":
        return messages.SUCCESS
    return messages.INFO


def closing_text(result: actions.Closing) -> str:
    amount = (
        f" {format_money(result.amount_cents, result.currency)}"
        if result.amount_cents is not None and result.currency else ""
    )
    return f"{result.deal.streamer}: {result.outcome}{amount} ({result.detail})"


@admin.register(LedgerEntry)
class LedgerEntryAdmin(AppendOnlyAdmin[LedgerEntry]):
    """The ledger, read-only: rows are written by the payout workflow and never edited.
    The list starts with the balance of every account."""

    list_display = [
        "created_at", "transaction_id", "kind", "account", "debit", "credit", "payout",
    ]
    list_filter = ["account", "kind", "currency"]
    search_fields = ["transaction_id", "payout__deal__streamer__display_name"]
    list_select_related = ["payout__deal__streamer"]
    date_hierarchy = "created_at"
    change_list_template = "admin/deals/ledgerentry/change_list.html"

    class Media:
        css = ADMIN_CSS

    @admin.display(description="debit", ordering="debit_cents")
    def debit(self, entry: LedgerEntry) -> str:
        return format_money(entry.debit_cents, entry.currency) if entry.debit_cents else ""

    @admin.display(description="credit", ordering="credit_cents")
    def credit(self, entry: LedgerEntry) -> str:
        return format_money(entry.credit_cents, entry.currency) if entry.credit_cents else ""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        accounts = dict(LedgerEntry.Account.choices)
        rows = [
            {
                "account": account, "label": accounts.get(account, account),
                "currency": currency, "balance": format_money(cents, currency),
                "debit_balance": cents > 0,
            }
            for (account, currency), cents in sorted(ledger.balances().items())
        ]
        context = {"balances": rows, "unbalanced": ledger.unbalanced_transactions(),
                   **(extra_context or {})}
        return super().changelist_view(request, context)


def spreadsheet_safe(text: str, empty: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection). The list's
    empty-value mark ("-") is left alone: alone, it is no formula."""
    if text != empty and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return f"'{text}"
    return text

