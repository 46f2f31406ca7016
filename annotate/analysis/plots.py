"""Server-rendered charts for the staff console: matplotlib (Agg) to inline SVG, no CDN.

Figures are built with the object API (``Figure``), never ``pyplot``, so rendering needs no
backend switch, keeps no global state and is safe in threaded servers.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from matplotlib import rc_context
from matplotlib.figure import Figure

from annotate.analysis.responses import OUTCOMES

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

OUTCOME_LABELS = {
    "change": "% change",
    "no_change": "% no change",
    "other": "% other",
    "unsure": "% ?",
}
OUTCOME_COLOURS = {
    "change": "#c0392b",
    "no_change": "#2e86c1",
    "other": "#8e44ad",
    "unsure": "#7f8c8d",
}
HISTORY_SERIES = ("train_loss", "train_error", "valid_error")
_RC: dict[RcKeyType, Any] = {"svg.fonttype": "none", "svg.hashsalt": "blindspot", "font.size": 9}


def _svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element (no XML prologue), ready to inline in HTML."""
    buf = io.StringIO()
    with rc_context(_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _number(value: Any) -> float:
    """A JSON number as float; ``None`` (the analysis's nan) as nan."""
    return math.nan if value is None else float(value)


def rates_chart_svg(*, conditions: Sequence[Mapping[str, Any]]) -> str:
    """Grouped bars of the four rates per condition with Wilson 95% whiskers (an SVG string).

    ``conditions`` are the rows of :func:`annotate.analysis.results.study_results`; bars of a
    condition without answers are left empty.
    """
    with rc_context(_RC):
        fig = Figure(figsize=(max(4.0, 1.6 * len(conditions) + 2.0), 3.2))
        ax = fig.add_subplot()
        width = 0.8 / len(OUTCOMES)
        for j, name in enumerate(OUTCOMES):
            xs = [i + (j - 1.5) * width for i in range(len(conditions))]
            pct = [_number(row[name]["pct"]) for row in conditions]
            low = [_number(row[name]["wilson"][0]) for row in conditions]
            high = [_number(row[name]["wilson"][1]) for row in conditions]
            err = [
                [max(0.0, p - lo) for p, lo in zip(pct, low, strict=True)],
                [max(0.0, hi - p) for p, hi in zip(pct, high, strict=True)],
            ]
            ax.bar(
                xs,
                pct,
                width,
                yerr=err,
                capsize=2,
                label=OUTCOME_LABELS[name],
                color=OUTCOME_COLOURS[name],
                error_kw={"elinewidth": 0.8},
            )
        ax.set_xticks(range(len(conditions)))
        ax.set_xticklabels([str(row.get("name", row.get("condition"))) for row in conditions])
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of answers (95% Wilson interval)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        return _svg(fig)


def history_chart_svg(*, history: Sequence[Mapping[str, Any]]) -> str:
    """Training curves (loss and errors per epoch) from ``TrainedModel.history`` as SVG."""
    with rc_context(_RC):
        fig = Figure(figsize=(6.0, 3.0))
        loss_ax, error_ax = fig.subplots(1, 2)
        epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
        for key, ax in (("train_loss", loss_ax), ("train_error", error_ax)):
            ax.plot(epochs, [_number(row.get(key)) for row in history], marker="o", label=key)
        error_ax.plot(
            epochs,
            [_number(row.get("valid_error")) for row in history],
            marker="s",
            label="valid_error",
        )
        loss_ax.set_title("training loss")
        error_ax.set_title("error rate")
        for ax in (loss_ax, error_ax):
            ax.set_xlabel("epoch")
            ax.spines[["top", "right"]].set_visible(False)
        error_ax.legend(frameon=False)
        fig.tight_layout()
        return _svg(fig)
