from django.contrib import admin

from robustness.registry.models import TrainedModel


@admin.register(TrainedModel)
class TrainedModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "arch",
        "defense",
        "dataset",
        "status",
        "epochs_done",
        "epochs_total",
        "test_error",
        "created",
    ]
    list_filter = ["status", "arch", "defense", "dataset"]
    search_fields = ["name", "weights_sha256"]
    readonly_fields = [
        "weights_sha256",
        "history",
        "metrics",
        "hyperparameters",
        "created",
        "updated",
        "train_seconds",
    ]

    @admin.display(description="test error")
    def test_error(self, obj: TrainedModel) -> str:
        value = obj.metrics.get("test_error")
        return "—" if value is None else f"{100 * value:.2f}%"
