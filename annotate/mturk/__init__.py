"""Amazon Mechanical Turk as a recruitment provider: its own Django app (label ``mturk``).

Amazon closed MTurk on 2026-09-30; the provider stays for the thesis's protocol and for
trials against the sandbox or a local endpoint (publishing on live MTurk is refused; studies
recruit on Prolific). Leave the app out of ``INSTALLED_APPS`` (or ``BLINDSPOT_PROVIDER_APPS``)
and nothing else changes. Every call that creates or pays writes its intent first and looks
MTurk's state up before acting, since MTurk forgets a UniqueRequestToken after 24 hours.

Modules:
    ``provider``        :class:`~annotate.mturk.provider.MTurkProvider`, both sides of the
                        recruitment-provider interface.
    ``handshake``       the worker side: preview, accept keyed on (assignment, worker),
                        resume, and the ``externalSubmit`` hand-back.
    ``models``          HITs, their assignments bound to leases, qualifications, the call audit.
    ``client``          the boto3 client: retries, errors and the audit of every call.
    ``tokens``          every spelling of "token already used"; the bonus reason's reference.
    ``fees``            MTurk's commission.  ``qualifications``  find-or-create, requirements.
    ``publish``         plan, price and create HITs idempotently (intent rows, lookup by
                        annotation).
    ``reconcile``       sync every HIT's assignments, report disagreements, free the leases
                        of returned or abandoned assignments.
    ``payments``        approve, reject, bonus (never twice).  ``hits``  expire, extend, status.
    ``console``/``urls``  the staff page, at ``/console/mturk/studies/<name>/``.
    ``checks``          system checks of the MTurk settings.
    ``admin``           the mirrors and the audit, read-only.
    ``testing``         an in-memory MTurk speaking its JSON protocol (tests, local trials).
    ``management/commands``  ``mturk`` (publish … status), ``mturk_endpoint``.
"""
