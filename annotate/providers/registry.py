"""The providers this installation has, by name. Plain Python at import (no models loaded).

Apps register their provider in ``AppConfig.ready`` (``annotate`` the local one, ``mturk`` its
own). Model fields take their choices from here, so they follow the installed providers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from annotate.providers.base import ProviderError, RecruitmentProvider

if TYPE_CHECKING:
    from annotate.models import Study

LOCAL = "local"
_PROVIDERS: dict[str, RecruitmentProvider] = {}


class UnknownProvider(ProviderError):
    """A study names a provider this installation does not have (its app is not installed)."""

    code, status = "unknown_provider", 503


def register(provider: RecruitmentProvider) -> None:
    """Make ``provider`` available under its name (registering the same name again replaces it)."""
    _PROVIDERS[provider.name] = provider


def get(name: str) -> RecruitmentProvider:
    """The provider called ``name``."""
    try:
        return _PROVIDERS[name]
    except KeyError:
        installed = ", ".join(sorted(_PROVIDERS)) or "none"
        raise UnknownProvider(
            f"no recruitment provider {name!r} is installed (installed: {installed})"
        ) from None


def provider_for(study: Study) -> RecruitmentProvider:
    """The provider that recruits for ``study``."""
    try:
        return get(study.provider)
    except UnknownProvider as exc:
        raise UnknownProvider(f"study {study.name}: {exc.message}") from None


def providers() -> list[RecruitmentProvider]:
    """Every installed provider, local first."""
    return sorted(_PROVIDERS.values(), key=lambda p: (p.name != LOCAL, p.name))


def frame_ancestors() -> tuple[str, ...]:
    """Every origin any installed provider lets frame its pages (for pages of no study)."""
    return tuple(dict.fromkeys(o for p in providers() for o in p.frame_ancestors(None)))


def provider_choices() -> list[tuple[str, str]]:
    """``Study.provider``'s choices: the installed providers."""
    return [(p.name, p.label) for p in providers()] or [(LOCAL, "local (study link)")]


def worker_source_choices() -> list[tuple[str, str]]:
    """``Worker.source``'s choices: a panel's link, anonymous, or an installed provider."""
    choices = {"panel": "recruiting panel", "anonymous": "anonymous"}
    for p in providers():
        choices.setdefault(p.worker_source, p.label)
    return list(choices.items())
