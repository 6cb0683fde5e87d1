"""The export page, its job endpoints and the download.

Every view needs an active staff user (others are sent to the admin's login) with the
``run_export`` permission (others get 403). A job is visible to the user who started it
and to superusers; any other id answers 404, so ids cannot be probed. 403 and 404 are
pages of the admin, and so is the refusal of a request too big to read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
import signal
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError as DjangoDatabaseError
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ...errors import ExportkitError
from ...pipeline import registry_for
from . import conf
from .forms import DEFAULT_TEMPLATE, BoundedUploadHandler, ExportForm
from .jobstore import (
    ACTIVE,
    CHECKED,
    CHECKING,
    DONE,
    PENDING,
    QUEUED,
    RUNNING,
    SETTLED,
    WAITING,
    ZIP_FILE,
    JobStore,
    redact_paths,
    start_worker,
)
from .models import permission_name

#: Status keys the browser may see (never the worker's pid or any path on the server).
PUBLIC_STATUS_KEYS = (
    "state",
    "mode",
    "phase",
    "rows",
    "expected",
    "rate",
    "percent",
    "eta",
    "elapsed",
    "error",
    "exit_code",
    "preview",
    "outputs",
    "zip_bytes",
    "started",
    "finished",
)
#: How many of a user's jobs the page lists.
RECENT_JOBS = 10
#: Bytes a POST may carry beside the upload (the blocks, the token, multipart headers);
#: a longer body is refused before a byte of it is read.
FORM_ALLOWANCE = 256 * 1024
#: What the page calls a state, where the bare name would mislead.
STATE_LABELS = {QUEUED: "starting", CHECKING: "previewing"}
#: What the page calls a phase of a running export.
PHASE_TEXTS = {
    "reading": "reading",
    "writing": "writing the outputs",
    "codebook": "writing the codebook",
    "manifest": "writing the manifest",
    "zipping": "zipping",
}

View = Callable[..., Any]


def error_page(request: Any, status: int, title: str, message: str) -> HttpResponse:
    """An error as a page of the admin (its header, breadcrumbs and style)."""
    context = {
        **admin.site.each_context(request),
        "title": title,
        "message": message,
        "page_url": reverse("aml_exportkit:export"),
    }
    response: HttpResponse = render(request, "aml_exportkit/error.html", context, status=status)
    return response


def _csrf_failed(request: Any) -> bool:
    """Whether an unsafe request fails Django's CSRF check (the middleware's own check,
    run here because the views are exempt from it: the upload's handler must be set
    before the body is read)."""
    check = CsrfViewMiddleware(lambda r: HttpResponse())
    check.process_request(request)
    return check.process_view(request, None, (), {}) is not None


def exportkit_permission_required(view: View) -> View:
    """Let only active staff users with the ``run_export`` permission through.

    Anonymous and non-staff users are sent to the admin's login page, as the admin does;
    staff users without the permission get 403. A POST longer than the largest upload
    (plus :data:`FORM_ALLOWANCE`) gets 413 before its body is read; a shorter one is read
    with :class:`~aml_exportkit.contrib.django.forms.BoundedUploadHandler`, in memory, and
    must pass the CSRF check. 403 and 404 are rendered as pages of the admin.
    """

    @functools.wraps(view)
    def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
        user = request.user
        if not (user.is_active and user.is_staff):
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        try:
            if not user.has_perm(permission_name()):
                raise PermissionDenied("the run_export permission is needed for exports")
            if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
                refused = _refuse_body(request)
                if refused is not None:
                    return refused
            return view(request, *args, **kwargs)
        except PermissionDenied:
            return error_page(
                request,
                403,
                "403 Forbidden",
                "You may not run exports: ask an administrator for the permission"
                " “Can run exportkit exports”.",
            )
        except Http404:
            return error_page(
                request,
                404,
                "404 Not found",
                "There is no such page or job here (jobs are deleted after a while, and"
                " each user sees only their own).",
            )

    wrapped.csrf_exempt = True  # type: ignore[attr-defined]
    return wrapped


def _refuse_body(request: Any) -> HttpResponse | None:
    """The response that refuses an unsafe request's body, or None to go on."""
    limit = conf.max_template_bytes()
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > limit + FORM_ALLOWANCE:
        return error_page(
            request,
            413,
            "The upload is too large",
            f"A template file may have at most {limit:,} bytes. Nothing was read or stored.",
        )
    request.upload_handlers = [BoundedUploadHandler(request, limit)]
    if _csrf_failed(request):
        return error_page(
            request,
            403,
            "403 Forbidden",
            "The form's security token (CSRF) was missing or wrong; reload the page and try again.",
        )
    return None


