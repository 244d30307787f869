"""A classic crontab converted to jobs that do what cron would have done."""

from __future__ import annotations

import subprocess
from textwrap import dedent

import pytest

from distcron.jobs import JobSpec, convert_crontab, dump_jobs_toml, parse_jobs_toml
from distcron.jobs.crontab import job_name, split_percent, unique_name, with_stdin

REALISTIC = dedent(
    """\
    # Edit this file to introduce tasks to be run by cron.
    # m h  dom mon dow   command
    SHELL=/bin/sh
    PATH=/usr/local/bin:/usr/bin:/bin
    MAILTO=ops@example.com
    HOME=/srv/app

    */15 * * * * cd /srv/app && ./manage.py clearsessions >/dev/null 2>&1
    0 3 * * *    /usr/local/bin/backup.sh --full
    30 3 * * 0   /usr/local/bin/backup.sh --incremental
    @reboot      /usr/local/bin/start-agent

    CRON_TZ=Europe/Paris
    0 8 * * 1-5 mail -s "Good morning" team@example.com%Hello team,%%Standup at 9.%
    5 0 * * *   tar czf /backup/db-$(date +\\%F).tgz /var/lib/db
      # an indented comment
    MAILTO=""
    TZ=Asia/Tokyo
    @daily test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )
    CRON_TZ = "America/New_York"
    RANDOM_DELAY=5
    0 9 1 * * nice -n 10 python3 -u /opt/reports/monthly.py
    """
)


def convert(
    text: str, tz: str = "UTC", system: bool = False
) -> tuple[dict[str, JobSpec], list[str], list[str]]:
    result = convert_crontab(text, tz=tz, system=system)
    jobs = {spec.name: spec for spec in result.specs}
    return jobs, [str(w) for w in result.warnings], [str(e) for e in result.errors]


def test_a_realistic_crontab_converts_every_supported_line() -> None:
    jobs, warnings, errors = convert(REALISTIC)
    assert errors == []
    assert list(jobs) == [
        "manage-py",
        "backup-sh",
        "backup-sh-2",
        "mail",
        "tar",
        "cron-daily",
        "monthly-py",
    ]
    assert warnings == [
        "line 11: @reboot is not supported; line skipped",
        "line 21: RANDOM_DELAY configures the cron daemon; ignored",
    ]


def test_schedules_follow_the_cron_tz_in_force_on_their_line() -> None:
    jobs, _, _ = convert(REALISTIC, tz="Europe/London")
    zones = {name: spec.timezone for name, spec in jobs.items()}
    assert zones == {
        "manage-py": "Europe/London",
        "backup-sh": "Europe/London",
        "backup-sh-2": "Europe/London",
        "mail": "Europe/Paris",
        "tar": "Europe/Paris",
        "cron-daily": "Europe/Paris",  # TZ= is the command's environment, not the schedule's
        "monthly-py": "America/New_York",
    }


def test_schedules_and_macros_are_kept_as_written() -> None:
    jobs, _, _ = convert(REALISTIC)
    assert jobs["backup-sh-2"].schedule == "30 3 * * 0"
    assert jobs["cron-daily"].schedule == "@daily"


def test_assignments_become_the_environment_of_the_jobs_after_them() -> None:
    jobs, _, _ = convert(REALISTIC)
    assert jobs["backup-sh"].env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/srv/app"}
    assert jobs["cron-daily"].env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/srv/app",
        "TZ": "Asia/Tokyo",
    }


def test_jobs_run_in_home_as_under_cron() -> None:
    jobs, _, _ = convert(REALISTIC)
    assert {spec.workdir for spec in jobs.values()} == {"/srv/app"}


def test_mailto_becomes_the_owner_until_it_is_cleared() -> None:
    jobs, _, _ = convert(REALISTIC)
    assert jobs["backup-sh"].owner == "ops@example.com"
    assert jobs["tar"].owner == "ops@example.com"
    assert jobs["cron-daily"].owner is None


def test_each_job_says_which_crontab_line_it_came_from() -> None:
    jobs, _, _ = convert(REALISTIC)
    assert (
        jobs["backup-sh"].description
        == "crontab line 9: 0 3 * * *    /usr/local/bin/backup.sh --full"
    )


def test_an_escaped_percent_becomes_a_plain_percent() -> None:
    jobs, _, _ = convert(REALISTIC)
    assert jobs["tar"].command == "tar czf /backup/db-$(date +%F).tgz /var/lib/db"


def test_text_after_an_unescaped_percent_is_fed_to_the_command_on_stdin() -> None:
    jobs, _, _ = convert("0 8 * * 1-5 tr a-z A-Z | cat%Hello team,%%Standup at 9.%\n")
    command = jobs["tr"].command
    assert command is not None
    run = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=True)
    assert run.stdout == "HELLO TEAM,\n\nSTANDUP AT 9.\n"


def test_a_command_with_stdin_is_written_readably_in_the_jobs_file() -> None:
    jobs, _, _ = convert(REALISTIC)
    assert "Hello team,\n\nStandup at 9.\nDISTCRON_STDIN\n" in dump_jobs_toml([jobs["mail"]])


