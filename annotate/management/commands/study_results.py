"""``manage.py study_results``: thesis Table 4.2 for a study, with intervals and exclusions."""

from __future__ import annotations

import csv
import json
from typing import Any

from django.core.management.base import CommandParser

from annotate.analysis.responses import OUTCOMES
from annotate.analysis.results import study_results
from annotate.studies.selectors import study_get
from robustness.registry.cli import BlindspotCommand, entity_option, positive_int

HEADER = ["condition", "kind", "model", "defense", "answers", "workers", "images"]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """One condition row as flat columns: the rate, Wilson and bootstrap bounds per outcome."""
    flat = {key: row.get(key if key != "condition" else "name") for key in HEADER}
    for name in OUTCOMES:
        r = row[name]
        flat |= {
            f"{name}_pct": r["pct"],
            f"{name}_wilson_low": r["wilson"][0],
            f"{name}_wilson_high": r["wilson"][1],
            f"{name}_boot_low": r["bootstrap"][0],
            f"{name}_boot_high": r["bootstrap"][1],
        }
    return flat


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:5.1f}"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _rate(row: dict[str, Any], name: str) -> str:
    """'rate [low,high]' of one outcome, with its Wilson interval."""
    low, high = row[f"{name}_wilson_low"], row[f"{name}_wilson_high"]
    return f"{_pct(row[f'{name}_pct'])} [{_pct(low)},{_pct(high)}]"


class Command(BlindspotCommand):
    help = "Print a study's Table 4.2: % change / % no change per condition, with intervals."

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "study", required=True)
        parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
        parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
        parser.add_argument(
            "--bootstrap", type=positive_int, default=1000, help="bootstrap replicates"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        study = study_get(name=opts["study"])
        result = study_results(study=study, seed=opts["seed"], bootstrap=opts["bootstrap"])
        rows = [_flat(row) for row in result["conditions"]]
        if opts["format"] == "json":
            self.stdout.write(json.dumps(result, indent=2, allow_nan=False))
        elif opts["format"] == "csv":
            writer = csv.DictWriter(
                self.stdout, fieldnames=list(rows[0]) if rows else HEADER, lineterminator="\n"
            )
            writer.writeheader()
            writer.writerows(rows)
        else:
            self._table(result, rows)

    def _table(self, result: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        out = self.stdout.write
        if result["simulated"]:
            out("SIMULATED: this study holds simulated answers")
        ex = result["exclusions"]
        out(
            f"study {result['study']} ({result['status']}); exclusion rule: "
            f"{result['exclusion_rule']}; excluded {ex['workers_excluded']} workers, "
            f"{ex['answers_excluded']} answers"
        )
        out(
            f"{'condition':<28} {'defense':<8} {'n':>5} {'% change [95% CI]':>22} "
            f"{'% no change [95% CI]':>22} {'% other':>8} {'% ?':>6}"
        )
        for r in rows:
            change = _rate(r, "change")
            same = _rate(r, "no_change")
            out(
                f"{str(r['condition']):<28} {str(r['defense']):<8} {r['answers']:>5} "
                f"{change:>22} {same:>22} {_pct(r['other_pct']):>8} {_pct(r['unsure_pct']):>6}"
            )
        pairs = result["comparisons"]["pairs"]
        names = {
            row["condition"]: row.get("name", row["condition"]) for row in result["conditions"]
        }
        if pairs:
            out(f"% change compared ({result['comparisons']['correction']}):")
            for p in pairs:
                low, high = p["difference_interval"]
                out(
                    f"  {names.get(p['a'], p['a'])} vs {names.get(p['b'], p['b'])}: "
                    f"{_pct(p['change_pct_a'])} vs {_pct(p['change_pct_b'])}, "
                    f"difference {_pct(p['difference_pct'])} [{_pct(low)}, {_pct(high)}], "
                    f"p = {_p(p['p'])}, Holm p = {_p(p['p_holm'])} ({p['method']})"
                )
