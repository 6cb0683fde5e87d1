"""Nested JSON → flat columns, and back. Pure functions; ``docs/flattening.md`` has the rules.

A *path* is a tuple of components: a ``str`` is an object key, an ``int`` a list index.
A column name spells a path after an optional prefix: keys are joined with the separator,
indexes are written ``[i]`` right after their parent (``config.choices[0].label``). Inside
a key, a backslash, the separator and a leading ``[`` are escaped with a backslash, so every
path has exactly one name and every name parses back to its path: two different paths of
the same value can never share a column. Only ``rename`` (or two prefixes, when a sink joins
several origins) can make names meet; :class:`ColumnRegistry` then raises an error that
names both paths.

Leaves are scalars, empty objects and lists (kept as values, so that nothing disappears),
lists in ``lists="json"`` mode, and whatever lies below ``max_depth``.

``lists="explode"`` turns each list element into its own row (see :func:`flatten_rows`);
the row then carries the element's position in an extra column ``<path>[#]``.

One name is ambiguous: with an empty prefix, a path that starts with an empty key
(``{"": …}``) is spelt like the path without it; the sinks' prefixes are not empty by
default, and where they are, :class:`ColumnRegistry` reports the clash.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeAlias

import attrs

from .records import JSONValue

#: One step of a path: an object key (``str``) or a list index (``int``).
Component: TypeAlias = str | int
#: Where a leaf sits inside a JSON value.
Path: TypeAlias = tuple[Component, ...]
#: What to do with lists.
ListMode: TypeAlias = Literal["json", "index", "explode"]

#: The suffix of the position column an exploded list adds, e.g. ``choices[#]``.
EXPLODE_MARK = "[#]"


class FlattenError(ValueError):
    """Two paths would produce the same column, or a column name cannot be parsed."""


@attrs.frozen(kw_only=True)
class FlattenOptions:
    """How nested JSON becomes columns (a template's ``[sinks.flatten]`` table).

    :param separator: joins the keys of a path; must not be empty or contain ``[`` or ``\\``.
    :param include: path globs (``*`` any text, ``?`` one character, everything else
        literal, brackets too), matched against the path without prefix
        (``config.choices[0].value``); when given, only leaves whose path or an ancestor's
        path matches are kept.
    :param exclude: path globs; a leaf whose path or an ancestor's path matches is dropped.
    :param rename: full column name → new name.
    :param max_depth: the number of path components after which the rest of a value is
        kept whole (as JSON text); ``None`` for no limit, ``1`` for top-level keys only.
    :param lists: ``"json"`` keeps a list whole, ``"index"`` gives each element its own
        column, ``"explode"`` gives each element its own row.
    """

    separator: str = attrs.field(default=".")
    include: tuple[str, ...] = attrs.field(default=())
    exclude: tuple[str, ...] = attrs.field(default=())
    rename: Mapping[str, str] = attrs.field(factory=dict)
    max_depth: int | None = attrs.field(default=None)
    lists: ListMode = "json"

    @separator.validator
    def _check_separator(self, _: Any, value: str) -> None:
        if not value or "[" in value or "\\" in value:
            raise ValueError("the separator must be non-empty and contain neither '[' nor '\\'")

    @max_depth.validator
    def _check_depth(self, _: Any, value: int | None) -> None:
        if value is not None and value < 0:
            raise ValueError("max_depth must be 0 or more")

    @include.validator
    @exclude.validator
    def _check_globs(self, attribute: Any, value: tuple[str, ...]) -> None:
        for index, pattern in enumerate(value):
            problem = glob_problem(pattern, self.separator)
            if problem:
                raise ValueError(f"{attribute.name}[{index}] {pattern!r}: {problem}")

    @rename.validator
    def _check_rename(self, _: Any, value: Mapping[str, str]) -> None:
        targets: dict[str, str] = {}
        for source, target in value.items():
            if not target:
                raise ValueError(f"rename {source!r}: the new name is empty")
            if target in targets:
                raise ValueError(
                    f"rename {targets[target]!r} and {source!r} both become {target!r};"
                    " two columns cannot share a name"
                )
            targets[target] = source


_INDEX_GLOB = re.compile(r"[0-9*?]+")


def glob_problem(pattern: str, separator: str = ".") -> str | None:
    """Why ``pattern`` cannot match any path, or None when it can.

    Paths are keys joined by the separator with list indexes in brackets
    (``config.choices[0].value``); a bracket in a key is written ``\\[``.
    """
    if not pattern:
        return "an empty glob matches nothing"
    if pattern.startswith(separator) or pattern.endswith(separator):
        return f"a glob cannot start or end with the separator {separator!r}"
    depth, start = 0, 0
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            if depth:
                return "brackets inside brackets"
            depth, start = 1, i + 1
        elif char == "]":
            if not depth:
                return "a ']' without its '['"
            if not _INDEX_GLOB.fullmatch(pattern[start:i]):
                return (
                    "brackets hold a list index ([0]) or a wildcard ([*]); write a bracket"
                    " that is part of a key as \\["
                )
            depth = 0
        i += 1
    if depth:
        return "a '[' without its ']'"
    return None


DEFAULT_OPTIONS = FlattenOptions()


# -- names ------------------------------------------------------------------------------------


def escape_key(key: str, separator: str) -> str:
    """Escape one object key so that it cannot be read as a separator or an index."""
    text = key.replace("\\", "\\\\").replace("[", "\\[")
    if separator in text:
        text = text.replace(separator, "\\" + separator)
    return text


def path_text(path: Path, separator: str = ".") -> str:
    """The text of ``path`` without prefix, e.g. ``config.choices[0].label``."""
    parts: list[str] = []
    for component in path:
        if isinstance(component, int):
            parts.append(f"[{component}]")
        else:
            if parts:
                parts.append(separator)
            parts.append(escape_key(component, separator))
    return "".join(parts)


def column_name(path: Path, separator: str = ".", prefix: str = "") -> str:
    """The column that holds the leaf at ``path``.

    :param prefix: put before the path, joined by the separator (a path starting with an
        index follows the prefix directly: ``prefix[0]``).
    """
    text = path_text(path, separator)
    if not prefix:
        return text
    if not path:
        return prefix
    if isinstance(path[0], int):
        return prefix + text
    return prefix + separator + text


def parse_column(name: str, separator: str = ".", prefix: str = "") -> Path:
    """The path a column name spells; the inverse of :func:`column_name`.

    :raises FlattenError: when ``name`` does not start with ``prefix`` or is not a
        well-formed name.
    """
    text = name
    if prefix:
        if name == prefix:
            return ()
        if name.startswith(prefix + separator):
            return _parse_path(name[len(prefix) + len(separator) :], separator, name, True)
        if name.startswith(prefix + "["):
            return _parse_path(name[len(prefix) :], separator, name, False)
        raise FlattenError(f"column {name!r} does not start with the prefix {prefix!r}")
    if not text:
        return ()
    return _parse_path(text, separator, name, not text.startswith("["))


def _parse_path(text: str, sep: str, name: str, key_first: bool) -> Path:
    path: list[Component] = []
    i, n = 0, len(text)
    want_key = key_first
    while True:
        if want_key:
            chars: list[str] = []
            while i < n:
                if text[i] == "\\" and i + 1 < n:
                    if text.startswith(sep, i + 1):
                        chars.append(sep)
                        i += 1 + len(sep)
                    else:
                        chars.append(text[i + 1])
                        i += 2
                    continue
                if text[i] == "[" or text.startswith(sep, i):
                    break
                chars.append(text[i])
                i += 1
            path.append("".join(chars))
        else:
            close = text.find("]", i)
            digits = text[i + 1 : close] if close > i else ""
            if not digits.isdigit():
                raise FlattenError(f"column {name!r}: bad list index at {text[i:]!r}")
            path.append(int(digits))
            i = close + 1
        if i >= n:
            return tuple(path)
        if text.startswith(sep, i):
            i += len(sep)
            want_key = True
        elif text[i] == "[":
            want_key = False
        else:
            raise FlattenError(f"column {name!r}: unexpected {text[i]!r} at {text[i:]!r}")


# -- selection ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _glob(patterns: tuple[str, ...]) -> re.Pattern[str]:
    # Only * and ? are wildcards: brackets are literal, since paths spell indexes [0].
    parts = []
    for pattern in patterns:
        parts.append(
            "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        )
    return re.compile("|".join(f"(?:{p})" for p in parts), re.S)


def _matches(path: Path, patterns: tuple[str, ...], separator: str) -> bool:
    glob = _glob(patterns)
    for depth in range(len(path), 0, -1):
        if glob.fullmatch(path_text(path[:depth], separator)):
            return True
    return False


def is_selected(path: Path, options: FlattenOptions) -> bool:
    """Whether a leaf at ``path`` passes ``include`` and ``exclude``."""
    sep = options.separator
    if options.include and not _matches(path, options.include, sep):
        return False
    return not (options.exclude and _matches(path, options.exclude, sep))


# -- flatten ----------------------------------------------------------------------------------


def iter_leaves(
    value: JSONValue, options: FlattenOptions = DEFAULT_OPTIONS
) -> list[tuple[Path, Any]]:
    """Every leaf of ``value`` with its path, in document order (lists as leaves in
    ``"json"`` and ``"explode"`` mode)."""
    out: list[tuple[Path, Any]] = []
    index_lists = options.lists == "index"
    depth_limit = options.max_depth

    def walk(node: Any, path: Path) -> None:
        if depth_limit is not None and len(path) >= depth_limit:
            out.append((path, node))
        elif isinstance(node, dict) and node:
            for key, child in node.items():
                walk(child, (*path, key))
        elif index_lists and isinstance(node, list) and node:
            for i, child in enumerate(node):
                walk(child, (*path, i))
        else:
            out.append((path, node))

    walk(value, ())
    return out


def flatten(
    value: JSONValue, options: FlattenOptions = DEFAULT_OPTIONS, prefix: str = ""
) -> dict[str, Any]:
    """Flatten one JSON value into ``{column: leaf}`` (``lists`` must not be ``"explode"``;
    use :func:`flatten_rows` for that).

    :raises FlattenError: when a rename makes two columns meet.
    """
    if options.lists == "explode":
        raise FlattenError("lists='explode' makes several rows; use flatten_rows")
    registry = ColumnRegistry()
    out: dict[str, Any] = {}
    for path, leaf in iter_leaves(value, options):
        if not is_selected(path, options):
            continue
        name = column_name(path, options.separator, prefix)
        name = options.rename.get(name, name)
        registry.claim(name, prefix or "value", path_text(path, options.separator))
        out[name] = leaf
    return out


def flatten_rows(
    value: JSONValue, options: FlattenOptions = DEFAULT_OPTIONS, prefix: str = ""
) -> list[dict[str, Any]]:
    """Flatten one JSON value into rows: one row, or with ``lists="explode"`` one row per
    combination of list elements (each list multiplies the rows; an empty list stays a
    ``[]`` leaf). An exploded list at ``p`` adds the column ``p[#]`` holding the element's
    index, so that :func:`unflatten_rows` can rebuild the value.
    """
    if options.lists != "explode":
        return [flatten(value, options, prefix)]
    sep = options.separator
    limit = options.max_depth

    def rows(node: Any, path: Path, in_list: bool = False) -> list[dict[Path, Any]]:
        if limit is not None and len(path) >= limit:
            return [{path: node}]
        if isinstance(node, dict) and node:
            acc: list[dict[Path, Any]] = [{}]
            for key, child in node.items():
                child_rows = rows(child, (*path, key))
                acc = [{**a, **b} for a in acc for b in child_rows]
            return acc
        # A list right inside an exploded list would need a second position column at the
        # same path; it is kept whole instead.
        if isinstance(node, list) and node and not in_list:
            out: list[dict[Path, Any]] = []
            for i, child in enumerate(node):
                for row in rows(child, path, True):
                    out.append({(*path, EXPLODE_MARK): i, **row})
            return out
        return [{path: node}]

    result: list[dict[str, Any]] = []
    for raw in rows(value, ()):
        row: dict[str, Any] = {}
        for path, leaf in raw.items():
            if path and path[-1] == EXPLODE_MARK:
                base = path[:-1]
                if not is_selected(base, options):
                    continue
                name = column_name(base, sep, prefix) + EXPLODE_MARK
            else:
                if not is_selected(path, options):
                    continue
                name = column_name(path, sep, prefix)
            row[options.rename.get(name, name)] = leaf
        result.append(row)
    return result


# -- unflatten ------------------------------------------------------------------------------


_MISSING = object()


def assemble(pairs: Iterable[tuple[Path, Any]]) -> Any:
    """The JSON value whose leaves are ``(path, leaf)`` pairs, in the order given (an empty
    path is the whole value); the inverse of flattening, once names are parsed to paths."""
    root: Any = _MISSING
    for path, leaf in pairs:
        if not path:
            root = leaf
            continue
        if root is _MISSING or not isinstance(root, dict | list):
            root = [] if isinstance(path[0], int) else {}
        node = root
        for depth, component in enumerate(path):
            last = depth == len(path) - 1
            nxt = path[depth + 1] if not last else None
            if isinstance(component, int):
                while len(node) <= component:
                    node.append(_MISSING)
                if last:
                    node[component] = leaf
                else:
                    if not isinstance(node[component], dict | list):
                        node[component] = [] if isinstance(nxt, int) else {}
                    node = node[component]
            else:
                if last:
                    node[component] = leaf
                else:
                    child = node.get(component)
                    if not isinstance(child, dict | list):
                        child = node[component] = [] if isinstance(nxt, int) else {}
                    node = child
    return None if root is _MISSING else root


def unflatten(
    columns: Mapping[str, Any], options: FlattenOptions = DEFAULT_OPTIONS, prefix: str = ""
) -> JSONValue:
    """Rebuild the JSON value of ``{column: leaf}`` as :func:`flatten` made it (without
    ``include``, ``exclude`` or ``rename``, which drop or change names on purpose)."""
    sep = options.separator
    value: JSONValue = assemble(
        (parse_column(name, sep, prefix), leaf) for name, leaf in columns.items()
    )
    return value


def with_positions(path: Path, positions: Mapping[Path, int]) -> Path:
    """``path`` with the index of every exploded list on the way down put back, outermost
    first: an exploded row names a list's position in a column of its own.

    :param positions: the position of each exploded list, by the list's path.
    """
    if not positions:
        return path
    full: list[Component] = []
    for depth in range(len(path) + 1):
        head = path[:depth]
        if head in positions:
            full.append(positions[head])
        if depth < len(path):
            full.append(path[depth])
    return tuple(full)


def unflatten_rows(
    rows: Iterable[Mapping[str, Any]], options: FlattenOptions = DEFAULT_OPTIONS, prefix: str = ""
) -> JSONValue:
    """Rebuild the JSON value of the rows :func:`flatten_rows` made."""
    sep = options.separator
    pairs: list[tuple[Path, Any]] = []
    for row in rows:
        positions: dict[Path, int] = {}
        leaves: list[tuple[Path, Any]] = []
        for name, leaf in row.items():
            if name.endswith(EXPLODE_MARK):
                positions[parse_column(name[: -len(EXPLODE_MARK)], sep, prefix)] = leaf
            else:
                leaves.append((parse_column(name, sep, prefix), leaf))
        pairs.extend((with_positions(path, positions), leaf) for path, leaf in leaves)
    value: JSONValue = assemble(pairs)
    return value


# -- collisions -------------------------------------------------------------------------------


class ColumnRegistry:
    """Every column name of a table with who produced it; a second producer is an error.

    Sinks register their fixed columns first and every flattened path as it first appears,
    so a collision is reported with both origins, e.g. ``session_json: 'score'`` and
    ``result: 'score'``.
    """

    __slots__ = ("owners",)

    def __init__(self) -> None:
        self.owners: dict[str, tuple[str, str]] = {}

    def claim(self, name: str, origin: str, path: str) -> None:
        """Record that ``origin``'s ``path`` is written to column ``name``.

        :raises FlattenError: when another origin or path already writes there.
        """
        owner = self.owners.get(name)
        if owner is None:
            self.owners[name] = (origin, path)
        elif owner != (origin, path):
            raise FlattenError(
                f"two values would share the column {name!r}: {owner[0]} {owner[1]!r} and"
                f" {origin} {path!r}; change a prefix, the separator or a rename"
            )


class Flattener:
    """Flattens many values of one origin with the same options, remembering each path's
    column (flattening the same shapes over and over is then mostly dictionary look-ups).

    :param options: the flattening rules.
    :param prefix: the origin's column prefix.
    :param origin: the origin's name for messages (``result_json``).
    :param registry: where new columns are claimed.
    """

    def __init__(
        self, options: FlattenOptions, prefix: str, origin: str, registry: ColumnRegistry
    ) -> None:
        self.options = options
        self.prefix = prefix
        self.origin = origin
        self.registry = registry
        self.sort_keys: dict[str, tuple[Any, ...]] = {}
        #: the path of every column made (an exploded list's position column: the list's
        #: path with :data:`EXPLODE_MARK` after it)
        self.paths: dict[str, Path] = {}
        self._names: dict[Path, str | None] = {}

    def _name(self, path: Path, explode_mark: bool = False) -> str | None:
        key = (*path, EXPLODE_MARK) if explode_mark else path
        try:
            return self._names[key]
        except KeyError:
            pass
        opts = self.options
        name: str | None = None
        if is_selected(path, opts):
            name = column_name(path, opts.separator, self.prefix)
            if explode_mark:
                name += EXPLODE_MARK
            name = opts.rename.get(name, name)
            shown = path_text(path, opts.separator) + (EXPLODE_MARK if explode_mark else "")
            self.registry.claim(name, self.origin, shown)
            self.paths[name] = key
            self.sort_keys[name] = (
                *((0, c) if isinstance(c, int) else (1, c) for c in path),
                (-1, int(explode_mark)),
            )
        self._names[key] = name
        return name

    def flatten(self, value: JSONValue) -> list[dict[str, Any]]:
        """The rows of ``value``: one, or several with ``lists="explode"``."""
        if self.options.lists == "explode":
            # a prefix of its own: without one, a path that starts with an empty key would
            # be spelt like the value itself (see the module's docstring)
            raw_rows = flatten_rows(value, attrs.evolve(self.options, rename={}), "_")
            out: list[dict[str, Any]] = []
            for raw in raw_rows:
                row: dict[str, Any] = {}
                for text, leaf in raw.items():
                    mark = text.endswith(EXPLODE_MARK)
                    path = parse_column(
                        text[: -len(EXPLODE_MARK)] if mark else text, self.options.separator, "_"
                    )
                    name = self._name(path, mark)
                    if name is not None:
                        row[name] = leaf
                out.append(row)
            return out
        row = {}
        for path, leaf in iter_leaves(value, self.options):
            name = self._name(path)
            if name is not None:
                row[name] = leaf
        return [row]
