"""Job specs: the pydantic model, the TOML jobs file, and crontab import."""

from distcron.jobs.crontab import CrontabImport, CrontabNote, convert_crontab
from distcron.jobs.jobsfile import DEFAULTABLE_KEYS, load_jobs_file, parse_jobs_toml
from distcron.jobs.problems import JobSpecErrors, Problem
from distcron.jobs.spec import Catchup, Concurrency, Executor, JobSpec, build_spec
from distcron.jobs.tomlwrite import dump_jobs_toml

__all__ = [
    "DEFAULTABLE_KEYS",
    "Catchup",
    "Concurrency",
    "CrontabImport",
    "CrontabNote",
    "Executor",
    "JobSpec",
    "JobSpecErrors",
    "Problem",
    "build_spec",
    "convert_crontab",
    "dump_jobs_toml",
    "load_jobs_file",
    "parse_jobs_toml",
]
