from django.apps import AppConfig


class MTurkConfig(AppConfig):
    """Amazon Mechanical Turk as a recruitment provider; leave it out of INSTALLED_APPS (or
    ``BLINDSPOT_PROVIDER_APPS``) and Blindspot runs without it."""

    name = "annotate.mturk"
    label = "mturk"
    verbose_name = "Amazon Mechanical Turk"
    default_auto_field = "django.db.models.BigAutoField"
    console_urls = "annotate.mturk.urls"  # mounted at /console/mturk/ by config.urls

    def ready(self) -> None:
        from annotate.mturk import checks  # noqa: F401 — registers the system checks
        from annotate.mturk.provider import MTurkProvider
        from annotate.providers.registry import register

        register(MTurkProvider())
