"""Passwords out of any text: the one rule for what outputs record and messages show.

A password may sit in a URI's userinfo (``postgresql://me:pw@host/db``), in a query
parameter (``?password=pw``, whose name libpq percent-decodes), or in a libpq
``key=value`` string (``password='p w'``). :func:`scrub` replaces each with ``***``;
hiding too much is harmless, too little is not.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["HIDDEN", "scrub"]

#: What replaces a password.
HIDDEN = "***"

# user:password@ in a URI; greedy to the last '@' of the token, so a password holding an
# unencoded '@' is removed whole (hiding too much is harmless, too little is not).
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:@/?#]*):(?P<pw>\S*)@")
# The same as libpq reads it: the password runs from the ':' to the first '@' or '/', and
# may hold spaces or line breaks.
_LIBPQ_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):(?P<pw>[^@/]*)@")
# password=... as a URI query parameter or a libpq key=value pair (quoted or not), also
# sslpassword and the like. libpq decodes a query parameter's name, so the name may be
# percent-encoded (``%70assword``): each candidate is decoded before it is judged.
_KEY_VALUE = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_%])(?P<key>(?:[A-Za-z_]|%[0-9A-Fa-f]{2})+)\s*=\s*)"
    r"(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&#;]+)"
)
_PASSWORD_KEY = re.compile(r"[a-z_]*pass(?:word|wd)?", re.IGNORECASE)


def _hide_password_value(match: re.Match[str]) -> str:
    key = urllib.parse.unquote(match["key"])
    if _PASSWORD_KEY.fullmatch(key):
        return f"{match['head']}{HIDDEN}"
    return match[0]


def scrub(text: str) -> str:
    """``text`` with every password a URI or a ``key=value`` string could carry replaced by
    ``***``."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['head']}:{HIDDEN}@", text)
    text = _LIBPQ_URI_PASSWORD.sub(lambda m: f"{m['head']}:{HIDDEN}@", text)
    return _KEY_VALUE.sub(_hide_password_value, text)
