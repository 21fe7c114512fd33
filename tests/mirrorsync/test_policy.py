"""The pure floor of mirror sync: rsync's argument list, its exit codes, ftpsync's rules, stats,
the trace file and the schedule."""

from __future__ import annotations

import time

import pytest

from services.mirrorsync import policy
from shared.schema import KINDS
from shared.validation import parse_record


def mirror(**fields):
    raw = {"source": "rsync://up.example:8873/debian/", "path": "debian", **fields}
    record, problems = parse_record(KINDS["mirror"], "debian", raw)
    assert record is not None, problems
    return record


def test_rsync_argv_is_an_argument_list_from_the_record():
    argv = policy.rsync_argv(mirror(include="/dists/bookworm/", exclude="*.iso,/dists/",
                                    bwlimit="500"),
                             "/m/.snapshots/debian/X.partial", link_dest="/m/.snapshots/debian/A",
                             io_timeout=60, contimeout=7)
    assert argv[0] == "rsync"
    assert "--hard-links" in argv and "--stats" in argv and "--recursive" in argv
    # ftpsync's attributes: fixed modes, no owner, group or devices (so that rsync never
    # changes an unchanged file's attributes in place: a clone shares it with the published
    # snapshot); deletions include newly excluded names; never --inplace
    assert policy.ATTRIBUTES == ("--links", "--perms", "--times", "--chmod=D755,F644")
    assert all(a in argv for a in policy.ATTRIBUTES) and "--delete-excluded" in argv
    assert not any(a in argv for a in ("--archive", "--owner", "--group", "--devices",
                                       "--inplace", "--append", "-a"))
    assert "--itemize-changes" in argv and "--out-format=%i %l %n" in argv
    assert "--timeout=60" in argv and "--contimeout=7" in argv and "--bwlimit=500" in argv
    assert "--link-dest=/m/.snapshots/debian/A" in argv
    # rsync takes the first matching rule: includes before excludes; rsync's temp dirs never
    assert argv.index("--include=/dists/bookworm/") < argv.index("--exclude=/dists/")
    assert "--exclude=.~tmp~/" in argv
    assert argv[-3:] == ["--", "rsync://up.example:8873/debian/", "/m/.snapshots/debian/X.partial/"]


def test_the_metadata_pass_takes_listed_files_by_checksum():
    argv = policy.metadata_argv(mirror(bwlimit="10"), "/m/X.partial", "/tmp/list", io_timeout=9)
    assert "--checksum" in argv and "--files-from=/tmp/list" in argv and "--from0" in argv
    assert "--ignore-missing-args" in argv and "--bwlimit=10" in argv and "--timeout=9" in argv
    assert not any(a.startswith(("--delete", "--link-dest")) for a in argv)
    assert all(a in argv for a in policy.ATTRIBUTES) and "--archive" not in argv
    assert argv[-3:] == ["--", "rsync://up.example:8873/debian/", "/m/X.partial/"]
    # a source below a module: the module is the source, the list names the path inside it
    deep = mirror(source="rsync://up.example/pub/debian/main")
    assert policy.metadata_argv(deep, "/m/Y", "/l")[-2] == "rsync://up.example/pub/"
    assert policy.metadata_list(deep, ["dists/s/InRelease", "a b\nc"]) == \
        b"debian/main/./dists/s/InRelease\0debian/main/./a b\nc\0"
    assert policy.metadata_list(mirror(), ["x/Release"]) == b"x/Release\0"
    assert policy.split_source("/srv/up") == ("/srv/up/", "")
    assert [n for n in ("InRelease", "Release", "Packages.xz", "Sources.gz", "repomd.xml",
                        "hello_1.0_all.deb", "x-primary.xml.gz") if policy.is_metadata(n)] == \
        ["InRelease", "Release", "Packages.xz", "Sources.gz", "repomd.xml"]


def test_a_local_source_gets_no_contimeout_and_a_trailing_slash():
    argv = policy.rsync_argv(mirror(source="/srv/upstream"), "/m/new")
    assert not any(a.startswith("--contimeout") for a in argv)
    assert not any(a.startswith("--link-dest") for a in argv)
    assert argv[-2:] == ["/srv/upstream/", "/m/new/"]


def test_hostile_values_cannot_become_options():
    # a pattern that looks like an option is refused by the record check, and "--" ends options
    _, problems = parse_record(KINDS["mirror"], "x", {"source": "rsync://h/m/", "path": "x",
                                                      "exclude": "--delete-excluded"})
    assert problems and problems[0].field == "exclude"
    _, problems = parse_record(KINDS["mirror"], "x", {"source": "-e sh", "path": "x"})
    assert problems and problems[0].field == "source"
    _, problems = parse_record(KINDS["mirror"], "x", {"source": "rsync://host", "path": "x"})
    assert problems and "module" in problems[0].reason


