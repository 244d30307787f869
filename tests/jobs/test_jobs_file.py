"""Reading a TOML jobs file: every job or none, every problem reported at once."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from distcron.errors import JobSpecError
from distcron.jobs import (
    JobSpec,
    JobSpecErrors,
    Problem,
    load_jobs_file,
    parse_jobs_file,
    parse_jobs_toml,
)

GOOD = dedent(
    """\
    # Nightly work.
    [[job]]
    name = "backup"
    schedule = "0 3 * * *"
    timezone = "Europe/Paris"
    command = "/usr/local/bin/backup.sh"
    timeout = "2h"
    retries = 2

    [[job]]
    name = "report"
    schedule = "30 6 * * 1-5"
    argv = ["/usr/bin/report", "--daily"]
    env = { REPORT_DIR = "/srv/reports" }
    tags = ["reports"]
    """
)


def problems_in(text: str, source: str = "jobs.toml") -> JobSpecErrors:
    with pytest.raises(JobSpecErrors) as caught:
        parse_jobs_toml(text, source=source)
    return caught.value


def test_a_valid_file_gives_its_jobs_in_file_order() -> None:
    backup, report = parse_jobs_toml(GOOD)
    assert (backup.name, backup.timezone, backup.timeout, backup.retries) == (
        "backup",
        "Europe/Paris",
        7200.0,
        2,
    )
    assert (report.name, report.argv, report.env, report.tags) == (
        "report",
        ("/usr/bin/report", "--daily"),
        {"REPORT_DIR": "/srv/reports"},
        ("reports",),
    )


def test_a_file_is_read_from_disk_by_path(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert [job.name for job in load_jobs_file(path)] == ["backup", "report"]
    assert [job.name for job in load_jobs_file(str(path))] == ["backup", "report"]


def test_a_missing_file_raises_the_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_jobs_file(tmp_path / "absent.toml")


def test_a_file_that_is_not_utf8_is_rejected_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[[job]]\nname = "caf\xe9"\n')
    with pytest.raises(JobSpecErrors, match=r"latin1\.toml: .*not UTF-8"):
        load_jobs_file(path)


def test_an_empty_file_has_no_jobs() -> None:
    assert parse_jobs_toml("# nothing yet\n") == []


def test_a_toml_syntax_error_names_the_file_line_and_column() -> None:
    error = problems_in('[[job]]\nname = "a"\nschedule = 0 3 * * *\n')
    assert str(error).startswith("jobs.toml: 1 problem")
    assert "invalid TOML" in str(error)
    assert "line 3, column" in str(error)


def test_an_unknown_job_key_is_named_with_the_closest_known_key_and_its_line() -> None:
    error = problems_in(GOOD.replace('timezone = "Europe/Paris"', 'timzone = "Europe/Paris"'))
    assert error.problems == (
        Problem(
            "unknown key 'timzone' (did you mean 'timezone'?)",
            job="backup",
            index=1,
            field="timzone",
            line=5,  # the key's own line, not its [[job]] header's
        ),
    )
    assert (error.job, error.field) == ("backup", "timzone")
    assert "jobs.toml:5: job 'backup', field 'timzone': unknown key 'timzone'" in str(error)


def test_an_unknown_key_far_from_any_known_key_gets_no_suggestion() -> None:
    error = problems_in(GOOD.replace("retries = 2", "colour = 2"))
    assert error.problems[0].message == "unknown key 'colour'"


def test_a_job_without_a_name_is_called_by_its_position() -> None:
    error = problems_in(GOOD.replace('name = "report"\n', ""))
    assert "jobs.toml:10: job #2, field 'name': is required" in str(error)


def test_every_problem_in_the_file_is_reported_together_one_per_line() -> None:
    text = dedent(
        """\
        jobz = 1

        [[job]]
        name = "a"
        schedule = "0 3 * * *"
        command = "true"
        retries = -1

        [[job]]
        schedule = "0 25 * * *"
        command = "true"
        concurrency = "sometimes"

        [[job]]
        name = "c"
        schedule = "@daily"
        timeout = "soon"
        """
    )
    error = problems_in(text)
    where = [(p.job, p.index, p.field) for p in error.problems]
    # Keys that clash (c has no command) are checked once each key is valid on its own.
    assert where == [
        (None, None, None),
        ("a", 1, "retries"),
        (None, 2, "name"),
        (None, 2, "schedule"),
        (None, 2, "concurrency"),
        ("c", 3, "timeout"),
    ]
    lines = str(error).splitlines()
    assert lines[0] == f"jobs.toml: {len(error.problems)} problems, nothing was applied:"
    assert "unknown top-level key 'jobz' (did you mean 'job'?)" in lines[1]
    assert lines[1].startswith("jobs.toml:1: unknown top-level key")
    assert any(line.startswith("jobs.toml:7: job 'a', field 'retries'") for line in lines)
    assert any(line.startswith("jobs.toml:10: job #2, field 'schedule'") for line in lines)
    assert any(line.startswith("jobs.toml:12: job #2, field 'concurrency'") for line in lines)
    # A missing key is reported on its job's header.
    assert any(line.startswith("jobs.toml:9: job #2, field 'name'") for line in lines)
    assert any(line.startswith("jobs.toml:17: job 'c', field 'timeout'") for line in lines)


def test_a_duplicate_name_is_reported_on_the_second_job() -> None:
    error = problems_in(GOOD.replace('name = "report"', 'name = "backup"'))
    assert [(p.job, p.index, p.field) for p in error.problems] == [("backup", 2, "name")]
    assert "duplicate name: job #1 is also called 'backup'" in str(error)


def test_a_file_with_one_bad_job_yields_no_jobs_at_all() -> None:
    with pytest.raises(JobSpecError):
        parse_jobs_toml(GOOD + '\n[[job]]\nname = "bad"\nschedule = "@daily"\n')


def test_top_level_tables_of_other_parts_can_be_ignored() -> None:
    text = '[serve]\nlisten = "127.0.0.1:8500"\n\n' + GOOD
    assert [job.name for job in parse_jobs_toml(text, ignore=("serve",))] == ["backup", "report"]
    error = problems_in(text.replace("[serve]", "[serv]"), source="distcron.toml")
    assert "unknown top-level key 'serv'" in str(error)


def test_a_single_job_table_written_as_job_instead_of_array_is_explained() -> None:
    error = problems_in('[job]\nname = "a"\nschedule = "@daily"\ncommand = "true"\n')
    assert "write [[job]], not [job]" in str(error)


def test_defaults_apply_to_every_job_that_does_not_set_the_key() -> None:
    text = '[defaults]\ntimezone = "Asia/Tokyo"\nretries = 3\nenv = { A = "1", B = "1" }\n\n' + GOOD
    backup, report = parse_jobs_toml(text)
    assert (backup.timezone, backup.retries, backup.env) == (
        "Europe/Paris",
        2,
        {"A": "1", "B": "1"},
    )
    assert (report.timezone, report.retries) == ("Asia/Tokyo", 3)
    assert report.env == {"A": "1", "B": "1", "REPORT_DIR": "/srv/reports"}


def test_a_jobs_env_wins_over_the_defaults_env_key_by_key() -> None:
    text = '[defaults]\nenv = { A = "default", B = "default" }\n' + GOOD.replace(
        'REPORT_DIR = "/srv/reports"', 'A = "own"'
    )
    assert parse_jobs_toml(text)[1].env == {"A": "own", "B": "default"}


def test_http_jobs_do_not_take_the_default_env_or_workdir() -> None:
    text = dedent(
        """\
        [defaults]
        env = { PATH = "/usr/bin" }
        workdir = "/srv"
        timeout = "5m"

        [[job]]
        name = "hook"
        schedule = "@hourly"
        executor = "http"
        url = "https://example.com/hook"
        """
    )
    (hook,) = parse_jobs_toml(text)
    assert (hook.env, hook.workdir, hook.timeout) == ({}, None, 300.0)


def test_a_bad_default_is_reported_once_on_the_defaults_table() -> None:
    error = problems_in(
        '[defaults]\ntimezone = "Mars/Olympus"\n\n'
        + GOOD.replace('timezone = "Europe/Paris"\n', "")
    )
    assert len(error.problems) == 1
    assert "jobs.toml:2: [defaults], field 'timezone': unknown time zone 'Mars/Olympus'" in str(
        error
    )


def test_a_default_that_clashes_with_a_job_is_reported_on_the_job() -> None:
    text = '[defaults]\nexecutor = "http"\n' + GOOD
    error = problems_in(text)
    assert {(p.job, p.field) for p in error.problems} >= {("backup", "command"), ("backup", "url")}
    assert "(inherited from [defaults])" not in str(error)  # command and url are the job's own


def test_keys_that_cannot_have_a_default_are_refused_in_defaults() -> None:
    error = problems_in('[defaults]\nschedule = "@daily"\nretrys = 1\n' + GOOD)
    assert [(p.in_defaults, p.field) for p in error.problems] == [
        (True, "schedule"),
        (True, "retrys"),
    ]
    assert "cannot be set in [defaults]" in error.problems[0].message
    assert "did you mean 'retries'" in error.problems[1].message


def test_defaults_must_be_a_table() -> None:
    assert "'defaults' must be a table" in str(problems_in("defaults = 1\n" + GOOD))


def test_line_numbers_are_left_out_when_jobs_are_not_written_as_headers() -> None:
    error = problems_in('job = [{ name = "a", schedule = "@daily" }]\n')
    assert error.problems[0].line is None
    assert "jobs.toml: job 'a', field 'command'" in str(error)


def test_a_schedule_error_keeps_the_caret_under_the_expression() -> None:
    error = problems_in(GOOD.replace("30 6 * * 1-5", "30 6 * * 1-9"))
    text = str(error)
    assert "job 'report', field 'schedule'" in text
    expression_line, caret_line = text.splitlines()[-2:]
    assert "30 6 * * 1-9" in expression_line
    assert caret_line.strip() == "^"


def test_a_schedule_with_no_slot_to_come_is_refused_on_its_own_line() -> None:
    error = problems_in(GOOD.replace('"30 6 * * 1-5"', '"@every 420000w"'))
    assert [(p.job, p.field, p.line) for p in error.problems] == [("report", "schedule", 12)]
    assert "no more slots: '@every 420000w' has no slot" in error.problems[0].message


def test_a_stored_spec_refused_at_the_edge_today_still_reads_back() -> None:
    # The edge refuses it; one stored before must reach the leader, which
    # quarantines it, rather than fail to decode.
    text = '{"name":"rare","schedule":"@every 420000w","command":"true"}'
    assert JobSpec.from_json(text).schedule == "@every 420000w"
    huge = "x" * 200_000  # more than one argument may hold: refused at the edge only
    assert JobSpec.from_json(f'{{"name":"big","schedule":"@daily","command":"{huge}"}}'
                             ).command == huge


def test_no_message_uses_pydantic_s_wording() -> None:
    text = GOOD.replace("retries = 2", 'retries = "2"\nconcurrency = "never"\nidempotent = 1\n'
                        'starting_deadline = []\ntags = "a"\nenv = 3')
    message = str(problems_in(text))
    assert "Input should be" not in message and "Value error" not in message
    assert "field 'retries': must be a whole number (got '2')" in message
    assert "field 'concurrency': must be 'forbid', 'allow', 'replace' or 'queue'" in message
    assert "field 'idempotent': must be true or false" in message
    assert "field 'tags': must be a list" in message


def test_a_toml_syntax_error_carries_its_line_so_every_reader_sees_the_file() -> None:
    error = problems_in('[[job]]\nname = "a"\nschedule = 0 3 * * *\n')
    assert error.problems[0].line == 3
    assert str(error).splitlines()[1].startswith("jobs.toml:3: invalid TOML")


def test_a_source_key_is_refused_in_a_job_and_in_defaults() -> None:
    error = problems_in('[defaults]\nsource = "x"\n' + GOOD + 'source = "api"\n')
    assert [(p.in_defaults, p.job, p.field, p.line) for p in error.problems] == [
        (True, None, "source", 2), (False, "report", "source", 18)]
    assert "is set by distcron" in error.problems[0].message


def test_a_problem_in_a_job_s_own_table_points_at_that_table() -> None:
    text = GOOD + '\n[[job]]\nname = "hook"\nschedule = "@daily"\ncommand = "x"\n\n' \
        '[job.env]\n"1BAD" = "x"\ntimeout = "never"\n'
    error = problems_in(text)
    assert [(p.job, p.field, p.line) for p in error.problems] == [("hook", "env", 22)]


NOTIFIERS_FILE = """
[[notifier]]
name = "ops"
url = "https://hooks.example/ops?token=s3cret"

