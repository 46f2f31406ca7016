from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """The model registry: Django's layer over the robustness library.

    The label stays ``robustness`` (the app's name before it moved here), so its tables and
    migration history are unchanged.
    """

    name = "robustness.registry"
    label = "robustness"
    verbose_name = "Model registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from robustness.registry import checks  # noqa: F401 — registers the system checks
