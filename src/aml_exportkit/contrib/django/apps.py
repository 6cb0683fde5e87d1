"""The app's configuration."""

from __future__ import annotations

from django.apps import AppConfig


class ExportkitConfig(AppConfig):
    """aml_exportkit inside a Django project.

    The label is ``exportkit``: Django's default would be ``django`` (the last part of the
    module path), which says nothing in a permission name (``exportkit.run_export``).
    """

    name = "aml_exportkit.contrib.django"
    label = "exportkit"
    verbose_name = "aml_exportkit"
    default_auto_field = "django.db.models.AutoField"
