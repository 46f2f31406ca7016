"""Reads of stimulus sets for the console and the staff API."""

from __future__ import annotations

from typing import Any

from annotate.models import StimulusSet


def stimulus_sets_with_progress() -> list[dict[str, Any]]:
    """Every stimulus set with its generation state (newest first), in one query."""
    rows = []
    sets = StimulusSet.objects.select_related("model").order_by("-created", "-id")
    for s in sets:
        total = s.progress_total
        rows.append(
            {
                "name": s.name,
                "kind": s.kind,
                "model": s.model.name,
                "status": s.status,
                "done": s.progress_done,
                "total": total,
                "pct": round(100 * s.progress_done / total, 1) if total else 0.0,
                "error": s.error,
            }
        )
    return rows
