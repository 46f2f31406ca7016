"""The Prolific mirrors and the audit in the admin, read-only (the commands change them)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from annotate.prolific.models import (
    ProlificBonus,
    ProlificCall,
    ProlificHookEvent,
    ProlificStudy,
    ProlificSubmission,
)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ProlificStudy)
class ProlificStudyAdmin(ReadOnly):
    list_display = ["prolific_id", "study", "state", "remote_status", "places", "reward", "created"]


@admin.register(ProlificSubmission)
class ProlificSubmissionAdmin(ReadOnly):
    list_display = ["submission_id", "participant_id", "status", "lease", "reviewed"]
    list_filter = ["status"]
    search_fields = ["submission_id", "participant_id"]


@admin.register(ProlificBonus)
class ProlificBonusAdmin(ReadOnly):
    list_display = ["pk", "prolific_study", "state", "amount", "bulk_id", "pay_requested", "paid"]


@admin.register(ProlificCall)
class ProlificCallAdmin(ReadOnly):
    list_display = ["at", "method", "path", "status_code", "ok", "attempts", "duration_ms"]
    list_filter = ["ok", "method"]


@admin.register(ProlificHookEvent)
class ProlificHookEventAdmin(ReadOnly):
    list_display = ["received", "event_type", "resource_id", "event_id"]
