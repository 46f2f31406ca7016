"""Publishing plans: cost with fee and VAT from the settings, the hourly rate, the minimum
wage refusal, filters, and what is refused before anything is sent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from annotate.prolific import fees
from annotate.prolific.publish import PublishError, PublishOptions, parse_filter, publish_plan
from tests.annotate.factories import make_model_row, make_set, make_study

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _base(settings):
    settings.PUBLIC_BASE_URL = "https://study.example.org"
    settings.PROLIFIC_API_URL = "https://api.prolific.com/api/v1/"


def study(n_assignments: int = 4):
    return make_study([make_set(20, model=make_model_row())], n_assignments=n_assignments, size=5)


def test_cost_and_hourly_rate_follow_the_settings(settings):
    settings.PROLIFIC_FEE_RATE = "0.333"
    settings.PROLIFIC_VAT_RATE = "0.20"
    plan = publish_plan(study=study(), options=PublishOptions(reward=Decimal("1.20")))
    assert plan.places == 4
    assert plan.cost.paid == Decimal("4.80")
    assert plan.cost.fee == Decimal("1.60")  # 33.3% of 4.80, half up
    assert plan.cost.vat == Decimal("0.32")
    assert plan.cost.total == Decimal("6.72")
    assert plan.hourly == Decimal("18.00")  # £1.20 for 4 minutes
    assert any("£18.00/hour" in line for line in plan.lines())
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in plan.url and "SESSION_ID=" in plan.url


def test_a_reward_under_the_minimum_hourly_rate_is_refused(settings):
    settings.PROLIFIC_MIN_HOURLY = {"GBP": "6.00"}
    with pytest.raises(PublishError, match=r"under the minimum £6\.00/hour.*at least £2\.00"):
        publish_plan(
            study=study(),
            options=PublishOptions(reward=Decimal("1.00"), estimated_minutes=20, max_minutes=40),
        )


def test_the_minimum_is_a_setting(settings):
    settings.PROLIFIC_MIN_HOURLY = {"GBP": "2.00"}
    plan = publish_plan(
        study=study(),
        options=PublishOptions(reward=Decimal("1.00"), estimated_minutes=20, max_minutes=40),
    )
    assert plan.hourly == Decimal("3.00")


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "approval_rate>=95",
            {"filter_id": "approval_rate", "selected_range": {"lower": 95, "upper": 100}},
        ),
        ("age<=40", {"filter_id": "age", "selected_range": {"upper": 40}}),
        (
            "fluent-languages=English,French",
            {"filter_id": "fluent-languages", "selected_values": ["English", "French"]},
        ),
    ],
)
def test_filters(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text", ["approval_rate>95", "approval_rate>=lots", "", "=5"])
def test_bad_filters_are_refused(text):
    with pytest.raises(PublishError):
        parse_filter(text)


def test_a_max_time_longer_than_the_lease_is_said():
    s = study()
    plan = publish_plan(
        study=s, options=PublishOptions(reward=Decimal("5"), max_minutes=s.lease_seconds // 60 + 1)
    )
    assert any("lease lapses" in w for w in plan.warnings)


def test_live_needs_a_public_https_address(settings):
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    with pytest.raises(PublishError, match="public https"):
        publish_plan(study=study(), options=PublishOptions(reward=Decimal("1.20")))


def test_money_parsing_and_minor_units():
    assert fees.to_minor(fees.parse_money("1.20")) == 120
    assert fees.from_minor(5) == Decimal("0.05")
    for bad in ("1.234", "-1", "0", "abc"):
        with pytest.raises(ValueError):
            fees.parse_money(bad)
