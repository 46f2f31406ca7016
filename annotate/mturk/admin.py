"""MTurk's rows in the admin: mirrors of MTurk's state and the call audit, read-only."""

from django.contrib import admin

from annotate.admin import ReadOnlyAdmin
from annotate.mturk.models import Hit, HitAssignment, MTurkCall, MTurkQualification


@admin.register(Hit)
class HitAdmin(ReadOnlyAdmin):
    list_display = [
        "hit_id",
        "study",
        "sandbox",
        "index",
        "state",
        "max_assignments",
        "reward",
        "status",
    ]
    list_filter = ["sandbox", "state", "status", "study"]
    search_fields = ["hit_id", "hit_type_id", "request_token"]


@admin.register(HitAssignment)
class HitAssignmentAdmin(ReadOnlyAdmin):
    list_display = ["assignment_id", "worker_id", "hit", "mturk_status", "lease", "bonus"]
    list_filter = ["mturk_status", "hit__sandbox"]
    search_fields = ["assignment_id", "worker_id", "hit__hit_id"]


@admin.register(MTurkQualification)
class MTurkQualificationAdmin(ReadOnlyAdmin):
    list_display = ["name", "sandbox", "type_id", "created"]


@admin.register(MTurkCall)
class MTurkCallAdmin(ReadOnlyAdmin):
    """The audit trail of every MTurk call: evidence, never edited."""

    list_display = ["at", "operation", "sandbox", "study", "ok", "error_code", "attempts"]
    list_filter = ["ok", "sandbox", "operation"]
    search_fields = ["operation", "error_code", "message"]
