"""Recruitment providers: who sends workers to a study, and how they go back when done.

A study names its provider (``Study.provider``); the worker pages and the API call only the
interface here, never a provider by name, so a provider is one Django app that registers itself
(``mturk`` today; the app can be left out of ``INSTALLED_APPS``).

Modules:
    ``base``      the interface (:class:`~annotate.providers.base.RecruitmentProvider`) and
                  what crosses it: ``Visitor``, ``Handback``, ``Result``.
    ``registry``  the providers this installation has, by name; field choices that follow them.
    ``local``     the built-in provider: workers come by the study link (any panel, or none).
"""
