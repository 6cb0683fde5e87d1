"""Bad-input corpus, part 3: where outputs may go, and what they may replace.

Outputs stay inside ``--out``; ``{block}`` only ever becomes a valid slug; two sinks are
never one file; only regular files are replaced; a failed commit leaves every target as
it was; cleanup never hides the first error. docs/bad-input.md lists each case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from aml_exportkit.atomic import OutputSet
from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_SINK, EXIT_SOURCE, EXIT_TEMPLATE, EXIT_USAGE, SinkError
from aml_exportkit.pipeline import leaves_out

ZIP = "head/block_tafc-dvorak.zip"


def sinks(*entries: tuple[str, str]) -> str:
    return "".join(f'[[sinks]]\ntype = "{kind}"\npath = {path!r}\n' for kind, path in entries)


def run(tmp_path: Path, text: str, *args: str) -> Any:
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")
    return CliRunner().invoke(cli, ["run", str(template), *args])


def one_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert "internal error" not in result.stderr
    return lines[0]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- 1. outputs stay inside --out -----------------------------------------------------------

ESCAPES = {
    "parent": "../escaped/x.zip",
    "parent after a folder": "a/../../escaped/x.zip",
    "dot, then parent": "./../escaped.zip",
    "parent after {block}": "{block}/../../escaped.zip",
    "home": "~/x.zip",
    "another user's home": "~root/x.zip",
    "absolute": "/ABSOLUTE/x.zip",
    "two slashes": "//x.zip",
    "the folder itself": "sub/..",
    "a folder": "sub/",
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_a_sink_path_that_leaves_out_is_refused_before_reading(case: str, tmp_path: Path) -> None:
    path = ESCAPES[case].replace("/ABSOLUTE", str(tmp_path / "abs"))
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    text = sinks(
        ("csv-long", "{block}.csv" if "{block}" in path else "fine.csv"), ("csv-long", path)
    )
    # The source does not exist: the refusal comes before anything is read.
    result = run(tmp_path, text, "--source", str(tmp_path / "missing.zip"), "--out", str(out))
    assert result.exit_code == EXIT_TEMPLATE, result.output
    line = one_line(result)
    assert "sinks[1].path" in line, line
    assert files_under(tmp_path) == ["t.toml", "work", "work/out"]


def test_dot_dot_that_stays_inside_out_is_fine(reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(
        tmp_path,
        sinks(("csv-long", "sub/../r.csv")),
        "--source",
        str(reference_dir / ZIP),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert files_under(out) == ["manifest.json", "r.csv"]


def test_without_out_paths_are_relative_to_the_template(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    template = folder / "t.toml"
    template.write_text(sinks(("csv-long", "r.csv")), encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(cli, ["run", str(template), "--source", str(reference_dir / ZIP)])
    assert result.exit_code == 0, result.output
    assert files_under(folder) == ["manifest.json", "r.csv", "t.toml"]
    assert files_under(elsewhere) == []


@pytest.mark.parametrize(
    ("paths", "manifest_in"),
    [
        (("{t}/x/a.csv", "{t}/y/b.csv"), None),  # share only tmp_path: nobody named it
        (("{t}/x/a.csv", "{t}/x/sub/b.csv"), "x"),  # the folder of one output
        (("one/a.csv", "two/b.csv"), "templates"),  # relative: the template's folder
        (("d/one/a.csv", "d/two/b.csv"), "templates/d"),  # inside the template's folder
    ],
    ids=["unrelated folders", "one output's folder", "the template's", "inside it"],
)
def test_without_out_the_manifest_goes_only_where_the_template_names(
    paths: tuple[str, str], manifest_in: str | None, reference_dir: Path, tmp_path: Path
) -> None:
    # the manifest and codebook go into the folder the outputs share; for outputs in
    # unrelated folders that is a folder no one asked to write into (as root, even '/')
    folder = tmp_path / "templates"
    folder.mkdir()
    template = folder / "t.toml"
    filled = [p.replace("{t}", str(tmp_path)) for p in paths]
    text = "codebook = true\n" + sinks(("csv-long", filled[0]), ("csv-wide", filled[1]))
    template.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(template), "--source", str(reference_dir / ZIP)])
    if manifest_in is None:
        assert result.exit_code == EXIT_TEMPLATE, result.output
        assert "share no folder the template names" in one_line(result)
        assert files_under(tmp_path) == ["templates", "templates/t.toml"]
        return
    assert result.exit_code == 0, result.output
    assert (tmp_path / manifest_in / "manifest.json").is_file()
    assert (tmp_path / manifest_in / "codebook.md").is_file()


def test_run_help_says_where_outputs_go() -> None:
    result = CliRunner().invoke(cli, ["run", "--help"])
    text = " ".join(result.output.split())
    assert "Without --out, sink paths are relative to the template's folder" in text
    assert "builtin template: the current folder" in text
    assert "stay inside it" in text


def test_a_symbolic_link_inside_out_cannot_lead_out(reference_dir: Path, tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere)
    result = run(
        tmp_path,
        sinks(("csv-long", "link/x.csv")),
        "--source",
        str(reference_dir / ZIP),
        "--out",
        str(out),
    )
    assert result.exit_code == EXIT_TEMPLATE, result.output
    assert "symbolic link" in one_line(result)
    assert list(elsewhere.iterdir()) == []


BAD_SLUGS = ["../../x", "a/b", "..", ".", "x y", "/etc", "~", "é", ""]


@pytest.mark.parametrize("slug", BAD_SLUGS)
def test_block_option_must_be_a_slug(slug: str, reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(
        tmp_path,
        sinks(("csv-long", "{block}/r.csv")),
        "--source",
        str(reference_dir / ZIP),
        "--block",
        slug,
        "--out",
        str(out),
    )
    assert result.exit_code == EXIT_TEMPLATE, result.output
    assert "--block" in one_line(result)
    assert files_under(tmp_path) == ["t.toml"]


def test_template_blocks_must_be_slugs(reference_dir: Path, tmp_path: Path) -> None:
    text = '[source]\nblocks = ["ok", "../up"]\n' + sinks(("csv-long", "r.csv"))
    result = run(tmp_path, text, "--source", str(reference_dir / ZIP), "--out", str(tmp_path / "o"))
    assert result.exit_code == EXIT_TEMPLATE, result.output
    assert "source.blocks[1]" in one_line(result)


@pytest.mark.parametrize("name", ["my export (1).zip", "..zip", "a b.zip"])
def test_a_slug_guessed_from_a_zip_name_must_be_a_slug(
    name: str, reference_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / name
    shutil.copy(reference_dir / ZIP, source)
    out = tmp_path / "out"
    result = run(
        tmp_path, sinks(("csv-long", "{block}.csv")), "--source", str(source), "--out", str(out)
    )
    assert result.exit_code == EXIT_SOURCE, result.output
    line = one_line(result)
    assert "not a valid slug" in line
    assert "--block" in line
    assert not out.exists()


@pytest.mark.pg
def test_a_slug_stored_in_the_database_must_be_a_slug(
    pg_database: Any, reference_dir: Path, tmp_path: Path
) -> None:
    import psycopg

    dsn = pg_database(reference_dir / "head" / "muscle_head.sql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE experiment_block SET slug = '../../evil' WHERE id = 3")
    out = tmp_path / "out"
    # hooked-eurovision now names the experiment, whose one block has the bad slug
    result = run(
        tmp_path,
        sinks(("csv-long", "{block}/r.csv")),
        "--source",
        dsn,
        "--block",
        "hooked-eurovision",
        "--out",
        str(out),
    )
    assert result.exit_code == EXIT_SOURCE, result.output
    line = one_line(result)
    assert "block 3" in line
    assert "'../../evil'" in line
    assert files_under(tmp_path) == ["t.toml"]


@pytest.mark.parametrize("path", ["{block}/r.csv", "r.csv"])
def test_a_block_named_twice_is_one_block(path: str, reference_dir: Path, tmp_path: Path) -> None:
    # with {block}, each name was a unit of its own: the same files twice, refused as
    # "two outputs of this run write the same file" after a full read
    out = tmp_path / "out"
    slug = "tafc-dvorak"
    args = ("--source", str(reference_dir / ZIP), "--block", slug, "--block", slug)
    result = run(tmp_path, sinks(("csv-long", path)), *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert files_under(out) == sorted(
        ["manifest.json", *([slug] if "/" in path else []), path.replace("{block}", slug)]
    )


def test_a_zip_holds_one_block_under_one_slug(reference_dir: Path, tmp_path: Path) -> None:
    for path in ("{block}.csv", "all.csv"):
        result = run(
            tmp_path,
            sinks(("csv-long", path)),
            "--source",
            str(reference_dir / ZIP),
            "--block",
            "tafc-dvorak",
            "--block",
            "other",
            "--out",
            str(tmp_path / "out"),
        )
        assert result.exit_code == EXIT_SOURCE, (path, result.output)
        assert "one block" in one_line(result)
        assert not (tmp_path / "out").exists()


# -- 2. one file per output; only regular files replaced ------------------------------------


@pytest.mark.parametrize(
    "second", ["r.zip", "sub/../r.zip", "./r.zip", "link.zip", "linked-folder/r.zip"]
)
def test_two_sinks_that_are_one_file(second: str, reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.zip").write_bytes(b"old")
    (out / "link.zip").symlink_to(out / "r.zip")
    (out / "linked-folder").symlink_to(out)
    result = run(
        tmp_path,
        sinks(("fixture-json", "r.zip"), ("csv-long", second)),
        "--source",
        str(reference_dir / ZIP),
        "--out",
        str(out),
    )
    assert result.exit_code == EXIT_SINK, result.output
    assert "same file" in one_line(result)
    assert (out / "r.zip").read_bytes() == b"old"
    assert files_under(out) == ["link.zip", "linked-folder", "r.zip"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("r.csv", "R.csv"),
        ("caf\u00e9.csv", "cafe\u0301.csv"),  # composed and decomposed: one name on macOS
        ("D/z.csv", "d/Z.csv"),
        ("manifest.json", "MANIFEST.JSON"),  # a sink and the manifest
        ("d", "D/z.csv"),  # one output the folder of another, but for the case
    ],
    ids=["case", "unicode form", "case in a folder", "the manifest", "a folder"],
)
def test_two_outputs_that_one_file_system_holds_as_one(
    first: str, second: str, reference_dir: Path, tmp_path: Path
) -> None:
    # On a disk that ignores case and Unicode form the second would replace the first:
    # refused everywhere, so that the verdict does not depend on the disk.
    out = tmp_path / "out"
    sinks_text = (
        sinks(("csv-wide", second))
        if first == "manifest.json"
        else sinks(("csv-long", first), ("csv-wide", second))
    )
    result = run(tmp_path, sinks_text, "--source", str(reference_dir / ZIP), "--out", str(out))
    assert result.exit_code == EXIT_SINK, result.output
    line = one_line(result)
    assert "same file" in line or "the folder of another" in line
    assert not out.exists()


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_only_regular_files_are_replaced(kind: str, reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / "x.csv"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    result = run(
        tmp_path,
        sinks(("csv-long", "x.csv")),
        "--source",
        str(reference_dir / ZIP),
        "--out",
        str(out),
    )
    assert result.exit_code == EXIT_SINK, result.output
    assert f"a {kind}" in one_line(result).lower()
    assert target.is_fifo() if kind == "fifo" else target.is_dir()
    assert files_under(out) == ["x.csv"]


# -- 3. all or nothing; cleanup never hides the first error ---------------------------------


@pytest.mark.parametrize("order", [("a.csv", "d", "d/z.csv"), ("a.csv", "d/z.csv", "d")])
def test_a_file_and_a_folder_of_the_same_name(
    order: tuple[str, ...], reference_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.csv").write_text("old")
    result = run(
        tmp_path,
        sinks(*(("csv-long", p) for p in order)),
        "--source",
        str(reference_dir / ZIP),
        "--out",
        str(out),
    )
    assert result.exit_code == EXIT_SINK, result.output
    assert "folder of another" in one_line(result)
    assert files_under(out) == ["a.csv"]
    assert (out / "a.csv").read_text() == "old"


def test_a_failed_rename_puts_every_target_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = {"a.csv": "old a", "c.csv": "old c"}
    for name, text in old.items():
        (tmp_path / name).write_text(text)
    outputs = OutputSet()
    for name in ("a.csv", "b.csv", "c.csv", "d.csv"):
        outputs.create(tmp_path / name).write_text(f"new {name}")
    real_replace = os.replace

    def failing(src: Any, dst: Any) -> None:
        if Path(dst).name == "d.csv":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr("aml_exportkit.atomic.os.replace", failing)
    with pytest.raises(SinkError, match="No space left") as caught:
        outputs.commit()
    assert "d.csv" in str(caught.value)
    monkeypatch.setattr("aml_exportkit.atomic.os.replace", real_replace)
    outputs.discard()
    assert files_under(tmp_path) == ["a.csv", "c.csv"]
    assert {n: (tmp_path / n).read_text() for n in old} == old


def test_cleanup_that_fails_does_not_hide_the_first_error(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import slow_sink_module
    from aml_exportkit.pipeline import run_export
    from aml_exportkit.plugins import get_plugin_manager, load_registry
    from aml_exportkit.template.load import parse_template

    manager = get_plugin_manager(load_entrypoints=False, plugins=[slow_sink_module])
    template = parse_template(
        sinks(("csv-long", "a.csv"), ("failing", "b.txt")),
        file="t.toml",
        folder=tmp_path,
        sinks=load_registry(manager).sink_specs,
    )

    def refuse(self: Path, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    monkeypatch.setattr(Path, "rmdir", refuse)
    with pytest.raises(SinkError, match="No space left"):
        run_export(
            template,
            source=str(reference_dir / ZIP),
            out_dir=tmp_path / "out",
            plugin_manager=manager,
        )


@pytest.mark.parametrize(
    ("escape", "shown"),
    [("\\u0000", "NUL"), ("\\n", "'\\n'"), ("\\t", "'\\t'"), ("\\u007f", "'\\x7f'")],
    ids=["nul", "line break", "tab", "delete"],
)
def test_a_control_character_in_a_sink_path(
    escape: str, shown: str, reference_dir: Path, tmp_path: Path
) -> None:
    # a NUL ends the path for the OS; a line break or a tab makes a name no one-line
    # message (nor a listing) can show: the same rule as the export page's
    text = f'[[sinks]]\ntype = "csv-long"\npath = "a{escape}b.csv"\n'
    for out in ((), ("--out", str(tmp_path / "new" / "out"))):
        result = run(tmp_path, text, "--source", str(reference_dir / ZIP), *out)
        assert result.exit_code == EXIT_TEMPLATE, result.output
        assert "sinks[0].path" in one_line(result)
        assert shown in one_line(result)
        assert files_under(tmp_path) == ["t.toml"]


def test_a_control_character_in_the_manifest_name(reference_dir: Path, tmp_path: Path) -> None:
    text = 'manifest_name = "m\\n.json"\n' + sinks(("csv-long", "r.csv"))
    result = run(tmp_path, text, "--source", str(reference_dir / ZIP), "--out", str(tmp_path / "o"))
    assert result.exit_code == EXIT_TEMPLATE, result.output
    assert "manifest_name" in one_line(result)
    assert files_under(tmp_path) == ["t.toml"]


@pytest.mark.parametrize("length", [222, 246, 255, 300])
def test_a_file_name_too_long(length: int, reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    name = "x" * (length - 4) + ".csv"
    result = run(
        tmp_path, sinks(("csv-long", name)), "--source", str(reference_dir / ZIP), "--out", str(out)
    )
    assert result.exit_code == EXIT_SINK, result.output
    assert "the file name has" in one_line(result)
    assert files_under(tmp_path) == ["t.toml"]  # no empty folder left behind


def test_the_longest_file_name_that_fits(reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    name = "x" * 216 + ".csv"  # 220 bytes, and the temporary name's 35 on top
    result = run(
        tmp_path, sinks(("csv-long", name)), "--source", str(reference_dir / ZIP), "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert (out / name).is_file()


def test_an_unwritable_out_is_a_clear_error(reference_dir: Path, tmp_path: Path) -> None:
    # A file where --out's folder should be: the same failure a read-only folder gives
    # an ordinary user (and testable as root, who may write into read-only folders).
    (tmp_path / "blocked").write_text("a file")
    result = run(
        tmp_path,
        sinks(("csv-long", "a.csv")),
        "--source",
        str(reference_dir / ZIP),
        "--out",
        str(tmp_path / "blocked" / "out"),
    )
    assert result.exit_code in (EXIT_SINK, EXIT_USAGE), result.output
    one_line(result)
    assert files_under(tmp_path) == ["blocked", "t.toml"]


def test_a_builtin_template_without_out_writes_to_the_current_folder(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["run", "muscle-classic:long", "--source", str(reference_dir / ZIP)]
    )
    assert result.exit_code == 0, result.output
    # the builtin names its CSV and manifest after itself and the block
    assert files_under(tmp_path) == [
        "tafc-dvorak-muscle-classic-long.csv",
        "tafc-dvorak-muscle-classic-long.manifest.json",
    ]


SEGMENTS = ["a", "b", "..", ".", "{block}", "", "~", "x.csv"]


@given(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=8), st.booleans())
def test_a_path_the_rule_lets_through_stays_inside(parts: list[str], absolute: bool) -> None:
    """Whatever the segments, a path that passes the --out rule lands inside --out once
    ``{block}`` became any slug (slugs hold no '/' or '.')."""
    raw = ("/" if absolute else "") + "/".join(parts)
    if leaves_out(raw) is not None:
        return
    for slug in ("b", "x-1", "__"):
        joined = os.path.normpath(os.path.join("/out", raw.replace("{block}", slug)))
        assert joined.startswith("/out/"), (raw, joined)


@pytest.fixture
def read_only_out(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write in: mode 0555, and for root (whom modes do not stop)
    the immutable attribute, where the file system has it."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        done = subprocess.run([chattr, "+i", str(folder)], check=False) if chattr else None
        if done is None or done.returncode != 0:
            folder.chmod(0o755)
            pytest.skip("root, and no immutable attribute here: a read-only folder cannot be made")
        immutable = True
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("sink", ["fixture-json", "csv-long", "csv-wide", "parquet"])
@pytest.mark.parametrize("path", ["x.out", "sub/x.out"])
def test_a_read_only_out(sink: str, path: str, read_only_out: Path, reference_dir: Path) -> None:
    result = run(
        read_only_out.parent,
        sinks((sink, path)),
        "--source",
        str(reference_dir / ZIP),
        "--out",
        str(read_only_out),
    )
    assert result.exit_code == EXIT_SINK, result.output
    line = one_line(result)
    assert "not permitted" in line or "denied" in line, line
    assert list(read_only_out.iterdir()) == []


# -- partitioned Parquet: a slug from a database row becomes a folder name -------------------

PARTITIONED = (
    '[source]\nblocks = ["tafc-dvorak"]\n'
    '[[sinks]]\ntype = "parquet"\npath = "ds"\npartition_by = ["experiment", "block"]\n'
)


@pytest.mark.parametrize(
    ("slug", "refused"),
    [
        # every Hive reader reads this folder name, encoded or not, back as null
        ("__HIVE_DEFAULT_PARTITION__", True),
        ("", True),
        # not slugs, but percent-encoded: inside --out, and read back as stored
        ("../../x", False),
        ("a/b=c", False),
    ],
    ids=["the null partition's name", "empty", "climbing", "slash and equals"],
)
def test_a_partition_value_reads_back_as_it_was(
    slug: str, refused: bool, pg_database: Any, reference_dir: Path, tmp_path: Path
) -> None:
    import psycopg
    import pyarrow.dataset as ds

    dsn = pg_database(reference_dir / "head" / "muscle_head.sql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE experiment_experiment SET slug = %s WHERE id = 1", (slug,))
    out = tmp_path / "out"
    result = run(tmp_path, PARTITIONED, "--source", dsn, "--out", str(out))
    if refused:
        assert result.exit_code == EXIT_SINK, result.output
        assert f"the experiment slug {slug!r} cannot be a partition" in one_line(result)
        assert files_under(tmp_path) == ["t.toml"]
        return
    assert result.exit_code == 0, result.output
    table = ds.dataset(out / "ds", partitioning="hive").to_table(columns=["experiment"])
    assert set(table.column("experiment").to_pylist()) == {slug}
    assert all(p.is_relative_to(out) for p in out.rglob("*"))
