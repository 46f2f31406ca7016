"""Test tooling that speaks MTurk's protocol, for tests and local trials (never production).

Modules: ``endpoint`` (the in-memory requester service, :class:`FakeMTurk`) and ``transport``
(its HTTP side and a tiny worker site). ``manage.py mturk_endpoint`` serves it.
"""
