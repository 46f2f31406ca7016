from django.apps import AppConfig


class AnnotateConfig(AppConfig):
    """Human studies over adversarial sets (filled in by the study issues)."""

    name = "annotate"
    default_auto_field = "django.db.models.BigAutoField"
