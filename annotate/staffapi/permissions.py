"""Who may use the staff API: active staff users only (anonymous users and workers get nothing)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class IsStaff(BasePermission):
    """An authenticated, active staff user; a worker has no user, so a lease token never passes."""

    message = "Staff only."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)