def _job(request: Any, store: JobStore, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec and status of a job the user may see.

    :raises Http404: for a malformed id, an unknown job or another user's job.
    """
    try:
        spec = store.spec(job_id)
        status = store.status(job_id)
    except ValueError:
        raise Http404("no such job") from None
    if spec is None or status is None:
        raise Http404("no such job")
    if spec.get("user_id") != request.user.pk and not request.user.is_superuser:
        raise Http404("no such job")
    return spec, status


def public_status(job_id: str, status: dict[str, Any]) -> dict[str, Any]:
    """What the status endpoint sends: the public keys, what the page shows (``label``,
    ``progress_text``, ``bar``), and the download's URL when done."""
    data = {key: status.get(key) for key in PUBLIC_STATUS_KEYS if key in status}
    error = data.get("error")
    if isinstance(error, str):  # written by a worker; no server path in a page
        data["error"] = redact_paths(error)
    state = status.get("state")
    data["id"] = job_id
    data["settled"] = state in SETTLED
    data["label"] = STATE_LABELS.get(str(state), str(state))
    data["progress_text"] = progress_text(status)
    reading = state == RUNNING and status.get("phase", "reading") == "reading"
    data["bar"] = status.get("percent") if reading else None
    if state == DONE:
        data["download"] = reverse("aml_exportkit:download", args=[job_id])
    return data


def progress_text(status: dict[str, Any]) -> str:
    """The line the page shows under a pending job: what it waits for or does, with the
    rows, the percentage and the time left while it reads."""
    state = status.get("state")
    if state == WAITING:
        limits = conf.job_limits()
        caps = [
            f"{n} at once" if who == "total" else f"{n} per user"
            for who, n in (("total", limits.total), ("per_user", limits.per_user))
            if n is not None
        ]
        return "waiting for a free slot (" + ", ".join(caps) + ")" if caps else "waiting"
    if state == QUEUED:
        return "starting the export process"
    if state == CHECKING:
        return "reading the data and trying the template"
    if state != RUNNING:
        return ""
    phase = str(status.get("phase") or "reading")
    rows, expected = status.get("rows"), status.get("expected")
    if phase != "reading":
        done = f" ({rows:,} trial results read)" if isinstance(rows, int) else ""
        return PHASE_TEXTS.get(phase, phase) + done
    if not isinstance(rows, int):
        return "reading"
    text = f"reading: {rows:,}"
    text += f" of {expected:,} trial results" if isinstance(expected, int) else " trial results"
    if status.get("percent") is not None:
        text += f" ({status['percent']}%)"
    if status.get("rate"):
        text += f", {status['rate']:,.0f} rows/s"
    if status.get("eta"):
        text += f", ETA {status['eta']}"
    return text


def _dispatch(store: JobStore) -> None:
    """Start the waiting jobs that fit under the limits."""

    def start(job_id: str, mode: str) -> int:
        return start_worker(
            store.folder(job_id),
            mode,
            {"uri": conf.database_uri()},
            hide=[conf.database_password()],
        )

    store.dispatch(conf.job_limits(), start)


def _page_url(job_id: str | None = None) -> str:
    url: str = reverse("aml_exportkit:export")
    return f"{url}?job={job_id}" if job_id else url


def _download_name(spec: dict[str, Any]) -> str:
    blocks = "+".join(spec.get("blocks") or []) or "export"
    label = str(spec.get("template", {}).get("label", "template")).removesuffix(".toml")
    created = dt.datetime.fromtimestamp(float(spec.get("created", 0)), tz=dt.UTC)
    name = f"{blocks[:80]}-{label}-{created:%Y%m%dT%H%M%SZ}.zip"
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def _job_context(job_id: str, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": job_id,
        "template": spec.get("template", {}).get("label", ""),
        "blocks": spec.get("blocks") or [],
        "created": dt.datetime.fromtimestamp(float(spec.get("created", 0)), tz=dt.UTC),
        "status": public_status(job_id, status),
        "status_url": reverse("aml_exportkit:status", args=[job_id]),
        "run_url": reverse("aml_exportkit:run", args=[job_id]),
        "cancel_url": reverse("aml_exportkit:cancel", args=[job_id]),
        "download_url": reverse("aml_exportkit:download", args=[job_id]),
        "active": status.get("state") in PENDING,
    }


@never_cache
@exportkit_permission_required
@require_http_methods(["GET", "POST"])
def export_page(request: Any) -> Any:
    """The page: the form, the current job (``?job=ID``) and the user's recent jobs.

    A valid POST starts a job (``_preview``: the check; otherwise the export) and
    redirects to the page showing it, so that a reload never starts a second job.
    """
    store = conf.job_store()
    store.cleanup(conf.job_max_age())
    _dispatch(store)
    try:
        registry = registry_for()
    except ExportkitError as exc:  # a broken plugin: say so, as the command line would
        context = {
            **admin.site.each_context(request),
            "title": "Export results",
            "problem": f"exportkit: error: {redact_paths(str(exc))}",
        }
        return render(request, "aml_exportkit/export.html", context)
    problem = ""
    try:
        blocks = conf.muscle_blocks()
    except DjangoDatabaseError as exc:
        blocks = []
        problem = f"cannot list MUSCLE's blocks: {type(exc).__name__}"
    options: dict[str, Any] = {
        "blocks": blocks,
        "templates": conf.template_choices(registry),
        "registry": registry,
        "max_upload": conf.max_template_bytes(),
        "allowed_key_env": conf.allowed_key_env(),
    }
    if request.method == "POST":
        form = ExportForm(request.POST, request.FILES, **options)
        if form.is_valid():
            spec = {
                "blocks": form.cleaned_data["blocks"],
                "template": form.reference,
                "user_id": request.user.pk,
                "username": request.user.get_username(),
                # for the worker, which reads no settings: it checks an upload again, and
                # starts the next waiting job under these limits when it ends
                "allowed_key_env": conf.allowed_key_env(),
                "limits": conf.job_limits().as_json(),
            }
            job_id = store.create(spec, upload_text=form.upload_text)
            store.wait(job_id, "check" if "_preview" in request.POST else "export")
            _dispatch(store)
            return HttpResponseRedirect(_page_url(job_id))
    else:
        wanted = [slug for slug in request.GET.getlist("block") if slug]
        form = ExportForm(initial={"blocks": wanted, "template": DEFAULT_TEMPLATE}, **options)
    job = None
    job_id = request.GET.get("job", "")
    if job_id:
        spec, status = _job(request, store, job_id)
        job = _job_context(job_id, spec, status)
        if request.method == "GET":
            form.initial = {"blocks": spec.get("blocks") or [], **_initial_template(spec)}
    recent = []
    for other_id, other in store.jobs():
        if other.get("user_id") != request.user.pk:
            continue
        status = store.status(other_id) or {}
        recent.append({**_job_context(other_id, other, status), "current": other_id == job_id})
        if len(recent) >= RECENT_JOBS:
            break
    context = {
        **admin.site.each_context(request),
        "title": "Export results",
        "form": form,
        "job": job,
        "recent": recent,
        "problem": problem,
        "max_age_hours": round(conf.job_max_age() / 3600, 1),
    }
    return render(request, "aml_exportkit/export.html", context)


def _initial_template(spec: dict[str, Any]) -> dict[str, str]:
    ref = spec.get("template") or {}
    if ref.get("kind") == "builtin":
        return {"template": f"builtin:{ref.get('ref')}"}
    return {"template": DEFAULT_TEMPLATE}


@never_cache
@exportkit_permission_required
@require_GET
def job_status(request: Any, job_id: str) -> Any:
    """The job's status as JSON: state, rows, rate, ETA, preview, error, download URL.

    A waiting job's poll also starts the waiting jobs that fit now."""
    store = conf.job_store()
    _, status = _job(request, store, job_id)
    if status.get("state") == WAITING:
        _dispatch(store)
        _, status = _job(request, store, job_id)
    return JsonResponse(public_status(job_id, status))


@exportkit_permission_required
@require_POST
def job_run(request: Any, job_id: str) -> Any:
    """Run the export of a previewed job (its template and blocks as they were checked)."""
    store = conf.job_store()
    store.cleanup(conf.job_max_age())
    _, status = _job(request, store, job_id)
    if status.get("state") != CHECKED or not store.claim_export(job_id):
        return HttpResponseRedirect(_page_url(job_id))
    store.wait(job_id, "export", preview=status.get("preview"))
    _dispatch(store)
    return HttpResponseRedirect(_page_url(job_id))


@exportkit_permission_required
@require_POST
def job_cancel(request: Any, job_id: str) -> Any:
    """Stop a running job: its worker discards its outputs and reports "terminated". A
    waiting job ends at once."""
    store = conf.job_store()
    _, status = _job(request, store, job_id)
    if status.get("state") == WAITING and store.cancel_waiting(job_id):
        return HttpResponseRedirect(_page_url(job_id))
    status = store.status(job_id) or {}
    pid = store.worker_pid(job_id)
    if status.get("state") in ACTIVE and pid is not None:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGTERM)
    return HttpResponseRedirect(_page_url(job_id))


@never_cache
@exportkit_permission_required
@require_GET
def job_download(request: Any, job_id: str) -> Any:
    """The finished job's zip: every output, the manifest and the codebook."""
    store = conf.job_store()
    spec, status = _job(request, store, job_id)
    path = store.folder(job_id) / ZIP_FILE
    if status.get("state") != DONE or not path.is_file():
        raise Http404("this job has no download")
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=_download_name(spec),
        content_type="application/zip",
    )


@never_cache
@exportkit_permission_required
def not_found(request: Any, rest: str = "") -> Any:
    """Any other URL under the page: the admin's 404 (after the same access checks)."""
    raise Http404("no such page")
