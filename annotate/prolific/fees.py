"""What a Prolific study costs and what it pays per hour, in Decimal, from the settings.

Prolific charges a service fee on every reward and bonus (``PROLIFIC_FEE_RATE``, 33.3% for
academic workspaces at the time of writing; corporate ones pay more) and, where it applies,
VAT on that fee (``PROLIFIC_VAT_RATE``, 0 unless set: 20% for UK workspaces). It refuses
rewards below a minimum hourly rate (``PROLIFIC_MIN_HOURLY``, by currency). Rates change: they
are settings, never constants in code. Amounts go to Prolific in the currency's minor unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from django.conf import settings

CENT = Decimal("0.01")
MONEY = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")
SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€"}
DEFAULT_FEE_RATE = "0.333"
DEFAULT_MIN_HOURLY = {"GBP": "6.00", "USD": "8.00"}  # Prolific's published minimum per hour


def parse_money(text: str) -> Decimal:
    """A positive amount in major units with at most two decimals (``1.20``, ``£1.20``)."""
    text = str(text).strip().lstrip("£$€")
    if not MONEY.match(text) or Decimal(text) < CENT:
        raise ValueError(f"{text!r} is not an amount such as 1.20 (at least 0.01, two decimals)")
    return Decimal(text).quantize(CENT)


def to_minor(amount: Decimal) -> int:
    """Major units → the minor unit Prolific takes (pence, cents)."""
    return int((Decimal(amount) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_minor(amount: int) -> Decimal:
    return (Decimal(amount) / 100).quantize(CENT)


def show(amount: Decimal, currency: str) -> str:
    """``£1.20``; an unknown currency as ``1.20 CHF``."""
    text = f"{Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP):.2f}"
    symbol = SYMBOLS.get(currency.upper())
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def fee_rate() -> Decimal:
    return Decimal(str(getattr(settings, "PROLIFIC_FEE_RATE", DEFAULT_FEE_RATE)))


def vat_rate() -> Decimal:
    return Decimal(str(getattr(settings, "PROLIFIC_VAT_RATE", "0")))


def min_hourly(currency: str) -> Decimal | None:
    """The lowest hourly rate Prolific accepts in ``currency`` (None: no minimum configured)."""
    table = getattr(settings, "PROLIFIC_MIN_HOURLY", None) or DEFAULT_MIN_HOURLY
    value = table.get(currency.upper())
    return Decimal(str(value)) if value is not None else None


def hourly(reward: Decimal, minutes: int) -> Decimal:
    """The hourly rate a reward implies for the estimated time."""
    return (Decimal(reward) * 60 / Decimal(minutes)).quantize(CENT, rounding=ROUND_HALF_UP)


def lowest_reward(currency: str, minutes: int) -> Decimal | None:
    """The smallest reward that meets the minimum hourly rate for ``minutes``."""
    rate = min_hourly(currency)
    if rate is None:
        return None
    return (rate * Decimal(minutes) / 60).quantize(CENT, rounding=ROUND_CEILING)


@dataclass(frozen=True)
class Cost:
    """Payments to participants, Prolific's fee on them and VAT on the fee."""

    currency: str
    paid: Decimal
    fee: Decimal
    vat: Decimal
    count: int

    @property
    def total(self) -> Decimal:
        return self.paid + self.fee + self.vat

    def describe(self) -> str:
        c = self.currency
        return (
            f"{show(self.total, c)} = {self.count} × payments {show(self.paid, c)} + "
            f"Prolific's fee {show(self.fee, c)} ({fee_rate() * 100:.1f}%)"
            + (f" + VAT {show(self.vat, c)}" if self.vat else "")
        )


def cost(amount: Decimal, count: int, currency: str) -> Cost:
    """``count`` payments of ``amount`` with the configured fee and VAT."""
    paid = (Decimal(amount) * count).quantize(CENT)
    fee = (paid * fee_rate()).quantize(CENT, rounding=ROUND_HALF_UP)
    vat = (fee * vat_rate()).quantize(CENT, rounding=ROUND_HALF_UP)
    return Cost(currency=currency.upper(), paid=paid, fee=fee, vat=vat, count=count)
