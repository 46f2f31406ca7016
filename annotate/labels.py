"""The answer alphabet: what a worker may type for an image. Plain Python (no Django).

The one definition: the ``Answer`` model and its database constraint, the validation of
submissions, the analysis and the labeling page (sent to it by the server) all read it here.
"""

from __future__ import annotations

UNSURE = "?"  # "I cannot tell"
DIGITS = tuple("0123456789")
LABELS = (*DIGITS, UNSURE)