[[notifier]]
name = "mail"
url = "mailto:ops@example.com"

[[job]]
name = "backup"
schedule = "0 6 * * *"
command = "backup.sh"
notify = ["ops", "mail"]
"""


def test_a_jobs_file_declares_notifiers_beside_its_jobs() -> None:
    found = parse_jobs_file(NOTIFIERS_FILE, source="jobs.toml")
    assert [(n.name, n.url) for n in found.notifiers] == [
        ("ops", "https://hooks.example/ops?token=s3cret"), ("mail", "mailto:ops@example.com")]
    assert [j.notify for j in found.jobs] == [("ops", "mail")]


def test_every_bad_notifier_table_is_reported_naming_it_and_its_line() -> None:
    text = """
[[notifier]]
name = "ops"
url = "ftp://files.example/x"

[[notifier]]
name = "ops"
url = "https://hooks.example/a"

[[notifier]]
url = "https://hooks.example/b"
colour = "red"
"""
    with pytest.raises(JobSpecErrors) as caught:
        parse_jobs_file(text, source="jobs.toml")
    message = str(caught.value)
    assert "jobs.toml:2: field 'url': notifier 'ops': must be an http(s):// webhook" in message
    assert "jobs.toml:6: field 'name': notifier 'ops': duplicate name: notifier #1" in message
    assert "jobs.toml:10: field 'name': notifier #3: Field required" in message
    assert "jobs.toml:10: field 'colour': notifier #3: unknown key" in message
