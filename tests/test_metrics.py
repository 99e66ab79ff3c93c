"""The keeper's Prometheus collector over real slots (keeper/slot.py) and a real
run/backups.json, rendered and parsed by prometheus_client itself."""
import json
import os
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from linohost.keeper import states as st
from linohost.keeper.metrics import KeeperCollector, last_backups
from linohost.keeper.slot import Done, Slot


class _Proc:
    """What a slot knows of its worker: its pid (here this test's own process)."""
    pid = os.getpid()


def _scrape(collector):
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def _samples(text, name):
    return {tuple(sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples if s.name == name}


def test_metrics_follow_the_slots(tmp_path):
    awake, asleep = Slot("alpha", None, None), Slot("beta", None, None)
    awake.state, awake.proc, awake.requests, awake.cold_starts = st.RUNNING, _Proc(), 7, 2
    awake.last_start_s = 1.25
    asleep.requests_before, asleep.failed_starts = 3, 4
    results = tmp_path / "backups.json"
    results.write_text(json.dumps({"alpha": {"ok": 1700000000.0, "error": None},
                                   "beta": {"failed": 1700000001.0, "error": "disk full"}}))

    def status():
        return {"sites": [awake.row(), asleep.row()], "zygotes": []}

    text = _scrape(KeeperCollector(status, backups=lambda: last_backups(results)))
    assert _samples(text, "linohost_site_requests_total") == {
        (("site", "alpha"),): 7.0, (("site", "beta"),): 3.0}
    assert _samples(text, "linohost_site_state")[(("site", "alpha"), ("state", st.RUNNING))] == 1.0
    assert _samples(text, "linohost_site_state")[(("site", "beta"), ("state", st.SLEEPING))] == 1.0
    assert _samples(text, "linohost_site_cold_starts_total")[(("site", "alpha"),)] == 2.0
    assert _samples(text, "linohost_site_failed_starts_total") == {
        (("site", "alpha"),): 0.0, (("site", "beta"),): 4.0}
    assert _samples(text, "linohost_workers") == {(): 1.0}
    pss = _samples(text, "linohost_site_pss_bytes")
    assert list(pss) == [(("site", "alpha"),)] and pss[(("site", "alpha"),)] > 0
    assert _samples(text, "linohost_site_last_backup_timestamp_seconds") == {
        (("site", "alpha"),): 1700000000.0}

    awake.requests += 5          # the next scrape sees the keeper's state now
    text = _scrape(KeeperCollector(status))
    assert _samples(text, "linohost_site_requests_total")[(("site", "alpha"),)] == 12.0


def test_answers_by_class_and_latency_add_up_across_worker_lives():
    """What the workers that left said (done_before) and what the one now says count
    together; the histogram's buckets are cumulative, its count all requests ended."""
    slot = Slot("alpha", None, None)
    #                   1xx 2xx 3xx 4xx 5xx secs  <=.05 .1 .25 .5 1 2.5 5 10 more
    slot.done_before = Done.heard("0 3 1 0 0 0.5 2 1 1 0 0 0 0 0 0")
    slot.done = Done.heard("0 2 0 1 1 12.25 1 0 0 1 1 0 0 0 1")
    text = _scrape(KeeperCollector(lambda: {"sites": [slot.row()], "zygotes": []}))
    assert _samples(text, "linohost_site_responses_total") == {
        (("class", c), ("site", "alpha")): n for c, n in
        (("1xx", 0.0), ("2xx", 5.0), ("3xx", 1.0), ("4xx", 1.0), ("5xx", 1.0))}
    buckets = {dict(k)["le"]: v for k, v in
               _samples(text, "linohost_site_request_duration_seconds_bucket").items()}
    assert buckets == {"0.05": 3.0, "0.1": 4.0, "0.25": 5.0, "0.5": 6.0, "1.0": 7.0,
                       "2.5": 7.0, "5.0": 7.0, "10.0": 7.0, "+Inf": 8.0}
    assert _samples(text, "linohost_site_request_duration_seconds_count") == {
        (("site", "alpha"),): 8.0}
    assert _samples(text, "linohost_site_request_duration_seconds_sum") == {
        (("site", "alpha"),): 12.75}


def test_no_backups_file(tmp_path):
    assert last_backups(tmp_path / "backups.json") == {}


def test_grafana_dashboard_names_only_metrics_that_exist():
    dashboard = json.loads((Path(__file__).parent.parent / "contrib" / "grafana-linohost.json")
                           .read_text())
    running, failed = Slot("alpha", None, None), Slot("beta", None, None)
    running.state, running.proc, running.last_start_s = st.RUNNING, _Proc(), 0.5
    failed.state = st.FAILED
    text = _scrape(KeeperCollector(lambda: {"sites": [running.row(), failed.row()],
                                            "zygotes": []},
                                   backups=lambda: {"alpha": 1.0},
                                   certificates=lambda: {"example.org": 2.0}))
    exposed = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    named = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"\blinohost_[a-z_]+", target["expr"])}
    assert named and named <= exposed, named - exposed
