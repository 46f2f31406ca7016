"""Studies and helpers the browser tests share (a helper module, not a test module)."""

from __future__ import annotations

from annotate.models import Answer, Lease, StimulusSet, Study
from tests.annotate.factories import make_model_row, make_set, make_study

SIZE = 25
# What our worker types: every digit, and one "cannot tell".
WANTED = [str((3 * i + 1) % 10) for i in range(SIZE)]
WANTED[5] = "?"

# Cookies and storage refused in every frame, as browsers do for blocked third-party frames.
BLOCK_STORAGE = """
(() => {
  const refuse = () => { throw new DOMException("blocked", "SecurityError"); };
  Object.defineProperty(Document.prototype, "cookie", {get: refuse, set: refuse});
  for (const name of ["localStorage", "sessionStorage"]) {
    Object.defineProperty(window, name, {get: refuse});
  }
})();
"""


def grid_study() -> Study:
    """An open study of one 25-image assignment, one image of which is a check."""
    model = make_model_row()
    stimuli = make_set(SIZE - 1, model=model)
    checks = make_set(2, kind=StimulusSet.Kind.ATTENTION, model=model, first_source=500)
    return make_study(
        [stimuli],
        n_assignments=1,
        size=SIZE,
        attention=checks,
        title="Which digit is this?",
        instructions="Type the digit you see under each image.",
    )


def stored_labels(lease: Lease) -> list[str]:
    answers = Answer.objects.filter(lease=lease).order_by("item__position")
    return [a.label for a in answers]
