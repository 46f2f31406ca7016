"""Amazon Mechanical Turk, requester side: publish HITs, reconcile, pay, and audit every call.

Modules: ``client`` (the boto3 client, retries, errors, the ``MTurkCall`` audit), ``fees``
(MTurk's commission), ``qualifications``, ``publish``, ``reconcile``, ``payments``, ``hits``
(expire, extend, status), ``providers`` (the recruitment-provider interface), ``fake_endpoint``
(an in-memory MTurk for tests and local trials) and ``console`` (the staff page). The worker
side (the ExternalQuestion page) lives in ``annotate.views``.
"""
