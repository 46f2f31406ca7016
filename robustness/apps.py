from django.apps import AppConfig


class RobustnessConfig(AppConfig):
    """Django layer over the robustness library: the model registry and its commands."""

    name = "robustness"
    default_auto_field = "django.db.models.BigAutoField"