@pytest.mark.parametrize("code, ok, reason", [
    (0, True, None), (24, True, None),
    (23, False, "rsync_partial"), (30, False, "rsync_timeout"),
    (25, False, "max_delete"),
    (10, False, "unreachable"), (35, False, "unreachable"), (5, False, "unreachable"),
    (11, False, "rsync_error"), (1, False, "rsync_error"), (-9, False, "rsync_error"),
])
def test_exit_codes_as_ftpsync_reads_them(code, ok, reason):
    verdict = policy.classify_exit(code)
    assert (verdict.ok, verdict.reason) == (ok, reason)
    assert verdict.reason is None or verdict.reason in policy.FAILURE_REASONS


def test_no_space_left_is_disk_full_whatever_the_code():
    verdict = policy.classify_exit(11, "rsync: write failed on \"x\": No space left on device (28)")
    assert verdict.reason == "disk_full"


def test_retried_reasons_are_the_passing_ones():
    assert {"rsync_partial", "rsync_timeout", "upstream_updating"} <= policy.RETRY_REASONS
    assert "max_delete" not in policy.RETRY_REASONS and "disk_full" not in policy.RETRY_REASONS


def test_update_in_progress_markers_in_the_itemized_output():
    output = (b".d          4096 ./\n"
              b">f+++++++++ 0 Archive-Update-in-Progress-ftp-master\n"
              b"cd+++++++++ 4096 dists/\n"
              b">f+++++++++ 9 dists/Archive-Update-in-Progress-not-at-the-top\n")
    assert policy.marker_in_output(output) == "Archive-Update-in-Progress-ftp-master"
    assert policy.marker_in_output(output.split(b"\n", 2)[2]) is None  # only at the top
    assert policy.marker_in_output(b">f+++++++++ 5 README\n") is None
    # copied whatever the mirror's filters say (a catch-all exclude comes after it)
    argv = policy.rsync_argv(mirror(include="/dists/***", exclude="*"), "/m/X")
    assert argv.index("--include=/Archive-Update-in-Progress-*") < argv.index("--exclude=*")
    assert policy.updating_markers(["Archive-Update-in-Progress-x", "dists"]) == \
        ["Archive-Update-in-Progress-x"]
    assert policy.updating_markers(["dists", "pool"]) == []


def test_stats_parsed_with_or_without_thousands_separators():
    text = ("Number of files: 1,234 (reg: 1,000, dir: 234)\n"
            "Number of regular files transferred: 12\n"
            "Total file size: 5,000,000 bytes\n"
            "Total transferred file size: 40000 bytes\n"
            "Total bytes received: 41,234\n")
    assert policy.parse_stats(text) == policy.Stats(files=1234, regular_files=1000,
                                                    files_transferred=12,
                                                    total_bytes=5_000_000,
                                                    bytes_transferred=40000,
                                                    bytes_received=41234)
    assert policy.parse_stats("") == policy.Stats()


def test_trace_file_in_ftpsync_format():
    started = time.mktime((2026, 12, 5, 10, 0, 0, 0, 0, 0)) - time.timezone
    text = policy.trace_text(started=started, finished=started + 90,
                             upstream="rsync://up.example:8873/debian/",
                             serial=policy.archive_serial("Archive serial: 2026120501\n", 0),
                             stats=policy.Stats(bytes_received=9000), creator="bootyard mirrorsync",
                             host="deploy")
    lines = text.splitlines()
    assert lines[1] == "Date: Sat, 05 Dec 2026 10:01:30 +0000"
    assert "Date-Started: Sat, 05 Dec 2026 10:00:00 +0000" in lines
    assert "Archive serial: 2026120501" in lines
    assert "Upstream-mirror: up.example:8873" in lines
    assert "Total bytes received in rsync: 9000" in lines and "Average rate: 100 B/s" in lines
    assert policy.archive_serial(None, started) == "2026120510"


def test_schedule_interval_jitter_and_retry_backoff():
    base = dict(interval=3600, jitter=0.1, retry_delay=60)
    assert policy.due_at(last_attempt=None, last_result=None, failures=0, rand=0.5, **base) == 0
    assert policy.due_at(last_attempt=1000, last_result="published", failures=0, rand=0.5,
                         **base) == 1000 + 3600 + 180
    assert policy.due_at(last_attempt=1000, last_result="disk_full", failures=3, rand=0.0,
                         **base) == 1000 + 3600
    retries = [policy.due_at(last_attempt=1000, last_result="upstream_updating", failures=n,
                             rand=0.9, **base) - 1000 for n in (1, 2, 3, 10)]
    assert retries == [60, 120, 240, 3600]
