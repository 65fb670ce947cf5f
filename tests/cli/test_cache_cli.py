"""`parallel-gateway cache ...`, run as a real subprocess against SQLite files in tmp_path."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path
from typing import Any

import pytest

from gateway.storage.types import AnswerKind, CacheStats, StoredAnswer, StoredInput
from tests.cli_support import MODULE, Result, Workspace, clean_env, cli, make_workspace

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
# Port 9 (discard) on loopback: any fetch would fail fast, and would show in the message.
NOWHERE = '[upstream]\nbase_url = "http://127.0.0.1:9"\nmax_attempts = 1\n'

# Seeded out of run_id order, with spacing and unicode a re-encoding would change.
ALPHA = StoredInput(
    "trun_alpha",
    '{"processor": "ultra", "input": {"q": "café ☕"}, "extra": [1, 2.50]}'.encode(),
    "2025-12-31T23:59:59.999999Z",
)
CHARLIE = StoredInput(
    "trun_charlie", b'{"input":"z","processor":"base"}', "2026-06-01T00:00:00.000000Z"
)
BRAVO = StoredInput(
    "trun_bravo", b'{"processor":"core","input":"what is 2+2?"}', "2026-01-02T03:04:05.000006Z"
)
SEEDED = (CHARLIE, ALPHA, BRAVO)
EARLIER, LATER = "2026-02-01T00:00:00.000000Z", "2026-02-02T00:00:00.000000Z"
EMPTY = {"entries": 0, "bytes": 0, "oldest_stored_at": None, "newest_stored_at": None}
NO_FINAL_ANSWERS = {"results": EMPTY, "final_runs": EMPTY, "events": EMPTY, "recordings": 0}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path / "ws", NOWHERE)


def import_line(run_id: str, stored_at: str, task_input: bytes, version: int = 1) -> bytes:
    head = f'{{"version":{version},"run_id":"{run_id}","stored_at":"{stored_at}","input":'
    return head.encode() + task_input + b"}\n"


def export_line(entry: StoredInput) -> bytes:
    """The version 2 line `cache export` writes for a run input."""
    head = f'{{"version":2,"kind":"input","run_id":"{entry.run_id}","stored_at":"{entry.stored_at}"'
    return head.encode() + b',"input":' + entry.body + b"}\n"


IMPORTED = [
    import_line("imp_b", "2026-01-02T00:00:00+01:00", b'{"processor":"core","input":"b"}'),
    import_line(
        "imp_a", "2026-03-04T05:06:07.5Z", b'{"processor":"lite","input":{"k":"\xc3\xa9"}}'
    ),
    import_line("imp_c", "2026-03-04T05:06:07.123456Z", b'{"processor":"pro","input":"c","v":2}'),
]
IMPORTED_ROWS = [
    ("imp_a", b'{"processor":"lite","input":{"k":"\xc3\xa9"}}', 39, "2026-03-04T05:06:07.500000Z"),
    ("imp_b", b'{"processor":"core","input":"b"}', 32, "2026-01-01T23:00:00.000000Z"),
    ("imp_c", b'{"processor":"pro","input":"c","v":2}', 37, "2026-03-04T05:06:07.123456Z"),
]


# --- stats and get --------------------------------------------------------------------------


def test_stats_of_an_empty_cache(ws: Workspace) -> None:
    result = ws.run("cache", "stats")
    empty = b'{"entries":0,"bytes":0,"oldest_stored_at":null,"newest_stored_at":null'
    assert result == Result(
        0,
        empty
        + b',"results":'
        + empty
        + b'},"final_runs":'
        + empty
        + b'},"events":'
        + empty
        + b'},"recordings":0}\n',
        "",
    )


def test_stats_of_a_filled_cache(ws: Workspace) -> None:
    ws.seed(SEEDED)
    result = ws.run("cache", "stats")
    assert (result.code, result.err) == (0, "")
    assert result.out.count(b"\n") == 1
    assert json.loads(result.out) == {
        "entries": 3,
        "bytes": len(ALPHA.body) + len(BRAVO.body) + len(CHARLIE.body),
        "oldest_stored_at": "2025-12-31T23:59:59.999999Z",
        "newest_stored_at": "2026-06-01T00:00:00.000000Z",
        **NO_FINAL_ANSWERS,
    }
    assert json.loads(result.out)["bytes"] == 71 + 32 + 43


def test_stats_count_results_final_runs_and_events_apart_from_inputs(ws: Workspace) -> None:
    ws.seed([ALPHA])
    ws.seed_answers(
        [
            StoredAnswer(AnswerKind.RESULT, "trun_alpha", "", b'{"output":1}', LATER),
            StoredAnswer(AnswerKind.RESULT, "trun_alpha", "b-1", b"{}", EARLIER),
            StoredAnswer(AnswerKind.RUN, "trun_bravo", "", b'{"status":"failed"}', LATER),
            StoredAnswer(AnswerKind.EVENTS, "trun_bravo", "", b"data: {}\n\n", EARLIER),
        ]
    )
    assert ws.stats() == {
        **dataclasses.asdict(CacheStats(1, len(ALPHA.body), ALPHA.stored_at, ALPHA.stored_at)),
        "results": dataclasses.asdict(CacheStats(2, 14, EARLIER, LATER)),
        "final_runs": dataclasses.asdict(CacheStats(1, 19, LATER, LATER)),
        "events": dataclasses.asdict(CacheStats(1, 10, EARLIER, EARLIER)),
        "recordings": 0,
    }
    purged = ws.run("cache", "purge", "trun_alpha", "trun_bravo")
    assert purged == Result(0, b"", "Purged 2 runs.\n")
    assert ws.stats() == {**dataclasses.asdict(CacheStats(0, 0, None, None)), **NO_FINAL_ANSWERS}


def test_get_prints_the_stored_body_as_it_is(ws: Workspace) -> None:
    ws.seed(SEEDED)
    assert ws.run("cache", "get", "trun_alpha") == Result(0, ALPHA.body + b"\n", "")
    assert ws.run("cache", "get", "trun_bravo") == Result(0, BRAVO.body + b"\n", "")


def test_get_of_an_unknown_run_exits_1(ws: Workspace) -> None:
    ws.seed(SEEDED)
    assert ws.run("cache", "get", "trun_nope") == Result(
        1, b"", "parallel-gateway: Run trun_nope is not in the cache.\n"
    )


@pytest.mark.parametrize(
    ("command", "ids", "named"),
    [
        (("get",), ("a/b",), "'a/b'"),
        (("purge",), ("trun_alpha", "a/b", "%2e"), "'a/b' '%2e'"),
        (("export",), ("trun_alpha", "a/b", "%2e"), "'a/b' '%2e'"),
        (("export", "-o", "x"), ("trun_alpha", "a/b"), "'a/b'"),
    ],
)
def test_a_run_id_that_could_never_be_cached_is_a_usage_error(
    ws: Workspace, command: tuple[str, ...], ids: tuple[str, ...], named: str
) -> None:
    ws.seed(SEEDED)
    assert ws.run("cache", *command, *ids) == Result(
        2,
        b"",
        f"parallel-gateway: Not a run id: {named}; a run id is 1 to 128 of A-Z, a-z, 0-9, "
        "_ and -.\n",
    )
    assert (len(ws.rows()), purges(ws)) == (3, [])
    assert not (ws.dir / "x").exists()


# --- export ---------------------------------------------------------------------------------


def test_export_to_stdout_gives_one_line_per_run_in_run_id_order(ws: Workspace) -> None:
    ws.seed(SEEDED)
    result = ws.run("cache", "export")
    assert result == Result(
        0, export_line(ALPHA) + export_line(BRAVO) + export_line(CHARLIE), "Exported 3 runs.\n"
    )


def test_export_of_an_empty_cache(ws: Workspace) -> None:
    assert ws.run("cache", "export") == Result(0, b"", "Exported 0 runs.\n")


def test_export_of_one_named_run(ws: Workspace) -> None:
    ws.seed(SEEDED)
    assert ws.run("cache", "export", "trun_bravo") == Result(
        0, export_line(BRAVO), "Exported 1 run.\n"
    )


def test_export_names_the_runs_it_lacks_and_exits_1(ws: Workspace) -> None:
    ws.seed(SEEDED)
    result = ws.run("cache", "export", "trun_alpha", "trun_missing", "trun_alpha")
    assert result == Result(
        1,
        export_line(ALPHA),
        "Exported 1 run.\nparallel-gateway: Not in the cache: trun_missing\n",
    )


def test_export_of_named_runs_is_in_run_id_order(ws: Workspace) -> None:
    ws.seed(SEEDED)
    result = ws.run("cache", "export", "trun_charlie", "trun_alpha")
    assert result == Result(0, export_line(ALPHA) + export_line(CHARLIE), "Exported 2 runs.\n")


@pytest.mark.parametrize("count", [1000, 2001])
def test_export_pages_through_a_cache_larger_than_a_page(ws: Workspace, count: int) -> None:
    """The store reads 1000 rows at a time; no row is lost or repeated at a page boundary."""
    entries = [
        StoredInput(
            f"r{n:05d}", b'{"processor":"core","input":"%d"}' % n, "2026-01-01T00:00:00.000000Z"
        )
        for n in range(count)
    ]
    ws.seed(entries[::-1])
    result = ws.run("cache", "export")
    assert (result.code, result.err) == (0, f"Exported {count} runs.\n")
    assert result.out == b"".join(export_line(entry) for entry in entries)


def test_export_to_a_file_leaves_nothing_else_behind(ws: Workspace) -> None:
    ws.seed(SEEDED)
    out_dir = ws.dir / "out"
    out_dir.mkdir()
    target = out_dir / "cache.jsonl"
    target.write_bytes(b"old contents\n")

    result = ws.run("cache", "export", "--output", str(target))

    assert result == Result(0, b"", "Exported 3 runs.\n")
    assert target.read_bytes() == export_line(ALPHA) + export_line(BRAVO) + export_line(CHARLIE)
    assert [p.name for p in out_dir.iterdir()] == ["cache.jsonl"]


def test_export_to_a_file_with_missing_runs_writes_no_file(ws: Workspace) -> None:
    ws.seed(SEEDED)
    result = ws.run("cache", "export", "-o", "some.jsonl", "trun_charlie", "trun_zulu")
    assert result == Result(
        1, b"", "parallel-gateway: Not in the cache: trun_zulu; some.jsonl was not written.\n"
    )
    # Whole or not at all: no partial file, and no temporary one left beside it.
    assert sorted(p.name for p in ws.dir.iterdir() if not p.name.startswith("gw.db")) == [
        "gateway.toml"
    ]


def test_export_into_a_missing_directory_names_the_path_given(ws: Workspace) -> None:
    ws.seed(SEEDED)
    target = ws.dir / "nowhere" / "cache.jsonl"
    result = ws.run("cache", "export", "--output", str(target))
    assert result == Result(1, b"", f"parallel-gateway: No such file or directory: {target}\n")


def read_terminal(master: int) -> bytes:
    """Everything written to a pseudo-terminal, once every writer has closed it."""
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the slave side is closed everywhere
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_export_shows_progress_only_on_a_terminal(ws: Workspace) -> None:
    ws.seed(SEEDED)
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        try:
            proc = subprocess.Popen(
                [*MODULE, "cache", "export", "--config", str(ws.config)],
                cwd=ws.dir,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=slave,
            )
        finally:
            os.close(slave)
        out, _ = proc.communicate(timeout=30)
        terminal = read_terminal(master).decode()
    finally:
        os.close(master)

    assert proc.returncode == 0
    assert out == export_line(ALPHA) + export_line(BRAVO) + export_line(CHARLIE)
    assert "export: 100%" in terminal
    assert "3/3" in terminal
    assert terminal.endswith("Exported 3 runs.\r\n")


# --- import ---------------------------------------------------------------------------------


def test_import_loads_a_file_and_reports_counts(ws: Workspace) -> None:
    (ws.dir / "in.jsonl").write_bytes(b"".join(IMPORTED))

    result = ws.run("cache", "import", "in.jsonl")

    assert result == Result(0, b"", "Imported 3 new entries; 0 already cached; 0 lines rejected.\n")
    assert ws.rows() == IMPORTED_ROWS
    assert ws.stats() == {
        "entries": 3,
        "bytes": 39 + 32 + 37,
        "oldest_stored_at": "2026-01-01T23:00:00.000000Z",
        "newest_stored_at": "2026-03-04T05:06:07.500000Z",
        **NO_FINAL_ANSWERS,
    }


def test_importing_the_same_file_twice_changes_nothing(ws: Workspace) -> None:
    (ws.dir / "in.jsonl").write_bytes(b"".join(IMPORTED))
    assert ws.run("cache", "import", "in.jsonl").code == 0
    before = ws.rows()

    again = ws.run("cache", "import", "in.jsonl")

    assert again == Result(0, b"", "Imported 0 new entries; 3 already cached; 0 lines rejected.\n")
    assert ws.rows() == before == IMPORTED_ROWS


def test_import_keeps_the_first_copy_of_a_run(ws: Workspace) -> None:
    ws.seed([BRAVO])
    changed = import_line(BRAVO.run_id, "2030-01-01T00:00:00Z", b'{"processor":"x","input":"y"}')
    (ws.dir / "in.jsonl").write_bytes(changed + IMPORTED[0])

    result = ws.run("cache", "import", "in.jsonl")

    assert result == Result(0, b"", "Imported 1 new entry; 1 already cached; 0 lines rejected.\n")
    assert ws.rows() == [
        IMPORTED_ROWS[1],
        (BRAVO.run_id, BRAVO.body, len(BRAVO.body), BRAVO.stored_at),
    ]


def test_import_reads_stdin_for_a_dash(ws: Workspace) -> None:
    result = ws.run("cache", "import", "-", stdin=b"".join(IMPORTED))
    assert result == Result(0, b"", "Imported 3 new entries; 0 already cached; 0 lines rejected.\n")
    assert ws.rows() == IMPORTED_ROWS


def test_import_accepts_crlf_and_a_last_line_without_newline(ws: Workspace) -> None:
    data = b"".join(line.replace(b"\n", b"\r\n") for line in IMPORTED).removesuffix(b"\r\n")
    (ws.dir / "in.jsonl").write_bytes(data)
    result = ws.run("cache", "import", "in.jsonl")
    assert result == Result(0, b"", "Imported 3 new entries; 0 already cached; 0 lines rejected.\n")
    assert ws.rows() == IMPORTED_ROWS


def test_import_rejects_bad_lines_by_number_and_keeps_the_good(ws: Workspace) -> None:
    lines = [
        IMPORTED[0],
        b"{bad json\n",
        IMPORTED[1],
        import_line("imp_v3", "2026-01-01T00:00:00Z", b'{"processor":"x","input":"y"}', 3),
        b"\n",
        IMPORTED[2],
    ]
    (ws.dir / "bad.jsonl").write_bytes(b"".join(lines))

    result = ws.run("cache", "import", "bad.jsonl")

    assert result == Result(
        1,
        b"",
        "bad.jsonl:2: rejected: not JSON (unexpected character, expected a string key)\n"
        "bad.jsonl:4: rejected: unsupported version 3; this gateway reads versions 1, 2\n"
        "Imported 3 new entries; 0 already cached; 2 lines rejected.\n",
    )
    assert ws.rows() == IMPORTED_ROWS


def test_importing_a_file_that_is_no_export_says_why_once_not_per_line(ws: Workspace) -> None:
    (ws.dir / "notes.txt").write_text("".join(f"line {n}\n" for n in range(1, 301)), "utf-8")

    result = ws.run("cache", "import", "notes.txt")

    shown = [
        f"notes.txt:{n}: rejected: not JSON (unexpected character, expected a JSON value)"
        for n in range(1, 11)
    ]
    assert result.err.splitlines() == [
        *shown,
        "notes.txt: 290 more lines rejected, not shown.",
        "Imported 0 new entries; 0 already cached; 300 lines rejected.",
    ]
    assert (result.code, ws.rows()) == (1, [])


def test_import_rejects_an_out_of_range_stamp_as_a_bad_line(ws: Workspace) -> None:
    stamp = "0001-01-01T00:00:00+01:00"
    lines = [IMPORTED[0], import_line("imp_old", stamp, b'{"processor":"x","input":"y"}')]
    (ws.dir / "old.jsonl").write_bytes(b"".join(lines))

    result = ws.run("cache", "import", "old.jsonl")

    assert "Traceback" not in result.err
    assert (result.code, result.out) == (1, b"")
    assert result.err.startswith(f"old.jsonl:2: rejected: stored_at '{stamp}' ")
    assert result.err.endswith("\nImported 1 new entry; 0 already cached; 1 line rejected.\n")
    assert ws.rows() == [IMPORTED_ROWS[1]]


def test_import_of_a_missing_file_exits_1_with_one_line(ws: Workspace) -> None:
    result = ws.run("cache", "import", "missing.jsonl")
    assert result == Result(1, b"", "parallel-gateway: No such file or directory: missing.jsonl\n")


def test_export_then_import_into_another_cache(ws: Workspace, tmp_path: Path) -> None:
    ws.seed(SEEDED)
    exported = ws.run("cache", "export")
    assert exported.code == 0
    other = make_workspace(tmp_path / "other", NOWHERE)

    result = other.run("cache", "import", "-", stdin=exported.out)

    assert result == Result(0, b"", "Imported 3 new entries; 0 already cached; 0 lines rejected.\n")
    rows = other.rows()
    assert [(row[0], row[3]) for row in rows] == [
        (entry.run_id, entry.stored_at) for entry in (ALPHA, BRAVO, CHARLIE)
    ]
    # Byte for byte: ALPHA's spacing, unicode and 2.50 included.
    assert [row[1] for row in rows] == [entry.body for entry in (ALPHA, BRAVO, CHARLIE)]
    assert [row[2] for row in rows] == [len(row[1]) for row in rows]


# --- purge ----------------------------------------------------------------------------------


def purges(ws: Workspace) -> list[tuple[Any, ...]]:
    rows = ws.rows("SELECT seq, run_ids, purged_at FROM cache_purges ORDER BY seq")
    assert all(TIMESTAMP.fullmatch(row[2]) for row in rows), rows
    return [row[:2] for row in rows]


def test_purge_removes_the_runs_named_and_records_them(ws: Workspace) -> None:
    ws.seed(SEEDED)

    result = ws.run("cache", "purge", "trun_charlie", "trun_alpha", "trun_charlie", "trun_none")

    assert result == Result(
        1, b"", "Purged 2 runs.\nparallel-gateway: Not in the cache: trun_none\n"
    )
    assert [row[0] for row in ws.rows()] == ["trun_bravo"]
    assert ws.stats() == {
        "entries": 1,
        "bytes": len(BRAVO.body),
        "oldest_stored_at": BRAVO.stored_at,
        "newest_stored_at": BRAVO.stored_at,
        **NO_FINAL_ANSWERS,
    }
    assert purges(ws) == [(1, '["trun_charlie","trun_alpha","trun_none"]')]
    assert json.loads(purges(ws)[0][1]) == ["trun_charlie", "trun_alpha", "trun_none"]
    assert ws.run("cache", "get", "trun_alpha").code == 1


def test_purge_of_one_run(ws: Workspace) -> None:
    ws.seed(SEEDED)
    assert ws.run("cache", "purge", "trun_bravo") == Result(0, b"", "Purged 1 run.\n")
    assert [row[0] for row in ws.rows()] == ["trun_alpha", "trun_charlie"]
    assert purges(ws) == [(1, '["trun_bravo"]')]


def test_purge_of_a_run_only_recorded_removes_its_recording(ws: Workspace) -> None:
    ws.execute(
        "INSERT INTO create_recordings (app, match_hash, fields, run_id, recorded_at)"
        " VALUES ('ci', ?, '{}', 'trun_recorded', '2026-11-28T00:00:00.000000Z')",
        ("a" * 64,),
    )
    assert ws.run("cache", "purge", "trun_recorded") == Result(0, b"", "Purged 1 run.\n")
    assert ws.rows("SELECT run_id FROM create_recordings") == []


def test_purge_all_without_yes_removes_nothing(ws: Workspace) -> None:
    ws.seed(SEEDED)
    result = ws.run("cache", "purge", "--all")
    assert result == Result(
        2, b"", "parallel-gateway: Refusing to empty the whole cache without --yes.\n"
    )
    assert len(ws.rows()) == 3
    assert purges(ws) == []


def test_purge_all_yes_empties_the_cache(ws: Workspace) -> None:
    ws.seed(SEEDED)
    assert ws.run("cache", "purge", "trun_alpha").code == 0

    result = ws.run("cache", "purge", "--all", "--yes")

    assert result == Result(0, b"", "Purged 2 runs.\n")
    assert ws.rows() == []
    assert ws.stats() == {
        "entries": 0,
        "bytes": 0,
        "oldest_stored_at": None,
        "newest_stored_at": None,
        **NO_FINAL_ANSWERS,
    }
    assert purges(ws) == [(1, '["trun_alpha"]'), (2, None)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "parallel-gateway: Nothing to purge: give run ids, or --all --yes.\n"),
        (("--yes",), "parallel-gateway: Nothing to purge: give run ids, or --all --yes.\n"),
        (("trun_alpha", "--all"), "parallel-gateway: Give run ids or --all, not both.\n"),
        (("trun_alpha", "--all", "--yes"), "parallel-gateway: Give run ids or --all, not both.\n"),
    ],
    ids=["nothing", "only-yes", "ids-and-all", "ids-and-all-yes"],
)
def test_purge_usage_errors_exit_2_and_remove_nothing(
    ws: Workspace, args: tuple[str, ...], message: str
) -> None:
    ws.seed(SEEDED)
    assert ws.run("cache", "purge", *args) == Result(2, b"", message)
    assert len(ws.rows()) == 3
    assert purges(ws) == []


# --- warm -----------------------------------------------------------------------------------


def test_warm_without_run_ids_exits_2(ws: Workspace) -> None:
    assert ws.run("cache", "warm") == Result(
        2, b"", "parallel-gateway: Nothing to warm: give run ids, or --from FILE.\n"
    )


def test_warm_with_concurrency_0_exits_2(ws: Workspace) -> None:
    assert ws.run("cache", "warm", "--concurrency", "0", "trun_alpha") == Result(
        2, b"", "parallel-gateway: --concurrency must be at least 1, not 0.\n"
    )


def failed(run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "outcome": "failed",
        "status": None,
        "ref_id": None,
        "message": "not a valid run id; nothing was fetched",
    }


def test_warm_reports_an_invalid_run_id_without_fetching(ws: Workspace) -> None:
    result = ws.run("cache", "warm", "a/b")

    assert result.code == 1
    assert [json.loads(line) for line in result.out.splitlines()] == [failed("a/b")]
    assert result.err == (
        "a/b: failed: not a valid run id; nothing was fetched\n"
        "Warmed 1 run: 0 stored, 0 already cached, 1 failed.\n"
    )
    assert ws.rows() == []


def test_warm_from_a_file_of_invalid_ids(ws: Workspace) -> None:
    ids = "# runs to warm\n..\n\n  a b  \n  # not this one\n..\n" + "x" * 129 + "\n"
    (ws.dir / "ids.txt").write_text(ids, "utf-8")

    result = ws.run("cache", "warm", "--from", "ids.txt", "--concurrency", "2")

    assert result.code == 1
    assert [json.loads(line) for line in result.out.splitlines()] == [
        failed(".."),
        failed("a b"),
        failed("x" * 129),
    ]
    assert result.err.endswith("Warmed 3 runs: 0 stored, 0 already cached, 3 failed.\n")


# --- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "mentions"),
    [
        (["cache"], ["export", "import", "warm", "stats", "get", "purge"]),
        (["cache", "export"], ["--output FILE", "RUN_ID"]),
        (["cache", "import"], ["FILE"]),
        (["cache", "warm"], ["--from FILE", "--concurrency CONCURRENCY", "RUN_ID"]),
        (["cache", "stats"], []),
        (["cache", "get"], ["RUN_ID"]),
        (["cache", "purge"], ["--all", "--yes", "RUN_ID"]),
    ],
    ids=["cache", "export", "import", "warm", "stats", "get", "purge"],
)
def test_help(words: list[str], mentions: list[str], tmp_path: Path) -> None:
    result = cli(*words, "--help", cwd=tmp_path)
    assert (result.code, result.err) == (0, "")
    out = result.out.decode()
    assert out.startswith(" ".join(["usage: parallel-gateway", *words]) + " [-h]")
    assert "--config PATH" in out
    for mention in mentions:
        assert mention in out
    assert list(tmp_path.iterdir()) == []


def test_cache_without_a_subcommand_exits_2(tmp_path: Path) -> None:
    result = cli("cache", cwd=tmp_path)
    assert (result.code, result.out) == (2, b"")
    assert result.err.startswith("usage: parallel-gateway cache [-h]")
    assert result.err.endswith("error: the following arguments are required: COMMAND\n")
