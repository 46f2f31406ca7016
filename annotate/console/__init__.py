"""The researchers' console: staff-only, server-rendered pages (an interface, not a domain).

It serves both halves: studies, stimulus sets and their generation, the job queue, and the
model registry.

Modules:
    ``views``      thin pages: home with live progress, study results and exports, open/close,
                   stimulus images, model pages, the generate and new-study forms.
    ``forms``      the commands' options as forms, building ``StimulusRequest`` and ``StudySpec``.
    ``job_views``  the jobs pages and their JSON (polled for live progress), cancel and retry.
    ``job_rows``   what a job shows: state, progress, host, device, timings (pages and JSON).
    ``urls``       routes under ``/console/``; a provider app mounts its own page beside them.
"""
