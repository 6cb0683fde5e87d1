"""Pseudonymisation: keyed HMAC pseudonyms, dropped and coarsened participant fields.

A builtin plugin: it implements ``exportkit_prepare_graph`` and rewrites the participant
records of the graph before any sink sees them, so every output (fixture zip, CSV, Parquet,
third-party sinks) gets the same pseudonyms. The key comes from an environment variable
named in the template and is never written anywhere; the manifest records a fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .errors import TemplateError
from .graph import RecordGraph
from .hookspecs import hookimpl
from .records import Participant

PseudonymisedField = Literal["unique_hash", "participant_id_url"]
DroppedField = Literal["access_info", "country_code", "participant_id_url"]

#: A key shorter than this is refused: HMAC pseudonyms are only as strong as the key.
MIN_KEY_LENGTH = 16


@attrs.frozen(kw_only=True)
class PrivacyTable:
    """``[privacy]``: pseudonymise or drop participant identifiers in every output.

    :param pseudonymise: participant fields replaced by a keyed HMAC-SHA256 pseudonym (64 hex
        digits); the same key gives the same pseudonym in every export.
    :param drop: participant fields emptied in every output (null where MUSCLE allows it,
        else the empty string).
    :param key_env: the environment variable that holds the key (at least 16 characters);
        required with ``pseudonymise``. The key is never written; the manifest records a
        fingerprint.
    :param coarsen_country: ``"continent"`` replaces ``country_code`` by a continent code
        (AF, AN, AS, EU, NA, OC, SA; '' stays ''); ``"no"`` keeps it.
    :param coarsen_user_agent: replace ``access_info`` by the browser and system family
        (``Chrome / Android``).
    """

    pseudonymise: tuple[PseudonymisedField, ...] = ()
    drop: tuple[DroppedField, ...] = ()
    key_env: str | None = None
    coarsen_country: Literal["no", "continent"] = "no"
    coarsen_user_agent: bool = False

    @property
    def is_active(self) -> bool:
        """Whether the table changes anything."""
        return bool(
            self.pseudonymise
            or self.drop
            or self.coarsen_country != "no"
            or self.coarsen_user_agent
        )


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible name of a key, for manifests: tells two keys apart without
    revealing either."""
    return hmac.new(key, b"aml_exportkit key fingerprint", hashlib.sha256).hexdigest()[:16]


def pseudonym(key: bytes, field: str, value: str) -> str:
    """The pseudonym of ``value`` in ``field``: HMAC-SHA256 over the field name and the value,
    so equal texts in different fields get different pseudonyms."""
    message = field.encode() + b"\0" + value.encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def read_key(table: PrivacyTable, template_file: str) -> bytes | None:
    """The key from the environment, checked.

    :raises TemplateError: when pseudonymisation is asked for without a usable key.
    """
    if not table.pseudonymise:
        return None
    if not table.key_env:
        raise TemplateError(
            "pseudonymise needs key_env: the name of an environment variable holding the key",
            file=template_file,
            key_path="privacy.key_env",
        )
    raw = os.environ.get(table.key_env)
    if not raw:
        raise TemplateError(
            f"the environment variable {table.key_env} is not set (or empty)",
            file=template_file,
            key_path="privacy.key_env",
        )
    if len(raw) < MIN_KEY_LENGTH:
        raise TemplateError(
            f"the key in {table.key_env} has {len(raw)} characters; use at least {MIN_KEY_LENGTH}",
            file=template_file,
            key_path="privacy.key_env",
        )
    return raw.encode("utf-8")


def check_table(table: PrivacyTable, template_file: str) -> None:
    """Refuse contradictory settings.

    :raises TemplateError: naming the key.
    """
    both = set(table.pseudonymise) & set(table.drop)
    if both:
        raise TemplateError(
            f"{', '.join(sorted(both))} is both pseudonymised and dropped; choose one",
            file=template_file,
            key_path="privacy.drop",
        )
    if "access_info" in table.drop and table.coarsen_user_agent:
        raise TemplateError(
            "access_info is dropped, so it cannot be coarsened too",
            file=template_file,
            key_path="privacy.coarsen_user_agent",
        )
    if "country_code" in table.drop and table.coarsen_country != "no":
        raise TemplateError(
            "country_code is dropped, so it cannot be coarsened too",
            file=template_file,
            key_path="privacy.coarsen_country",
        )


# -- coarsening ---------------------------------------------------------------------------

