"""The staff console: who gets in, numbers equal to ``study_results``, exports, charts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from annotate.analysis import plots as plots
from annotate.analysis.responses import OUTCOMES
from annotate.analysis.results import study_results
from annotate.analysis.selectors import RESPONSE_FIELDS
from annotate.console.views import fmt_pct, metrics_rows
from annotate.models import Lease, StimulusSet, Study
from annotate.work.answers import lease_submit
from annotate.work.leases import lease_acquire
from tests.annotate.factories import make_model_row, make_set, make_study

pytestmark = pytest.mark.django_db


def submit(study: Study, worker: str, labels_for) -> Lease:
    lease = lease_acquire(study=study, worker_id=worker)
    items = lease.assignment.items.select_related("stimulus")
    answers = [{"item": i.key, "label": labels_for(i), "ms": 800} for i in items]
    lease_submit(lease=lease, answers=answers)
    return lease


def answered_study(**fields) -> Study:
    """Two conditions, attention checks, four workers (one fails the check)."""
    model = make_model_row(name="lenet-plain")
    sets = [make_set(8, name="adv-a", model=model), make_set(8, name="adv-b", first_source=8)]
    checks = make_set(4, kind=StimulusSet.Kind.ATTENTION, model=model, first_source=100)
    study = make_study(sets, n_assignments=4, size=5, attention=checks, name="s1", **fields)

    def label(w: int):
        def pick(item) -> str:
            s = item.stimulus
            if item.is_attention:
                return str((s.original_label + (1 if w == 3 else 0)) % 10)
            return [str(s.target), str(s.original_label), "?"][(item.position + w) % 3]

        return pick

    for w in range(4):
        submit(study, f"worker-{w}", label(w))
    return study


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    return user


def console_urls(study: Study) -> list[str]:
    stimulus = study.conditions.first().set.stimuli.first()
    return [
        reverse("console:home"),
        reverse("console:study", args=[study.name]),
        reverse("console:study-export", args=[study.name, "csv"]),
        reverse("console:study-export", args=[study.name, "json"]),
        reverse("console:stimulus-image", args=[stimulus.pk, "shown"]),
        reverse("console:model", args=["lenet-plain"]),
    ]


def test_anonymous_and_lease_tokens_are_sent_to_the_login(client):
    study = answered_study()
    lease = study.leases.first()
    for url in console_urls(study):
        for response in (
            client.get(url),
            client.get(url, {"token": lease.key}),
            client.get(url, HTTP_AUTHORIZATION=f"Bearer {lease.key}"),
        ):
            assert response.status_code == 302, url
            assert response["Location"].startswith(reverse("admin:login")), url
    assert client.post(reverse("console:study-close", args=[study.name])).status_code == 302
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN


def test_non_staff_users_are_refused(client):
    study = answered_study()
    user = get_user_model().objects.create_user("someone", password="pw")
    client.force_login(user)
    for url in console_urls(study):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_staff_see_every_page(client, staff):
    study = answered_study()
    for url in console_urls(study):
        assert client.get(url).status_code == 200, url


def test_study_page_shows_the_numbers_of_study_results(client, staff):
    study = answered_study()
    html = client.get(reverse("console:study", args=[study.name])).content.decode()
    result = study_results(study=study)
    assert result["exclusions"]["workers_excluded"] == 1  # worker-3 failed the check
    assert result["exclusion_rule"] in html
    assert len(result["conditions"]) == 2
    for row in result["conditions"]:
        start = html.index(f"<td>{row['name']}</td>")
        cells = html[start : html.index("</tr>", start)]
        for name in OUTCOMES:
            r = row[name]
            assert f'<span class="pct">{fmt_pct(r["pct"])}</span>' in cells
            assert f"W [{fmt_pct(r['wilson'][0])}, {fmt_pct(r['wilson'][1])}]" in cells
            assert f"B [{fmt_pct(r['bootstrap'][0])}, {fmt_pct(r['bootstrap'][1])}]" in cells
        assert f">{row['answers']}<" in cells
    # The worker list: one row per worker, the excluded one marked.
    for worker in ("worker-0", "worker-1", "worker-2", "worker-3"):
        assert f"<td>{worker}</td>" in html
    assert "yes (failed_checks)" in html
    assert "<svg" in html  # the inline chart
    assert "SIMULATED" not in html


def test_simulated_study_is_badged_on_home_and_study_page(client, staff):
    study = answered_study(simulated=True)
    plain = make_study(name="plain-study")
    home = client.get(reverse("console:home")).content.decode()
    assert home.count("SIMULATED") == 1 and plain.name in home
    page = client.get(reverse("console:study", args=[study.name])).content.decode()
    assert "SIMULATED" in page


def test_home_progress_counts(client, staff):
    answered_study()  # worker-3 fails the attention check: their assignment counts as excluded
    response = client.get(reverse("console:home"))
    (row,) = response.context["rows"]
    assert row["assignments"] == 4 and row["leased"] == 0 and row["open"] == 0
    assert row["submitted"] == 3 and row["excluded"] == 1 and row["workers_excluded"] == 1
    assert row["answers"] == 4 * 5
    assert row["pct"] == {"submitted": 75.0, "excluded": 25.0, "leased": 0.0, "open": 0.0}
    other = make_study(name="second", n_assignments=4)
    lease_acquire(study=other, worker_id="w")
    rows = {r["study"].name: r for r in client.get(reverse("console:home")).context["rows"]}
    assert rows["second"]["leased"] == 1 and rows["second"]["open"] == 3
    assert rows["second"]["pct"]["leased"] == 25.0 and rows["second"]["pct"]["submitted"] == 0


def test_overdue_lease_counts_as_expired_in_console_and_api_alike(client, staff):
    study = make_study(name="late", n_assignments=3)
    lease = lease_acquire(study=study, worker_id="w")
    Lease.objects.filter(pk=lease.pk).update(expires=timezone.now() - dt.timedelta(seconds=1))
    (row,) = client.get(reverse("console:home")).context["rows"]
    assert (row["leased"], row["expired"], row["open"]) == (0, 1, 3)
    api = client.get(reverse("staff-api:study-detail", args=[study.name])).json()["progress"]
    assert (api["leased"], api["expired"], api["open"]) == (0, 1, 3)


def test_live_progress_json_matches_the_home_page(client, staff):
    study = answered_study()
    data = client.get(reverse("console:progress")).json()
    (row,) = client.get(reverse("console:home")).context["rows"]
    live = data["studies"][study.name]
    for key in ("assignments", "leased", "submitted", "excluded", "open", "answers", "pct"):
        assert live[key] == row[key]
    assert data["sets"]["adv-a"]["kind"] == "adversarial"


def test_csv_and_json_exports_parse_and_hold_every_answer(client, staff):
    study = answered_study()
    response = client.get(reverse("console:study-export", args=[study.name, "csv"]))
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(RESPONSE_FIELDS)
    assert len(rows) == 4 * 5 and {r["worker"] for r in rows} == {f"worker-{w}" for w in range(4)}
    data = json.loads(
        client.get(reverse("console:study-export", args=[study.name, "json"])).content
    )
    assert len(data["responses"]) == 20 and data["study"] == study.name
    assert client.get(f"/console/studies/{study.name}/responses.xml").status_code == 404


def test_open_and_close_buttons_need_post_and_change_status(client, staff):
    study = answered_study()
    close = reverse("console:study-close", args=[study.name])
    assert client.get(close).status_code == 405
    response = client.post(close, follow=True)
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED and b"now closed" in response.content
    response = client.post(close, follow=True)  # closing twice: a message, no change
    assert b"cannot make it closed" in response.content
    client.post(reverse("console:study-open", args=[study.name]))
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN


def test_csrf_is_enforced_on_the_buttons(staff):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    study = answered_study()
    assert strict.post(reverse("console:study-close", args=[study.name])).status_code == 403


def test_stimulus_image_is_the_stored_png(client, staff):
    study = answered_study()
    stimulus = study.conditions.first().set.stimuli.first()
    response = client.get(reverse("console:stimulus-image", args=[stimulus.pk, "shown"]))
    body = b"".join(response.streaming_content)
    assert response["Content-Type"] == "image/png" and body == stimulus.image.read()
    missing = reverse("console:stimulus-image", args=[stimulus.pk, "clean"])  # factory: none
    assert client.get(missing).status_code == 404


def test_model_page_plots_history_and_lists_metrics(client, staff):
    model = make_model_row(name="curvy")
    model.history = [
        {"epoch": e, "train_loss": 1.0 / e, "train_error": 0.1 / e, "valid_error": 0.2 / e}
        for e in (1, 2, 3)
    ]
    model.metrics = {"test_error": 0.0123, "robustness": {"fgsm": {"error": 0.456}}}
    model.save()
    html = client.get(reverse("console:model", args=[model.name])).content.decode()
    assert "<svg" in html and "robustness.fgsm.error" in html and "0.456" in html


def test_plots_render_non_empty_svg():
    row = {
        "name": "adv",
        **{
            name: {"pct": 25.0, "wilson": [10.0, 45.0], "bootstrap": [12.0, 40.0]}
            for name in OUTCOMES
        },
    }
    empty = {"name": "none", **{n: {"pct": None, "wilson": [None, None]} for n in OUTCOMES}}
    svg = plots.rates_chart_svg(conditions=[row, empty])
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "adv" in svg
    assert len(svg) > 2000
    curves = plots.history_chart_svg(history=[{"epoch": 1, "train_loss": 0.5}])
    assert curves.startswith("<svg") and "training loss" in curves


def test_metrics_rows_flatten_nested_dicts():
    assert metrics_rows({"a": 1, "b": {"c": 2, "d": [1, 2]}}) == [
        ("a", 1),
        ("b.c", 2),
        ("b.d", "[1, 2]"),
    ]
