"""Blinded human labeling studies of adversarial examples (the Django app ``annotate``).

Packages, each with its own map:
    ``models``     the data: stimulus sets, studies, leases, answers, events.
    ``stimuli``    adversarial sets, controls and attention checks (generation and storage).
    ``studies``    designs (pure), the typed spec, creation, opening and closing, policies.
    ``work``       leasing, answers, the worker pages and the worker API.
    ``analysis``   Table 4.2 statistics (pure), results, progress, exports, charts.
    ``providers``  the recruitment-provider interface and the built-in study link.
    ``console``    the staff console (an interface over both halves).
    ``staffapi``   the staff REST API (an interface over both halves).
    ``mturk``      Amazon Mechanical Turk, a provider app of its own (optional).
Modules: ``labels`` (the answer alphabet), ``errors`` (every error, on one base), ``checks``
(system checks), ``admin``; ``management/commands`` holds the study commands.

Dependencies run one way (checked by ``lint-imports``): interfaces → domains → models;
``annotate`` may import ``robustness``, never the reverse. See docs/architecture.md.
"""