_CONTINENTS = {
    "AF": "ao bf bi bj bw cd cf cg ci cm cv dj dz eg eh er et ga gh gm gn gq gw ke km lr ls ly "
    "ma mg ml mr mu mw mz na ne ng re rw sc sd sh sl sn so ss st sz td tg tn tz ug yt za zm zw",
    "AN": "aq bv gs hm tf",
    "AS": "ae af am az bd bh bn bt cc cn cx cy ge hk id il in io iq ir jo jp kg kh kp kr kw kz "
    "la lb lk mm mn mo mv my np om ph pk ps qa sa sg sy th tj tl tm tr tw uz vn ye",
    "EU": "ad al at ax ba be bg by ch cz de dk ee es fi fo fr gb gg gi gr hr hu ie im is it je "
    "li lt lu lv mc md me mk mt nl no pl pt ro rs ru se si sj sk sm ua va xk",
    "NA": "ag ai aw bb bl bm bq bs bz ca cr cu cw dm do gd gl gp gt hn ht jm kn ky lc mf mq ms "
    "mx ni pa pm pr sv sx tc tt us vc vg vi",
    "OC": "as au ck fj fm gu ki mh mp nc nf nr nu nz pf pg pn pw sb tk to tv um vu wf ws",
    "SA": "ar bo br cl co ec fk gf gy pe py sr uy ve",
}
_CONTINENT_OF = {code: cont for cont, codes in _CONTINENTS.items() for code in codes.split()}


def coarsen_country(code: str) -> str:
    """The continent of an ISO 3166 alpha-2 code (any case); '' for '' and ``??`` for an
    unknown code, so that a rare code cannot single a participant out."""
    if not code:
        return ""
    return _CONTINENT_OF.get(code.lower(), "??")


_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(e|A|iOS)?/")),
    ("Opera", re.compile(r"\b(OPR|Opera)/")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/")),
    ("Firefox", re.compile(r"\b(Firefox|FxiOS)/")),
    ("Chrome", re.compile(r"\b(Chrome|CriOS|Chromium)/")),
    ("Safari", re.compile(r"\bSafari/")),
)
_SYSTEMS = (
    ("Android", re.compile(r"\bAndroid\b")),
    ("iOS", re.compile(r"\b(iPhone|iPad|iPod)\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)


def coarsen_user_agent(agent: str | None) -> str | None:
    """``Browser / System`` from a User-Agent string (``other`` where unknown)."""
    if agent is None:
        return None
    if not agent:
        return ""
    browser = next((name for name, rx in _BROWSERS if rx.search(agent)), "other")
    system = next((name for name, rx in _SYSTEMS if rx.search(agent)), "other")
    return f"{browser} / {system}"


# -- the transform -----------------------------------------------------------------------


def transform_participant(
    participant: Participant, table: PrivacyTable, key: bytes | None
) -> Participant:
    """``participant`` with the table's rules applied."""
    changes: dict[str, Any] = {}
    for field in table.pseudonymise:
        value = getattr(participant, field)
        if value is not None and key is not None:
            changes[field] = pseudonym(key, field, value)
    for dropped in table.drop:
        changes[dropped] = "" if dropped == "country_code" else None
    if table.coarsen_country == "continent":
        changes["country_code"] = coarsen_country(participant.country_code)
    if table.coarsen_user_agent:
        changes["access_info"] = coarsen_user_agent(participant.access_info)
    return attrs.evolve(participant, **changes) if changes else participant


def apply(graph: RecordGraph, table: PrivacyTable, template_file: str) -> Mapping[str, Any]:
    """Rewrite the graph's participants; return what the manifest should record."""
    check_table(table, template_file)
    key = read_key(table, template_file)
    graph.replace_table(
        "participant",
        {pk: transform_participant(p, table, key) for pk, p in graph.participants.items()},
    )
    return {
        "pseudonymised": list(table.pseudonymise),
        "dropped": list(table.drop),
        "coarsened": [
            name
            for name, on in (
                ("country_code", table.coarsen_country != "no"),
                ("access_info", table.coarsen_user_agent),
            )
            if on
        ],
        "method": "HMAC-SHA256 over field name and value" if key else None,
        "key_env": table.key_env if key else None,
        "key_fingerprint": key_fingerprint(key) if key else None,
    }


@hookimpl
def exportkit_prepare_graph(graph: RecordGraph, template: Any) -> Mapping[str, Any] | None:
    """Apply the template's ``[privacy]`` table to the graph."""
    table: PrivacyTable = template.privacy
    if not table.is_active:
        return None
    return {"privacy": apply(graph, table, template.file)}
