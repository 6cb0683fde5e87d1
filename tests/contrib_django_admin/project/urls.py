"""The test project's URLs: the export page, included once before the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/exportkit/", include("aml_exportkit.contrib.django.urls")),
    path("admin/", admin.site.urls),
]