@pytest.mark.parametrize(
    ("command", "script", "stdin"),
    [
        ("echo hi", "echo hi", ""),
        ("date +\\%F", "date +%F", ""),
        ("cat%one%two", "cat", "one\ntwo\n"),
        ("cat%one%", "cat", "one\n"),
        ("cat%", "cat", ""),
        ("cat%%", "cat", "\n"),
        ("cat%a\\%b", "cat", "a%b\n"),
        ("cat%a\\b", "cat", "a\\b\n"),
        ("echo \\\\%x", "echo \\\\", "x\n"),
        ("cat%trailing\\", "cat", "trailing\\\n"),
    ],
)
def test_percent_signs_are_read_as_cron_reads_them(command: str, script: str, stdin: str) -> None:
    assert split_percent(command) == (script, stdin)


@pytest.mark.parametrize(
    ("script", "stdin"),
    [
        ("cat", "hello\n"),
        ("tr a-z A-Z | cat", "pipe $HOME `x`\n"),
        ("cat # a comment", "DISTCRON_STDIN\nmore\n"),
    ],
)
def test_the_stdin_wrapper_gives_the_whole_script_exactly_that_input(
    script: str, stdin: str
) -> None:
    run = subprocess.run(
        ["/bin/sh", "-c", with_stdin(script, stdin)], capture_output=True, text=True, check=True
    )
    expected = stdin.upper() if script.startswith("tr") else stdin
    assert run.stdout == expected


def test_a_shell_other_than_sh_runs_the_command_through_argv() -> None:
    jobs, _, _ = convert("SHELL=/bin/bash\n0 * * * * echo {a,b}\n")
    assert jobs["echo"].argv == ("/bin/bash", "-c", "echo {a,b}")
    assert jobs["echo"].command is None


def test_a_system_crontab_reads_the_user_column() -> None:
    text = (
        "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n"
        "@weekly www-data php /var/www/cron.php\n"
    )
    jobs, _, errors = convert(text, system=True)
    assert errors == []
    assert jobs["cron-hourly"].command == "cd / && run-parts --report /etc/cron.hourly"
    assert "(user root)" in (jobs["cron-hourly"].description or "")
    assert jobs["cron-php"].schedule == "@weekly"


def test_an_invalid_line_is_an_error_naming_the_line_and_the_rest_still_converts() -> None:
    text = "0 3 * * * ok.sh\n0 25 * * * bad.sh\n0 3 * *\nDISTCRON_JOB=x\n"
    jobs, _, errors = convert(text)
    assert list(jobs) == ["ok-sh"]
    assert errors[0].startswith("line 2: job 'bad-sh', field 'schedule': ")
    assert "hour" in errors[0]
    assert errors[1] == "line 3: expected five time fields and a command"
    assert errors[2] == "line 4: DISTCRON_JOB: names starting with DISTCRON_ are set by distcron"


def test_an_unknown_cron_tz_makes_the_jobs_under_it_invalid() -> None:
    _, _, errors = convert("CRON_TZ=Europe/Pariss\n0 3 * * * a.sh\n")
    assert len(errors) == 1
    assert "line 2: job 'a-sh', field 'timezone': unknown time zone 'Europe/Pariss'" in errors[0]


def test_a_system_line_without_a_command_is_invalid() -> None:
    _, _, errors = convert("0 3 * * * root\n", system=True)
    assert errors == ["line 1: no command (expected a user column then a command)"]


def test_windows_line_endings_are_read_like_unix_ones() -> None:
    jobs, _, errors = convert("MAILTO=a@b.c\r\n0 3 * * * a.sh\r\n")
    assert errors == []
    assert (jobs["a-sh"].command, jobs["a-sh"].owner) == ("a.sh", "a@b.c")


def test_the_converted_jobs_make_a_valid_jobs_file() -> None:
    result = convert_crontab(REALISTIC)
    assert parse_jobs_toml(dump_jobs_toml(result.specs)) == list(result.specs)


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("/usr/local/bin/backup.sh", "backup-sh"),
        ("cd /srv/app && ./manage.py clearsessions", "manage-py"),
        ("FOO=1 BAR=2 /opt/bin/Sync_Data --all", "sync-data"),
        ("nice -n 10 ionice -c3 /usr/bin/rsync -a /a /b", "rsync"),
        ("sleep $((RANDOM % 60)); curl -fsS https://x.io/ping", "curl"),
        ("[ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean", "sessionclean"),
        ("python3 -u /opt/reports/monthly.py", "monthly-py"),
        ("python3 -m reports.monthly", "python3"),
        ("bash -c 'echo hi'", "bash"),
        ("run-parts --report /etc/cron.daily", "cron-daily"),
        ("echo 'unbalanced", "echo"),
        ("cd /tmp", "cd"),
        ("!!!", "job"),
    ],
)
def test_job_names_come_from_the_program_that_does_the_work(command: str, name: str) -> None:
    assert job_name(command) == name


def test_repeated_names_get_numbered_suffixes() -> None:
    used: set[str] = set()
    names = []
    for base in ["backup-sh", "backup-sh", "backup-sh-2", "backup-sh"]:
        names.append(unique_name(base, used))
        used.add(names[-1])
    assert names == ["backup-sh", "backup-sh-2", "backup-sh-2-2", "backup-sh-3"]


def test_a_very_long_program_name_still_makes_a_valid_job_name() -> None:
    jobs, _, errors = convert(f"0 3 * * * /opt/{'x' * 300}.sh\n")
    assert errors == []
    assert len(next(iter(jobs))) <= 128
