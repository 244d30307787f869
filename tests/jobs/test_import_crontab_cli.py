"""``distcron import-crontab``: a crontab in, a jobs file out, problems on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from distcron.cli import main
from distcron.jobs import load_jobs_file, parse_jobs_toml

CRONTAB = """\
MAILTO=ops@example.com
CRON_TZ=Europe/Paris
0 3 * * * /usr/local/bin/backup.sh
@reboot /usr/local/bin/start-agent
*/5 * * * * /usr/bin/check --quick
"""
DISTCRON = Path(sys.executable).with_name("distcron")


@pytest.fixture
def crontab(tmp_path: Path) -> Path:
    path = tmp_path / "crontab"
    path.write_text(CRONTAB, encoding="utf-8")
    return path


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["import-crontab", *args], input=input)
    return result.exit_code, result.stdout, result.stderr


def test_the_jobs_file_goes_to_stdout_and_warnings_to_stderr(crontab: Path) -> None:
    code, out, err = run(str(crontab))
    assert code == 0
    jobs = parse_jobs_toml(out)
    assert [(j.name, j.timezone, j.owner) for j in jobs] == [
        ("backup-sh", "Europe/Paris", "ops@example.com"),
        ("check", "Europe/Paris", "ops@example.com"),
    ]
    assert out.startswith(f"# Jobs imported from {crontab} by `distcron import-crontab`.")
    assert err == f"{crontab}:4: warning: @reboot is not supported; line skipped\n"


def test_the_jobs_file_is_written_to_the_output_path(crontab: Path, tmp_path: Path) -> None:
    target = tmp_path / "jobs.toml"
    code, out, _ = run(str(crontab), "-o", str(target))
    assert (code, out) == (0, "")
    assert [job.name for job in load_jobs_file(target)] == ["backup-sh", "check"]


def test_the_crontab_can_come_from_stdin() -> None:
    code, out, _ = run("-", input="0 3 * * * a.sh\n")
    assert code == 0
    assert [job.name for job in parse_jobs_toml(out)] == ["a-sh"]


def test_the_tz_option_sets_the_zone_of_lines_before_any_cron_tz() -> None:
    code, out, _ = run("-", "--tz", "America/Chicago", input="0 3 * * * a.sh\n")
    assert code == 0
    assert parse_jobs_toml(out)[0].timezone == "America/Chicago"


def test_an_unknown_tz_option_is_a_usage_error() -> None:
    code, _, err = run("-", "--tz", "America/Chicag", input="0 3 * * * a.sh\n")
    assert code == 2
    assert "did you mean 'America/Chicago'" in err


def test_system_crontabs_are_read_with_the_system_flag() -> None:
    code, out, _ = run("-", "--system", input="17 * * * * root run-parts /etc/cron.hourly\n")
    assert code == 0
    assert parse_jobs_toml(out)[0].command == "run-parts /etc/cron.hourly"


def test_an_invalid_line_writes_nothing_and_exits_2(crontab: Path, tmp_path: Path) -> None:
    crontab.write_text(CRONTAB + "0 25 * * * bad.sh\n", encoding="utf-8")
    target = tmp_path / "jobs.toml"
    code, out, err = run(str(crontab), "-o", str(target))
    assert (code, out) == (2, "")
    assert not target.exists()
    assert f"{crontab}:6: error: job 'bad-sh', field 'schedule':" in err
    assert "1 invalid line(s), nothing written" in err


def test_skip_invalid_converts_the_other_lines(crontab: Path) -> None:
    crontab.write_text(CRONTAB + "0 25 * * * bad.sh\n", encoding="utf-8")
    code, out, err = run(str(crontab), "--skip-invalid")
    assert code == 0
    assert [job.name for job in parse_jobs_toml(out)] == ["backup-sh", "check"]
    assert f"{crontab}:6: skipped: job 'bad-sh'" in err


def test_a_crontab_with_nothing_to_import_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "jobs.toml"
    code, out, err = run("-", "-o", str(target), input="# only\n@reboot start.sh\n")
    assert (code, out) == (1, "")
    assert not target.exists()
    assert "<stdin>: no job to import, nothing written" in err


def test_a_missing_crontab_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "absent"))
    assert code == 2
    assert "absent" in err


def test_the_installed_command_converts_a_crontab_in_a_real_process(crontab: Path) -> None:
    result = subprocess.run(
        [str(DISTCRON), "import-crontab", str(crontab)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [job.name for job in parse_jobs_toml(result.stdout)] == ["backup-sh", "check"]
    assert "@reboot is not supported" in result.stderr
