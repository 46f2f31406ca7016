"""MTurk's commission, in Decimal: 20% of a reward or bonus, 40% for HITs of 10+ assignments.

The minimum commission is $0.01 per assignment or bonus. Everything rounds to cents (half up).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
BASE_RATE = Decimal("0.20")
LARGE_HIT_RATE = Decimal("0.40")  # 20% + 20% for HITs with 10 or more assignments
LARGE_HIT = 10
MIN_FEE = CENT
MONEY = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")  # MTurk's CurrencyAmount, e.g. "0.50"


def parse_money(text: str) -> Decimal:
    """Dollars as MTurk accepts them (``0.50``, ``1``): at least one cent, at most 2 decimals."""
    text = str(text).strip().lstrip("$")
    if not MONEY.match(text):
        raise ValueError(
            f"{text!r} is not an amount in dollars with at most 2 decimals (e.g. 0.50)"
        )
    amount = Decimal(text).quantize(CENT)
    if amount < CENT:
        raise ValueError("the amount must be at least $0.01")
    return amount


def money(amount: Decimal) -> str:
    """The amount as MTurk's CurrencyAmount string: ``Decimal('0.5')`` → ``'0.50'``."""
    return f"{Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP):.2f}"


def fee_rate(assignments_per_hit: int) -> Decimal:
    """20% below 10 assignments per HIT, 40% from 10 on."""
    return LARGE_HIT_RATE if assignments_per_hit >= LARGE_HIT else BASE_RATE


def fee(amount: Decimal, *, assignments_per_hit: int) -> Decimal:
    """MTurk's commission on one assignment's reward (never below one cent)."""
    raw = (Decimal(amount) * fee_rate(assignments_per_hit)).quantize(CENT, rounding=ROUND_HALF_UP)
    return max(MIN_FEE, raw)


def bonus_fee(amount: Decimal) -> Decimal:
    """MTurk's commission on one bonus: 20%, at least one cent."""
    return max(MIN_FEE, (Decimal(amount) * BASE_RATE).quantize(CENT, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Cost:
    """What a batch of payments costs: rewards (or bonuses) to workers, fees to MTurk."""

    assignments: int
    paid: Decimal
    fees: Decimal

    @property
    def total(self) -> Decimal:
        return self.paid + self.fees

    def describe(self) -> str:
        return (
            f"{self.assignments} assignment{'s' if self.assignments != 1 else ''}: "
            f"${money(self.paid)} to workers + ${money(self.fees)} MTurk fees "
            f"= ${money(self.total)}"
        )


def rewards_cost(hit_sizes: Iterable[tuple[int, Decimal]]) -> Cost:
    """Cost of ``(assignments, reward)`` per HIT, each HIT's fee rate from its own size."""
    count, paid, fees_ = 0, Decimal("0.00"), Decimal("0.00")
    for size, reward in hit_sizes:
        count += size
        paid += size * Decimal(reward)
        fees_ += size * fee(reward, assignments_per_hit=size)
    return Cost(count, paid, fees_)


def approvals_cost(items: Iterable[tuple[Decimal, int]]) -> Cost:
    """Cost of approving assignments given as ``(reward, their HIT's max assignments)``."""
    count, paid, fees_ = 0, Decimal("0.00"), Decimal("0.00")
    for reward, hit_size in items:
        count += 1
        paid += Decimal(reward)
        fees_ += fee(reward, assignments_per_hit=hit_size)
    return Cost(count, paid, fees_)


def bonuses_cost(count: int, amount: Decimal) -> Cost:
    """Cost of ``count`` bonuses of ``amount`` each."""
    return Cost(count, count * Decimal(amount), count * bonus_fee(amount))
