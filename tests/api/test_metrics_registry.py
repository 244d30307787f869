"""The metrics definitions: one set per registry, bounded labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from distcron.metrics import Metrics


def _names(registry: CollectorRegistry) -> set[str]:
    return {sample.name for family in registry.collect() for sample in family.samples}


def test_each_registry_gets_its_own_metrics_so_tests_do_not_collide() -> None:
    first, second = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    first.launches.labels(job="backup", outcome="succeeded").inc()
    assert first.registry.get_sample_value(
        "distcron_launches_total", {"job": "backup", "outcome": "succeeded"}) == 1
    assert second.registry.get_sample_value(
        "distcron_launches_total", {"job": "backup", "outcome": "succeeded"}) is None


def test_every_metric_of_the_design_is_defined_under_its_name_with_bounded_labels() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.identify("r1")
    metrics.launches.labels(job="j", outcome="failed").inc()
    metrics.launch_lag.observe(0.2)
    metrics.run_duration.labels(job="j").observe(3)
    metrics.slots_skipped.labels(job="j", reason="overlap").inc()
    metrics.slots_missed.labels(job="j").inc()
    metrics.launches_unknown.labels(job="j").inc()
    metrics.launches_lost.labels(job="j").inc()
    metrics.guarded_write_failures.labels(reason="rejected").inc()
    metrics.guarded_write.observe(0.004)
    metrics.leader_changes.inc()
    assert {
        "distcron_launches_total", "distcron_launch_lag_seconds_bucket",
        "distcron_run_duration_seconds_bucket", "distcron_slots_skipped_total",
        "distcron_slots_missed_total", "distcron_launches_unknown_total",
        "distcron_launches_lost_total", "distcron_is_leader", "distcron_leader_changes_total",
        "distcron_store_revision", "distcron_guarded_write_seconds_bucket",
        "distcron_guarded_write_failures_total", "distcron_jobs_loaded", "distcron_workers",
        "distcron_replica_info",
    } <= _names(metrics.registry)
    labels = {name for family in metrics.registry.collect() for sample in family.samples
              for name in sample.labels}
    assert labels == {"job", "outcome", "reason", "replica", "version", "le"}

