"""Crowd work: leasing assignments, the worker pages and API, answers, submission.

Modules:
    ``leases``       who may take which assignment, for how long; expiry (database-enforced).
    ``answers``      autosave and the one final submission (checked, idempotent).
    ``payload``      what a worker's browser receives: opaque keys and inline pixels.
    ``tokens``       signed lease tokens, the only thing in a worker's URL.
    ``views``        the pages (entry and consent, the grid, the completion code), through the
                     study's recruitment provider (:mod:`annotate.providers`) only.
    ``headers``      no caching, no referrer, a strict CSP that frames by name.
    ``api``          the worker API the page's script uses; ``serializers`` its shapes.
    ``urls``         the worker routes (no login anywhere).
    ``simulation``   simulated workers through the same services (clearly marked).
"""
