"""The export form: blocks, a template (builtin, from a configured folder, or uploaded).

Every template is loaded with aml_exportkit's own loader before a job starts, so that an
invalid one is refused with the same line the command line prints. The form never turns
a value from the browser into a path: folder templates are looked up in a listing the
server made.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django import forms
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from ...errors import TemplateError
from ...pipeline import load_template
from ...plugins import Registry
from ...template.load import parse_template
from ...template.model import Template
from .conf import BlockChoice, TemplateChoice
from .jobstore import check_key_env, check_output_paths, redact_paths
from .worker import check_upload_reads_no_file

logger = logging.getLogger(__name__)

UPLOAD = "upload"
#: The template the form starts with: MUSCLE's own favourite.
DEFAULT_TEMPLATE = "builtin:muscle-classic:long_json"


def _upload_name(name: str) -> str:
    """The uploaded file's base name, for messages and the manifest (no client folders)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in base if c.isprintable()).strip()
    return cleaned[:100] or "uploaded.toml"


class BoundedUploadHandler(FileUploadHandler):
    """Keeps an uploaded file in memory, but never more than ``limit + 1`` bytes of it,
    and counts the rest: nothing goes to disk, and the form sees the true size.

    :param request: the request.
    :param limit: the largest upload the form accepts.
    """

    def __init__(self, request: Any, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.kept = io.BytesIO()
        self.seen = 0

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        """Start a new file."""
        super().new_file(*args, **kwargs)
        self.kept = io.BytesIO()
        self.seen = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        """Keep the chunk up to the limit; count all of it."""
        self.seen += len(raw_data)
        room = self.limit + 1 - self.kept.tell()
        if room > 0:
            self.kept.write(raw_data[:room])

    def file_complete(self, file_size: int) -> Any:
        """The file, with ``size`` the number of bytes that arrived."""
        self.kept.seek(0)
        return InMemoryUploadedFile(
            file=self.kept,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=self.seen,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )


class ExportForm(forms.Form):
    """Pick blocks and a template.

    :param blocks: the database's blocks.
    :param templates: the builtin and folder templates.
    :param registry: the installed sinks and templates, to load templates with.
    :param max_upload: the largest upload in bytes.
    :param allowed_key_env: the variables an upload may name as its ``[privacy] key_env``.
    """

    blocks = forms.MultipleChoiceField(
        label="Blocks",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one block."},
    )
    template = forms.ChoiceField(label="Template")
    upload = forms.FileField(
        label="Template file",
        required=False,
        help_text="A TOML template (see docs/templates.md); used with “Upload a template file”.",
    )

    def __init__(
        self,
        *args: Any,
        blocks: Sequence[BlockChoice],
        templates: Sequence[TemplateChoice],
        registry: Registry,
        max_upload: int,
        allowed_key_env: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.registry = registry
        self.max_upload = max_upload
        self.allowed_key_env = list(allowed_key_env)
        self.templates = {t.value: t for t in templates}
        self.fields["blocks"].choices = [(b.slug, b.label) for b in blocks]
        groups: dict[str, list[tuple[str, str]]] = {}
        for choice in templates:
            groups.setdefault(choice.group, []).append((choice.value, choice.label))
        self.fields["template"].choices = [
            *groups.items(),
            ("Your own", [(UPLOAD, "Upload a template file…")]),
        ]
        #: After validation: the loaded template, its job reference and an upload's text.
        self.loaded: Template | None = None
        self.reference: dict[str, str] = {}
        self.upload_text: str | None = None

    def clean_upload(self) -> Any:
        """Refuse big or non-UTF-8 uploads before they are parsed."""
        upload = self.cleaned_data.get("upload")
        if upload is None:
            return None
        if upload.size > self.max_upload:
            raise forms.ValidationError(
                f"The file has {upload.size:,} bytes; the limit is {self.max_upload:,}."
            )
        raw = upload.read(self.max_upload + 1)
        try:
            self.upload_text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(
                f"{_upload_name(upload.name)}: not UTF-8 text (byte {exc.start})"
            ) from None
        return upload

    def clean(self) -> dict[str, Any]:
        """Load the chosen template and check that its outputs stay in the job's folder."""
        data: dict[str, Any] = super().clean()
        value = data.get("template")
        blocks = data.get("blocks") or []
        if not value:
            return data
        try:
            if value == UPLOAD:
                self.loaded = self._load_upload(data.get("upload"))
            else:
                choice = self.templates[value]  # ChoiceField already refused anything else
                self.loaded = load_template(choice.ref, registry=self.registry)
                label = Path(choice.ref).name if choice.kind == "folder" else choice.ref
                self.reference = {"kind": choice.kind, "ref": choice.ref, "label": label}
        except TemplateError as exc:
            self.add_error("upload" if value == UPLOAD else "template", redact_paths(str(exc)))
            return data
        if self.loaded is not None:
            try:
                check_output_paths(self.loaded, blocks)
                if value == UPLOAD:
                    check_key_env(self.loaded, self.allowed_key_env)
            except TemplateError as exc:
                self.add_error("upload" if value == UPLOAD else "template", redact_paths(str(exc)))
        return data

    def _parse_upload(self, text: str, name: str) -> Template:
        check_upload_reads_no_file(text, name, list(self.registry.template_specs))
        # Parsed relative to an empty, nonexistent folder: an upload reads no server file.
        return parse_template(
            text,
            file=name,
            folder=Path("/nonexistent-exportkit-upload"),
            sinks=self.registry.sink_specs,
            templates=self.registry.template_specs,
        )

    def _load_upload(self, upload: Any) -> Template | None:
        if upload is None or self.upload_text is None:
            if "upload" not in self.errors:
                self.add_error("upload", "Choose a template file to upload.")
            return None
        name = _upload_name(upload.name)
        try:
            template = self._parse_upload(self.upload_text, name)
        except TemplateError:  # deep nesting too: the loader's parse_toml says so
            raise
        except Exception as exc:  # a crafted file must give a form error, never a 500
            logger.exception("exportkit: an uploaded template could not be read")
            raise TemplateError(
                f"could not be read as a template ({type(exc).__name__})", file=name
            ) from None
        self.reference = {"kind": UPLOAD, "ref": name, "label": name}
        return template
