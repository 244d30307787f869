"""Every Prometheus metric distcron exports, in one place.

:class:`Metrics` builds them on a given :class:`~prometheus_client.CollectorRegistry`
(the service passes one per process, tests a fresh one each), so nothing is
registered globally. Labels stay bounded: a job name is fine (there are tens or
hundreds), a launch id never is (there is one per slot).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from distcron import __version__

# Launch lag is scheduling delay: milliseconds when healthy, up to the starting
# deadline after a failover.
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
# Runs last from a second to a day.
_RUN_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
# A guarded write is one consensus round: milliseconds, seconds when the store struggles.
_WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The metrics of one process; attribute names follow the metric names."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.launches = Counter(
            "distcron_launches_total",
            "Launches that ended, by job and outcome (the launch record's final state).",
            ["job", "outcome"], registry=registry,
        )
        self.launch_lag = Histogram(
            "distcron_launch_lag_seconds",
            "Time from a slot to the committed launch intent.",
            buckets=_LAG_BUCKETS, registry=registry,
        )
        self.run_duration = Histogram(
            "distcron_run_duration_seconds",
            "How long runs took, from start to end, by job.",
            ["job"], buckets=_RUN_BUCKETS, registry=registry,
        )
        self.slots_skipped = Counter(
            "distcron_slots_skipped_total",
            "Slots not launched on purpose (overlap policy, paused job), by job and reason.",
            ["job", "reason"], registry=registry,
        )
        self.slots_missed = Counter(
            "distcron_slots_missed_total",
            "Slots past their starting deadline (e.g. while no leader existed), by job.",
            ["job"], registry=registry,
        )
        self.launches_unknown = Counter(
            "distcron_launches_unknown_total",
            "Launches whose fate a takeover could not learn (not relaunched), by job.",
            ["job"], registry=registry,
        )
        self.launches_lost = Counter(
            "distcron_launches_lost_total",
            "Launches whose worker vanished while running them, by job.",
            ["job"], registry=registry,
        )
        self.is_leader = Gauge(
            "distcron_is_leader", "1 while this replica is the leader, else 0.",
            registry=registry,
        )
        self.leader_changes = Counter(
            "distcron_leader_changes_total",
            "Times this replica saw the leader change (including to or from itself).",
            registry=registry,
        )
        self.store_revision = Gauge(
            "distcron_store_revision", "The latest store revision this replica has seen.",
            registry=registry,
        )
        self.replica_lag = Gauge(
            "distcron_replica_lag_revisions",
            "Revisions this replica's in-memory state was behind the store, measured "
            "every few seconds after a moment's wait.",
            registry=registry,
        )
        self.guarded_write = Histogram(
            "distcron_guarded_write_seconds",
            "Latency of fence-guarded store transactions.",
            buckets=_WRITE_BUCKETS, registry=registry,
        )
        self.guarded_write_failures = Counter(
            "distcron_guarded_write_failures_total",
            "Guarded writes that failed, by reason (fence lost, conflict, unavailable).",
            ["reason"], registry=registry,
        )
        self.jobs_loaded = Gauge(
            "distcron_jobs_loaded", "Jobs this replica has loaded from the store.",
            registry=registry,
        )
        self.jobs_quarantined = Gauge(
            "distcron_jobs_quarantined",
            "Jobs the leader gives no slots because their schedule cannot be computed "
            "(see `distcron jobs list`).",
            registry=registry,
        )
        self.notifications = Counter(
            "distcron_notifications_total",
            "Notifications sent, by notifier and outcome (delivered, failed, given_up).",
            ["notifier", "outcome"], registry=registry,
        )
        self.workers = Gauge(
            "distcron_workers", "Worker agents registered in the store.", registry=registry,
        )
        self.replicas = Gauge(
            "distcron_replicas", "Replicas registered in the store, as this replica sees them.",
            registry=registry,
        )
        self.worker_running = Gauge(
            "distcron_worker_running",
            "Launches each registered worker reports running (set by the leader).",
            ["worker"], registry=registry,
        )
        self.launches_waiting_for_resources = Gauge(
            "distcron_launches_waiting_for_resources",
            "Launches handed to a batch scheduler (Slurm) that has not started them yet "
            "(set by the leader).", ["job"], registry=registry,
        )
        self.clock_skew = Gauge(
            "distcron_clock_skew_seconds",
            "How far this replica's wall clock is ahead of the median of the replicas' "
            "clocks (negative: behind); 0 before it heard another replica.",
            registry=registry,
        )
        self.clock_unfit = Gauge(
            "distcron_clock_unfit",
            "1 while this replica does not lead because of its clock (skewed beyond "
            "max_clock_skew, or not yet compared), else 0.",
            registry=registry,
        )
        self.replica_info = Info(
            "distcron_replica", "This replica's id and distcron version.", registry=registry,
        )

    def identify(self, replica_id: str) -> None:
        """Set ``distcron_replica_info{replica, version}`` for this process."""
        self.replica_info.info({"replica": replica_id, "version": __version__})
