"""``manage.py plan_study``, the console's plan beside "Create study", provider cost estimates."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate.mturk import fees as mturk_fees
from annotate.prolific import fees as prolific_fees
from annotate.providers.registry import get, providers
from tests.annotate.factories import make_set

pytestmark = pytest.mark.django_db


def plan_json(*args: str) -> dict:
    out = __import__("io").StringIO()
    call_command("plan_study", *args, "--json", "--simulations", "50", stdout=out)
    return json.loads(out.getvalue())


def test_table_4_2_preset_prints_participants_and_cost_per_provider():
    plan = plan_json("--preset", "table4.2", "--minutes", "4", "--reward", "1.00")
    pairs = {(p["a"], p["b"]): p["power"] for p in plan["power"]}
    assert set(pairs) == {
        ("adversary critic", "margin maximization"),
        ("adversary critic", "VAT"),
        ("adversary critic", "AT"),
    }
    assert min(pairs.values()) >= 0.8
    n = plan["participants"]
    assert 2 <= n < plan["textbook_participants"] * 2
    costs = {c["provider"]: c for c in plan["costs"]}
    assert {p.label for p in providers()} == set(costs)
    prolific = costs["Prolific"]
    expected = prolific_fees.cost(Decimal("1.00"), n, "GBP")
    assert Decimal(prolific["total"]) == expected.total
    mturk = costs["Amazon Mechanical Turk"]
    full, rest = divmod(n, 9)
    hits = [(9, Decimal("1.00"))] * full + ([(rest, Decimal("1.00"))] if rest else [])
    assert Decimal(mturk["total"]) == mturk_fees.rewards_cost(hits).total
    assert any("2026-09-30" in note for note in mturk["notes"])
    assert plan["hours"] == pytest.approx(n / 30 + 4 / 60)


def test_margin_is_the_hard_comparison():
    """The critic against margin (92 vs 82%) needs more people than against VAT (92 vs 27%)."""
    hard = plan_json("--rates", "critic=92.29,margin=81.77", "--icc", "0.1")
    easy = plan_json("--rates", "critic=92.29,VAT=26.8", "--icc", "0.1")
    assert hard["participants"] > 3 * easy["participants"]


def test_sets_with_a_smallest_difference_and_a_pilot_of_its_own_kind():
    make_set(4, name="adv-a")
    make_set(4, name="adv-b", first_source=4)
    plan = plan_json("--sets", "adv-a,adv-b", "--difference", "20", "--icc", "0.05")
    assert plan["rates"] == {"adv-a": 50.0, "adv-b": 70.0}


def test_prolific_notes_a_reward_under_its_minimum_hourly_rate():
    low = get("prolific").estimate_cost(participants=10, reward=Decimal("0.10"), minutes=10)
    assert low.notes and "minimum" in low.notes[0]
    fair = get("prolific").estimate_cost(participants=10, reward=Decimal("2.00"), minutes=10)
    assert fair.notes == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sets", "nope", "--difference", "10"], "no stimulus set named nope"),
        (["--rates", "a=50"], "at least two"),
        (["--preset", "table4.2", "--rates", "a=50,b=60"], "exactly one"),
        (["--rates", "a=50,b=60", "--reference", "c"], "no condition 'c'"),
        (["--rates", "a=50,b=60", "--pilot", "missing"], "no study named 'missing'"),
    ],
)
def test_bad_requests_end_in_one_line(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("plan_study", *args, "--simulations", "50")


def test_bad_flag_values_are_refused_by_the_parser(capsys):
    for args in (["--rates", "a=fifty"], ["--alpha", "2"], ["--reward", "-1"]):
        with pytest.raises((CommandError, SystemExit)):
            call_command("plan_study", *args)


def test_console_shows_the_plan_beside_create(client):
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    make_set(4, name="adv-a")
    make_set(4, name="adv-b", first_source=4)
    url = reverse("console:study-new")
    page = client.get(url)
    assert b"Plan the study" in page.content and b'name="plan"' in page.content
    posted = {
        "sets": ["adv-a", "adv-b"],
        "size": "25",
        "attention_checks": "2",
        "raters": "1",
        "plan-difference": "30",
        "plan-base_rate": "50",
        "plan-alpha": "0.05",
        "plan-power": "0.8",
        "plan-icc": "0.1",
        "plan-hourly": "9.00",
        "plan-simulations": "50",
        "plan": "Plan",
    }
    response = client.post(url, posted)
    assert response.status_code == 200
    text = response.content.decode()
    assert "participants" in text and "Prolific" in text and "23 answers per participant" in text
    assert 'value="adv-a" checked' in text or "checked" in text  # the ticked sets stay ticked
    refused = client.post(url, {**posted, "plan-difference": ""})
    assert "smallest difference" in refused.content.decode()


def test_a_pilot_gives_the_icc_minutes_and_arrivals():
    from tests.annotate.console.test_console import answered_study

    answered_study()  # study "s1": four workers, one failing the attention check
    plan = plan_json("--rates", "a=40,b=70", "--pilot", "s1")
    assert 0 <= plan["icc"] < 1
    assert plan["minutes"] >= 0 and plan["arrivals_per_hour"] > 0
    with pytest.raises(CommandError):
        call_command("plan_study", "--rates", "a=40,b=70", "--pilot", "s1", "--icc", "0.1")
