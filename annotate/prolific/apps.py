from django.apps import AppConfig


class ProlificConfig(AppConfig):
    """Prolific as a recruitment provider; leave it out of ``BLINDSPOT_PROVIDER_APPS`` and
    Blindspot runs without it."""

    name = "annotate.prolific"
    label = "prolific"
    verbose_name = "Prolific"
    default_auto_field = "django.db.models.BigAutoField"
    console_urls = "annotate.prolific.urls"  # mounted at /console/prolific/ by config.urls
    public_urls = "annotate.prolific.hook_urls"  # mounted at /hooks/prolific/ (the webhook)

    def ready(self) -> None:
        from annotate.prolific import checks  # noqa: F401 — registers the system checks
        from annotate.prolific.provider import ProlificProvider
        from annotate.providers.registry import register

        register(ProlificProvider())
