"""The researchers' console: staff-only, server-rendered pages (an interface, not a domain).

It serves both halves: studies, stimulus sets and their generation, and the model registry.

Modules:
    ``views``  thin pages: home with live progress, study results and exports, open/close,
               stimulus images, model pages, the generate and new-study forms.
    ``forms``  the commands' options as forms, building ``StimulusRequest`` and ``StudySpec``.
    ``jobs``   long commands (stimulus generation) run in a detached process with a log.
    ``urls``   routes under ``/console/``; a provider app mounts its own page beside them.
"""
