"""Template filters for cents and seconds: `{{ cents|money:currency }}`, `{{ seconds|hours }}`."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from django import template

from deals.calculation import format_money, hours_exact

register = template.Library()


@register.filter
def money(cents: int, currency: str = "USD") -> str:
    return format_money(cents, currency)


@register.filter
def hours(seconds: int | Fraction) -> Decimal:
    return hours_exact(Fraction(seconds))
