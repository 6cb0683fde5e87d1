"""The export page's URLs. A project includes them once, before the admin's own URLs
(whose catch-all would otherwise answer first)::

    path("admin/exportkit/", include("aml_exportkit.contrib.django.urls")),
    path("admin/", admin.site.urls),
"""

from __future__ import annotations

from django.urls import path, re_path

from . import views

app_name = "aml_exportkit"

#: The same pattern as :data:`aml_exportkit.contrib.django.jobstore.JOB_ID_RE`: anything
#: else never reaches a view.
_JOB = r"(?P<job_id>[0-9a-f]{32})"

urlpatterns = [
    path("", views.export_page, name="export"),
    re_path(rf"^jobs/{_JOB}/status$", views.job_status, name="status"),
    re_path(rf"^jobs/{_JOB}/run$", views.job_run, name="run"),
    re_path(rf"^jobs/{_JOB}/cancel$", views.job_cancel, name="cancel"),
    re_path(rf"^jobs/{_JOB}/download$", views.job_download, name="download"),
    # Any other job URL: the admin's 404, not the project's plain one. (Not a catch-all:
    # the admin's own URLs of the app, /admin/exportkit/exportpage/, live beside these.)
    re_path(r"^jobs/(?P<rest>.*)$", views.not_found),
]
