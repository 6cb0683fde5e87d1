"""The export page's one model: no table, only the permission that opens the page.

An unmanaged model is the ordinary way for an app to own a permission: Django creates the
permission (and its content type) on ``migrate``; no table is made in MUSCLE's database.
Grant it to a user or group in the admin: "<app> | export page | Can run exportkit exports".
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models

#: The permission's codename; the full name is ``<app label>.run_export``.
RUN_EXPORT = "run_export"


class ExportPage(models.Model):
    """Stands for the export page in the admin and in the permission list."""

    # Explicit, so that the app needs no DEFAULT_AUTO_FIELD (the model has no table anyway).
    id = models.AutoField(primary_key=True)

    class Meta:
        managed = False
        default_permissions = ()
        permissions: ClassVar[list[tuple[str, str]]] = [(RUN_EXPORT, "Can run exportkit exports")]
        verbose_name = "export page"
        verbose_name_plural = "export page"


def permission_name() -> str:
    """``<app label>.run_export``, as ``user.has_perm`` takes it."""
    return f"{ExportPage._meta.app_label}.{RUN_EXPORT}"
