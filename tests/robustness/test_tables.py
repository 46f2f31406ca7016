"""The thesis's tables as data: presets' epochs and schedules per cell, and the claims' verdicts."""

from __future__ import annotations

import pytest

from robustness import claims, tables
from robustness.training import SCHEDULES

RESEARCH = tables.PRESETS["research"]


def row(table: tables.Table, label: str) -> tables.Row:
    return next(r for r in table.rows if r.label == label)


def test_research_epochs_come_per_table_network_and_cell():
    t31, t41, t51 = (tables.TABLES[n] for n in ("table3.1", "table4.1", "table5.1"))
    assert tables.preset_epochs(RESEARCH, t31, "lenet5", row(t31, "our l2")) == 5
    assert tables.preset_epochs(RESEARCH, t31, "mlp1000", row(t31, "baseline")) == 10
    assert tables.preset_epochs(RESEARCH, t41, "lenet5", row(t41, "critic")) == 5
    assert tables.preset_epochs(RESEARCH, t51, "madry_cnn", row(t51, "plain")) == 6
    assert tables.preset_epochs(RESEARCH, t51, "madry_cnn", row(t51, "linf-AT")) == 2
    # Presets with one number, or none (the table's own), keep working.
    assert tables.preset_epochs(tables.PRESETS["smoke"], t41, "lenet5", row(t41, "none")) == 2
    assert tables.preset_epochs(tables.PRESETS["full"], t51, "madry_cnn", row(t51, "plain")) == 83


@pytest.mark.parametrize(
    ("epochs", "expected"), [(100, (40, 80)), (10, (4, 8)), (5, (2, 4)), (2, (1,)), (1, ())]
)
def test_milestones_scale_with_a_shorter_run_and_stay_inside_it(epochs, expected):
    t41 = tables.TABLES["table4.1"]
    assert tables.scaled_milestones(SCHEDULES["ch4"]["milestones"], epochs, t41) == expected


def report(values: dict[str, dict[str, dict[str, float | None]]]) -> dict:
    """An aggregate shaped like reproduction.aggregate's, from {arch: {row: {column: v}}}."""
    return {
        "networks": {
            arch: {
                label: {"values": {col: {"mean": v} for col, v in columns.items()}}
                for label, columns in rows.items()
            }
            for arch, rows in values.items()
        }
    }


def table31(margin_rho: float) -> dict:
    rows = {
        "baseline": (1.0, 90.0, 1.5),
        "dropout": (1.0, 80.0, 1.6),
        "AT": (1.0, 10.0, 1.8),
        "VAT": (1.0, 30.0, 1.9),
        "our l1": (1.0, 40.0, margin_rho),
        "our l2": (1.0, 40.0, margin_rho - 0.1),
    }
    columns = ("error %", "FGSM err %", "rho x10")
    one = {label: dict(zip(columns, v, strict=True)) for label, v in rows.items()}
    return report({"mlp1000": one, "lenet5": one})


def test_table_3_1_claims_are_judged_on_the_numbers():
    good = {v["claim"]: v for v in claims.verdicts("table3.1", table31(2.2))}
    assert {v["verdict"] for v in good.values()} == {claims.REPRODUCED}
    assert "our l1 2.2 > VAT 1.9" in good["margin-largest-rho"]["evidence"]
    bad = {v["claim"]: v["verdict"] for v in claims.verdicts("table3.1", table31(1.85))}
    assert bad["margin-largest-rho"] == claims.NOT_REPRODUCED
    assert bad["at-vat-between"] == claims.NOT_REPRODUCED  # VAT 1.9 is above margin's 1.85
    assert bad["at-lowest-fgsm"] == claims.REPRODUCED


def test_a_claim_with_missing_cells_is_pending():
    partial = table31(2.2)
    del partial["networks"]["lenet5"]["VAT"]
    verdicts = {v["claim"]: v["verdict"] for v in claims.verdicts("table3.1", partial)}
    assert verdicts["at-vat-between"] == claims.PENDING
    assert verdicts["margin-largest-rho"] == claims.PENDING
    none_yet = {v["verdict"] for v in claims.verdicts("table4.1", {"networks": {}})}
    assert none_yet == {claims.PENDING}


def test_table_5_1_claims_compare_attacks_per_row():
    rows = {
        "plain": {"linf DF": 0.08, "linf PDPGD": 0.07, "l2 DF": 1.2, "l2 PDGD": 1.1},
        "linf-AT": {"linf DF": 0.5, "linf PDPGD": 0.3, "l2 DF": 4.0, "l2 PDGD": 4.5},
        "l2-AT": {"linf DF": 0.2, "linf PDPGD": 0.15, "l2 DF": 3.0, "l2 PDGD": 2.0},
    }
    verdicts = {v["claim"]: v for v in claims.verdicts("table5.1", report({"madry_cnn": rows}))}
    assert verdicts["pdpgd-beats-deepfool-linf"]["verdict"] == claims.REPRODUCED
    assert verdicts["pdgd-beats-deepfool-l2"]["verdict"] == claims.NOT_REPRODUCED
    assert "linf-AT: l2 PDGD 4.5 >= l2 DF 4" in verdicts["pdgd-beats-deepfool-l2"]["evidence"]


def test_the_premise_is_checked_too_plain_models_as_accurate_as_the_thesis():
    rows = table31(2.2)
    verdicts = {v["claim"]: v for v in claims.verdicts("table3.1", rows)}
    assert verdicts["plain-error"]["verdict"] == claims.REPRODUCED  # 1.0 <= 1.0 and <= 1.6
    rows["networks"]["mlp1000"]["baseline"]["values"]["error %"]["mean"] = 2.0
    verdicts = {v["claim"]: v for v in claims.verdicts("table3.1", rows)}
    assert verdicts["plain-error"]["verdict"] == claims.NOT_REPRODUCED
    assert "mlp1000 baseline: 2 > 1.6" in verdicts["plain-error"]["evidence"]


def test_a_contradiction_is_final_even_with_cells_missing():
    partial = table31(1.85)  # margin below VAT: the claim fails wherever it is measured
    del partial["networks"]["lenet5"]
    verdicts = {v["claim"]: v for v in claims.verdicts("table3.1", partial)}
    assert verdicts["margin-largest-rho"]["verdict"] == claims.NOT_REPRODUCED
    assert "lenet5: cells missing" in verdicts["margin-largest-rho"]["evidence"]
    assert verdicts["at-lowest-fgsm"]["verdict"] == claims.PENDING
    assert "mlp1000: AT 10 < VAT 30" in verdicts["at-lowest-fgsm"]["evidence"]
