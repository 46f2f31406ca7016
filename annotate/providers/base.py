"""The recruitment-provider interface: the worker-side hooks and the requester-side actions.

The worker side is what the labeling pages need: who the visitor is (:meth:`identify`),
whether they only preview, an earlier lease to resume on reload, accepting (which leases an
assignment), how the finished worker goes back to the site (:meth:`handback`), where one who
declines goes (:meth:`decline`) and which sites
may frame the pages. The requester side (publish, sync, approve, reject, bonus, expire,
status) is what commands and the console call; each returns a :class:`Result` of lines.
A participant's panel id is an identifier, never a secret: no hook may treat it as one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from robustness.errors import BlindspotError

if TYPE_CHECKING:
    from annotate.models import Lease, Study


class ProviderError(BlindspotError):
    """A provider cannot do what was asked (unknown provider, action it does not offer)."""

    code = "provider_refused"


@dataclass(frozen=True)
class Visitor:
    """Someone who opened a study link, as their recruiting site named them.

    ``worker_id`` is the site's participant id ('' for anonymous), ``attempt_id`` the site's
    id of this attempt (MTurk's assignment, Prolific's session). Where the site has none, the
    worker pages fill in a nonce of the entry page, which the browser carries to the start
    request: either way it is the proof that resumes the visitor's lease, not the id.
    ``preview``: they are only looking, and must not be leased anything. ``fields`` are the
    parameters to carry from the entry page to the start request (hidden form inputs).
    """

    worker_id: str = ""
    attempt_id: str = ""
    preview: bool = False
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Handback:
    """How a finished worker goes back to the recruiting site: a form to post, or a link.

    ``origin`` is the site's origin (scheme://host), which the page's CSP must allow.
    """

    site: str
    url: str
    origin: str
    method: str = "link"  # "post" (a form with ``fields``) or "link"
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Result:
    """What a provider action did, as lines for a command or a console message."""

    ok: bool = True
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CostEstimate:
    """What paying ``participants`` a ``reward`` each costs through one provider: the rewards,
    the provider's fees and VAT on them, and notes (a minimum wage missed, a closed service)."""

    provider: str
    currency: str
    reward: Decimal
    participants: int
    paid: Decimal
    fees: Decimal
    vat: Decimal = Decimal("0.00")
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> Decimal:
        return self.paid + self.fees + self.vat

    def describe(self) -> str:
        """One line: ``Prolific: 40 × 1.20 GBP = 48.00 + fees 15.98 + VAT 0.00 = 63.98 GBP``."""
        c = f" {self.currency}" if self.currency else ""
        vat = f" + VAT {self.vat:.2f}" if self.vat else ""
        return (
            f"{self.provider}: {self.participants} × {self.reward:.2f}{c} = {self.paid:.2f} "
            f"+ fees {self.fees:.2f}{vat} = {self.total:.2f}{c}"
        )


def _text(params: Mapping[str, Any], *names: str) -> str:
    """The first non-empty of ``names`` in ``params`` (a QueryDict or a dict), stripped."""
    for name in names:
        value = params.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


class RecruitmentProvider:
    """Base of the providers: defaults for a site that frames nothing and pays through itself.

    Subclasses set ``name`` (stored in ``Study.provider``), ``label`` and ``worker_source``
    (stored in ``Worker.source`` for their workers) and override what their site needs.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    worker_source: ClassVar[str] = "panel"
    currency: ClassVar[str] = ""  # what rewards are paid in, where the provider says
    #: Whether the worker API may lease directly (POST …/lease): only for providers whose
    #: workers need no handshake with the site.
    api_leasing: ClassVar[bool] = False
    text = staticmethod(_text)

    # --- worker side --------------------------------------------------------------------

    def identify(self, params: Mapping[str, Any]) -> Visitor:
        """The visitor a study link's parameters (GET) or the start form (POST) name."""
        raise NotImplementedError

    def frame_ancestors(self, study: Study | None) -> tuple[str, ...]:
        """Origins that may frame the worker pages of ``study`` (None: a page of no study)."""
        return ()

    def resume(self, *, study: Study, visitor: Visitor) -> Lease | None:
        """The live lease this visitor already holds in ``study`` (a reload), if the site tells."""
        return None

    def accept(self, *, study: Study, visitor: Visitor) -> Lease:
        """Lease an assignment to a consenting visitor (or give theirs back); WorkError if not."""
        raise NotImplementedError

    def handback(self, lease: Lease) -> Handback | None:
        """How the worker of a submitted ``lease`` returns to the site (None: paste the code)."""
        return None

    def decline(self, *, study: Study, visitor: Visitor) -> Handback | None:
        """Where a visitor who does not consent goes back to (None: nowhere, just leave)."""
        return None

    # --- requester side -----------------------------------------------------------------

    def estimate_cost(self, *, participants: int, reward: Decimal, minutes: int) -> CostEstimate:
        """What ``participants`` paid ``reward`` each for about ``minutes`` would cost here
        (for planning; nothing is created). By default only the rewards: a panel's own fees
        are not known to Blindspot."""
        paid = (Decimal(reward) * participants).quantize(Decimal("0.01"))
        return CostEstimate(
            provider=self.label,
            currency="",
            reward=Decimal(reward),
            participants=participants,
            paid=paid,
            fees=Decimal("0.00"),
            notes=("your panel's own fees are not included",),
        )

    def console_url(self, study: Study) -> str | None:
        """The provider's console page for ``study``, if it has one."""
        return None

    def _unsupported(self, what: str) -> Result:
        return Result(lines=[f"{self.label}: there is nothing to {what} here"])

    def publish(self, *, study: Study, **options: Any) -> Result:
        return self._unsupported("publish")

    def sync(self, *, study: Study) -> Result:
        return self._unsupported("sync")

    def approve(self, *, study: Study, passing_only: bool = False, feedback: str = "") -> Result:
        return self._unsupported("approve; pay through your panel")

    def reject(self, *, study: Study, assignment_ids: list[str], reason: str) -> Result:
        return self._unsupported("reject")

    def bonus(
        self, *, study: Study, amount: Decimal, reason: str, workers: list[str] | None = None
    ) -> Result:
        return self._unsupported("bonus; pay through your panel")

    def expire(self, *, study: Study) -> Result:
        return self._unsupported("expire")

    def status(self, *, study: Study) -> Result:
        return self._unsupported("report")
