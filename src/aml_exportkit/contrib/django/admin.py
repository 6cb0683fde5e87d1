"""A link to the export page in the admin's index, for users with the permission.

The model has no table: its admin "list" is the export page itself.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse

from .models import ExportPage, permission_name


@admin.register(ExportPage)
class ExportPageAdmin(admin.ModelAdmin):
    """Shows "Export page" in the admin index; its list view redirects to the page."""

    def has_module_permission(self, request: Any) -> bool:
        return bool(request.user.has_perm(permission_name()))

    def has_view_permission(self, request: Any, obj: Any = None) -> bool:
        return bool(request.user.has_perm(permission_name()))

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: Any, extra_context: Any = None) -> Any:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        return HttpResponseRedirect(reverse("aml_exportkit:export"))
