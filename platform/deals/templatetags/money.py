"""Template filters: `{{ cents|money:currency }}`, `{{ seconds|hours }}`, `{{ bps|percent }}`."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from django import template

from deals.calculation import hours_exact
from deals.money import format_money
from deals.money import percent as as_percent

register = template.Library()


@register.filter
def money(cents: int, currency: str = "USD") -> str:
    return format_money(cents, currency)


@register.filter
def hours(seconds: int | Fraction) -> Decimal:
    return hours_exact(Fraction(seconds))


@register.filter
def percent(basis_points: int) -> str:
    return as_percent(basis_points)
