"""Django admin for the study data: staff browse everything; the event log is read-only."""

from django.contrib import admin

from annotate.models import (
    Answer,
    Assignment,
    Condition,
    Event,
    Item,
    Lease,
    Stimulus,
    StimulusSet,
    Study,
    Worker,
)


@admin.register(StimulusSet)
class StimulusSetAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "model", "split", "status", "progress_done", "progress_total"]
    list_filter = ["kind", "status", "split"]
    search_fields = ["name", "model__name", "weights_sha256"]
    readonly_fields = ["params", "weights_sha256", "created", "updated"]


@admin.register(Stimulus)
class StimulusAdmin(admin.ModelAdmin):
    list_display = [
        "set",
        "source_index",
        "original_label",
        "target",
        "shown_pred",
        "achieved_confidence",
        "l2_norm",
        "success",
    ]
    list_filter = ["set", "success", "original_label"]
    list_select_related = ["set"]


class ConditionInline(admin.TabularInline):
    model = Condition
    extra = 0
    readonly_fields = ["set", "position"]
    can_delete = False


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "design", "assignment_size", "attention_checks", "created"]
    list_filter = ["status", "design"]
    search_fields = ["name"]
    readonly_fields = ["key", "config", "config_hash", "created", "opened", "closed"]
    inlines = [ConditionInline]


class ItemInline(admin.TabularInline):
    model = Item
    extra = 0
    readonly_fields = ["position", "stimulus", "condition", "is_attention", "key"]
    can_delete = False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["study", "index", "block", "replicate"]
    list_filter = ["study"]
    inlines = [ItemInline]


class AnswerInline(admin.TabularInline):
    model = Answer
    extra = 0
    readonly_fields = ["item", "label", "response_ms", "saved"]
    can_delete = False


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["assignment", "worker", "status", "leased", "expires", "submitted"]
    list_filter = ["status", "study"]
    search_fields = ["worker__external_id", "completion_code", "provider_ref"]
    readonly_fields = ["key", "completion_code", "leased", "submitted"]
    inlines = [AnswerInline]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["external_id", "source", "simulated", "created"]
    list_filter = ["source", "simulated"]
    search_fields = ["external_id"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Evidence and mirrored rows (events, a provider's state): browse them, never edit them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """The event log is evidence: it can be read and filtered, never edited."""

    list_display = ["at", "kind", "study", "worker", "lease"]
    list_filter = ["kind", "study"]
