from django.apps import AppConfig


class AnnotateConfig(AppConfig):
    """Blinded human studies over stimulus sets: design, leasing, worker pages, analysis."""

    name = "annotate"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotate import checks  # noqa: F401 — registers the system checks
        from annotate.providers.local import LocalProvider
        from annotate.providers.registry import register

        register(LocalProvider())
