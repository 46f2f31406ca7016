"""Prolific as a recruitment provider: its own Django app (label ``prolific``).

Researchers recruit on Prolific today (Amazon closed MTurk on 2026-09-30). Leave the app out of
``BLINDSPOT_PROVIDER_APPS`` and nothing else changes.

Modules:
    ``provider``        :class:`~annotate.prolific.provider.ProlificProvider`, both sides of the
                        recruitment-provider interface.
    ``handshake``       the participant side: PROLIFIC_PID / STUDY_ID / SESSION_ID → a lease
                        bound to the submission, the completion and "no consent" links.
    ``models``          the remote study, submissions bound to leases, bonuses, the audit,
                        webhook deliveries.
    ``client``          the HTTP client: token auth, paging, careful retries, the audit.
    ``fees``            service fee, VAT and the minimum hourly rate, from the settings.
    ``publish``         plan and price, then create and publish the study exactly once.
    ``reconcile``       sync the submissions (one path shared with the webhook), disagreements.
    ``payments``        approve, reject, bonus (never twice, at any delay), spend.
    ``remote``          pause, start, stop, add places, message, status.
    ``hooks``           the signed webhook at ``/hooks/prolific/``.
    ``console``/``urls``  the staff page, at ``/console/prolific/studies/<name>/``.
    ``checks``          system checks of the Prolific settings.  ``admin``  read-only mirrors.
    ``testing``         an in-memory Prolific speaking its JSON protocol (tests, local trials).
    ``management/commands``  ``prolific`` (publish … status), ``prolific_endpoint``.
"""
