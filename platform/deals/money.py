"""Money as people type it and read it: currencies, amounts in units with two decimals.

Stored amounts are integer cents (the currency's minor unit). Admins type units with at
most two decimals ("5000.00" is 5,000.00 in the deal's currency); everything shown to a
person goes through `Money`. Pure: no database, no settings.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

# ISO 4217 codes golive pays in. Only currencies whose minor unit is the cent (two
# decimals): JPY or KRW (none) and BHD or KWD (three) would make "5000.00" mean something
# else, so they are left out until the platform needs them.
CURRENCIES: dict[str, str] = {
    "USD": "US dollar",
    "EUR": "euro",
    "GBP": "pound sterling",
    "CAD": "Canadian dollar",
    "AUD": "Australian dollar",
    "NZD": "New Zealand dollar",
    "CHF": "Swiss franc",
    "SEK": "Swedish krona",
    "NOK": "Norwegian krone",
    "DKK": "Danish krone",
    "PLN": "Polish zloty",
    "CZK": "Czech koruna",
    "BRL": "Brazilian real",
    "MXN": "Mexican peso",
    "SGD": "Singapore dollar",
}
CURRENCY_CHOICES = [(code, f"{code} ({name})") for code, name in CURRENCIES.items()]

# Nothing golive pays comes near a billion units; a longer number is a slip of the keyboard.
MAXIMUM_CENTS = 100_000_000_000

_AMOUNT = re.compile(r"(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<fraction>\d+))?")


class AmountError(ValueError):
    """Text that is not an amount, with a sentence saying what is wrong."""


def parse_cents(text: str) -> int:
    """ "5000.00", "5,000", "5000.5" → cents (500000, 500000, 500050).

    Units with at most two decimals; a comma only as a thousands separator. Raises
    AmountError for anything else: three decimals, a negative or malformed number, a
    figure too large to be meant.
    """
    cleaned = text.strip().replace(" ", "")
    if not cleaned:
        raise AmountError("Enter an amount, e.g. 5000.00.")
    if cleaned.startswith("-"):
        raise AmountError("An amount cannot be negative.")
    match = _AMOUNT.fullmatch(cleaned)
    if match is None:
        raise AmountError(
            f"{text.strip()!r} is not an amount: write units with a dot for the decimals, "
            "e.g. 5000.00 (a comma may separate thousands: 5,000.00)."
        )
    fraction = match["fraction"] or ""
    if len(fraction) > 2:
        raise AmountError(
            f"{text.strip()} has {len(fraction)} decimals: amounts are in units with at most "
            "two decimals (cents), e.g. 5000.00."
        )
    cents = int(match["whole"].replace(",", "")) * 100 + int(fraction.ljust(2, "0"))
    if cents > MAXIMUM_CENTS:
        raise AmountError(f"{text.strip()} is too large to be an amount golive pays.")
    return cents


def parse_basis_points(text: str) -> int:
    """A percentage with at most two decimals ("15", "12.5") → basis points (1500, 1250).

    Raises AmountError for more decimals, a negative number or more than 100 %."""
    cleaned = text.strip().removesuffix("%").strip()
    if not re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        raise AmountError(f"{text.strip()!r} is not a percentage, e.g. 15 or 12.5.")
    whole, _, fraction = cleaned.partition(".")
    if len(fraction) > 2:
        raise AmountError("A percentage has at most two decimals, e.g. 12.25.")
    points = int(whole) * 100 + int(fraction.ljust(2, "0") or 0)
    if points > 10_000:
        raise AmountError("A share cannot be more than 100 %.")
    return points


def units(cents: int) -> str:
    """Cents as units for a form field: 500000 → "5000.00"."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{sign}{whole}.{rest:02}"


def percent(basis_points: int) -> str:
    """1500 → "15", 1250 → "12.5", 1234 → "12.34"."""
    whole, rest = divmod(basis_points, 100)
    return f"{whole}.{rest:02}".rstrip("0").rstrip(".") if rest else str(whole)


class Money:
    """Formats cents in one currency: `$1,234.56` for USD, `1,234.56 EUR` otherwise."""

    def __init__(self, currency: str) -> None:
        self.currency = currency

    def __call__(self, cents: int) -> str:
        sign = "-" if cents < 0 else ""
        whole, rest = divmod(abs(cents), 100)
        return self._wrap(sign, f"{whole:,}.{rest:02}")

    def signed(self, cents: int) -> str:
        """With a sign either way, for corrections: +$250.00, -$100.00."""
        return self(cents) if cents < 0 else f"+{self(cents)}"

    def exact(self, cents: Fraction) -> str:
        """An unrounded amount to four decimals of the unit (display only)."""
        if cents.denominator == 1:
            return self(cents.numerator)
        with localcontext() as context:
            context.prec = 40
            exact = Decimal(abs(cents).numerator) / Decimal(abs(cents).denominator) / 100
            amount = exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
        return self._wrap("-" if cents < 0 else "", f"{amount:,}")

    def _wrap(self, sign: str, number: str) -> str:
        return f"{sign}${number}" if self.currency == "USD" else f"{sign}{number} {self.currency}"


def format_money(cents: int, currency: str) -> str:
    return Money(currency)(cents)


def parse_thresholds(text: str) -> dict[str, int]:
    """ "USD 250.00, EUR 200" → {"USD": 25000, "EUR": 20000}: the setting that lets one
    admin approve and pay small payouts alone. Empty → {} (always two admins).

    Raises AmountError for an unknown currency or a bad amount."""
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        code, _, amount = item.partition(" ")
        if code not in CURRENCIES:
            raise AmountError(f"{code!r} is not a currency golive pays in")
        limits[code] = parse_cents(amount)
    return limits
