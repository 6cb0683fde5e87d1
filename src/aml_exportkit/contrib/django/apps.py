"""The app's configuration."""

from __future__ import annotations

from django.apps import AppConfig


class ExportkitConfig(AppConfig):
    """aml_exportkit inside a Django project.

    The label stays Django's default for this module path (``django``, the last part of the
    name): the export page's permission and migration were made under it.
    """

    name = "aml_exportkit.contrib.django"
    verbose_name = "aml_exportkit"
    default_auto_field = "django.db.models.AutoField"
