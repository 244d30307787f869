"""Job specs: the pydantic model, the TOML jobs file, applying a job set, crontab import."""

from distcron.jobs.crontab import CrontabImport, CrontabNote, convert_crontab
from distcron.jobs.jobset import (
    API_SOURCE,
    JobsDiff,
    OwnedByFile,
    check_api_may_change,
    create_ops,
    diff_jobs,
    diff_notifiers,
    fits_one_transaction,
    keep_paused,
    owned,
    write_diff,
)
from distcron.jobs.jobsfile import (
    DEFAULTABLE_KEYS,
    JobsFile,
    load_jobs_file,
    parse_jobs_file,
    parse_jobs_toml,
)
from distcron.jobs.problems import JobSpecErrors, Problem, plain_message
from distcron.jobs.spec import Catchup, Concurrency, Executor, JobSpec, build_spec
from distcron.jobs.tomlwrite import dump_jobs_toml

__all__ = [
    "API_SOURCE",
    "DEFAULTABLE_KEYS",
    "Catchup",
    "Concurrency",
    "CrontabImport",
    "CrontabNote",
    "Executor",
    "JobSpec",
    "JobSpecErrors",
    "JobsDiff",
    "JobsFile",
    "OwnedByFile",
    "Problem",
    "build_spec",
    "check_api_may_change",
    "convert_crontab",
    "create_ops",
    "diff_jobs",
    "diff_notifiers",
    "dump_jobs_toml",
    "fits_one_transaction",
    "keep_paused",
    "load_jobs_file",
    "owned",
    "parse_jobs_file",
    "parse_jobs_toml",
    "plain_message",
    "write_diff",
]
