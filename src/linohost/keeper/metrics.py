"""Prometheus metrics of the keeper, read from its state at scrape time.

:class:`KeeperCollector` keeps no counters of its own: each scrape asks *status*
(a callable returning what the control command ``status`` answers, see rpc.py)
and turns its rows into metric families, so `linohost status` and the metrics
can never disagree.
"""
import json
import time

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                   HistogramMetricFamily)

from ..processes import memory_of
from . import states as st


def last_backups(path):
    """{site: epoch of its last successful backup} from run/backups.json (see
    apply/backup.py:record_result); {} while there is none or it is unreadable."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {name: entry["ok"] for name, entry in results.items()
            if isinstance(entry, dict) and isinstance(entry.get("ok"), (int, float))}


#: Per-site metrics that are a value of the site's status row: (kind, name, help, key
#: of the row, factor to the metric's unit).
FROM_ROWS = (
    (CounterMetricFamily, "linohost_site_requests", "Requests the site's workers served",
     "requests", 1),
    (CounterMetricFamily, "linohost_site_cold_starts", "Workers started for a request",
     "cold_starts", 1),
    (CounterMetricFamily, "linohost_site_failed_starts",
     "Starts of the site's worker that failed", "failed_starts", 1),
    (GaugeMetricFamily, "linohost_site_last_start_seconds",
     "How long the last worker took to become ready", "last_start_s", 1),
    (CounterMetricFamily, "linohost_site_refused_requests",
     "Requests answered 503 for want of memory", "refused", 1),
    (CounterMetricFamily, "linohost_site_job_wakes", "Workers started for background tasks",
     "job_wakes", 1),
    (GaugeMetricFamily, "linohost_site_memory_limit_bytes",
     "The memory limit of the site's worker", "memory_limit_mib", 1024 * 1024),
)


class KeeperCollector:
    """A prometheus_client collector over the keeper's status rows."""

    def __init__(self, status, backups=None, memory=memory_of, certificates=None):
        self.status = status
        self.backups = backups or (lambda: {})
        self.certificates = certificates or (lambda: {})
        self.memory = memory

    def describe(self):
        return []   # no metric is known before a scrape: the sites come and go

    def collect(self):
        reply = self.status()
        sites = reply.get("sites", [])
        state = GaugeMetricFamily("linohost_site_state",
                                  "1 for the state the site is in", labels=["site", "state"])
        pss = GaugeMetricFamily("linohost_site_pss_bytes",
                                "Proportional set size of the site's worker", labels=["site"])
        uss = GaugeMetricFamily("linohost_site_uss_bytes",
                                "Unique set size of the site's worker", labels=["site"])
        failed = GaugeMetricFamily("linohost_site_failed",
                                   "1 if the site's last start failed", labels=["site"])
        from_rows = [(kind(name, text, labels=["site"]), key, scale)
                     for kind, name, text, key, scale in FROM_ROWS]
        responses = CounterMetricFamily("linohost_site_responses",
                                        "Requests the site's workers answered, by class",
                                        labels=["site", "class"])
        latency = HistogramMetricFamily("linohost_site_request_duration_seconds",
                                        "How long the site's requests took", labels=["site"])
        running = 0
        for row in sites:
            name = row["name"]
            for s in st.STATES:
                state.add_metric([name, s], 1.0 if row["state"] == s else 0.0)
            failed.add_metric([name], 1.0 if row["state"] == st.FAILED else 0.0)
            for cls, n in row["responses"].items():
                responses.add_metric([name, cls], n)
            latency.add_metric([name], list(row["latency"]["le"].items()),
                               sum_value=row["latency"]["sum"])
            for family, key, scale in from_rows:
                # A counter always has a value; a gauge only where the site has one.
                if row[key] or isinstance(family, CounterMetricFamily):
                    family.add_metric([name], row[key] * scale)
            if row["pid"]:
                running += 1
                mem = self.memory(row["pid"])
                if mem["pss_kib"] is not None:
                    pss.add_metric([name], mem["pss_kib"] * 1024)
                    uss.add_metric([name], mem["uss_kib"] * 1024)
        yield from (state, pss, uss, failed, responses, latency,
                    *(family for family, _, _ in from_rows))

        workers = GaugeMetricFamily("linohost_workers", "Site workers running")
        workers.add_metric([], running)
        yield workers
        zygotes = GaugeMetricFamily("linohost_zygotes", "Zygotes by state", labels=["state"])
        for z in st.ZYGOTE_STATES:
            zygotes.add_metric([z], sum(1 for r in reply.get("zygotes", []) if r["state"] == z))
        yield zygotes

        backup = GaugeMetricFamily("linohost_site_last_backup_timestamp_seconds",
                                   "When the site's last successful backup ended (epoch)",
                                   labels=["site"])
        for name, epoch in sorted(self.backups().items()):
            backup.add_metric([name], epoch)
        yield backup
        expiry = GaugeMetricFamily("linohost_certificate_expiry_timestamp_seconds",
                                   "When the certificate the host serves for a name expires "
                                   "(epoch; tls.mode files)", labels=["name"])
        for name, epoch in sorted(self.certificates().items()):
            expiry.add_metric([name], epoch)
        yield expiry
        up = GaugeMetricFamily("linohost_scrape_timestamp_seconds", "When this scrape ran")
        up.add_metric([], time.time())
        yield up
