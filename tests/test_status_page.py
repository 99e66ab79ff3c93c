"""The status page's history, facts and plots over an initialised host root: a real
slot's rows sampled by the real sampler (keeper/sampler.py) into the history file,
a site record whose app is a distribution of this test's own environment, a real
certificate; the page rendered and its metric scraped."""
import importlib.metadata
import os
import re
import stat
import sys
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from runner import host_config
from tlsca import make_ca

from linohost.keeper import paths, statuspage
from linohost.keeper.history import History
from linohost.keeper.metrics import KeeperCollector
from linohost.keeper.sampler import Sampler
from linohost.keeper.sitefacts import SiteFacts
from linohost.keeper.slot import Done, Slot
from linohost.model import tls
from linohost.model.env import Env
from linohost.model.host import Host
from linohost.model.site import Site


class _Proc:
    pid = os.getpid()


def _with_site(host):
    """Site alpha, its app a module of prometheus_client, in an environment that is
    this test's own; 3 MiB in its directory."""
    host.registry_dir.mkdir(exist_ok=True)
    (host.registry_dir / "alpha.toml").write_text(Site(
        name="alpha", app="promapp", settings_module="prometheus_client.settings",
        env="here", db="sqlite", title="Alpha").dumps())
    (host.envs_dir / "here").mkdir(parents=True)
    (host.envs_dir / "here" / Env.FILENAME).write_text(
        Env(name="here", path=sys.prefix, python=sys.executable).dumps())
    host.site_dir("alpha").mkdir()
    (host.site_dir("alpha") / "data").write_bytes(os.urandom(3 * 2**20))


def _row(html, site):
    return html.split(f"<td>{site}</td>", 1)[1].split("</tr>", 1)[0]


def test_the_page_shows_counts_and_plots_of_the_sampled_day(bare):
    host = Host.open(bare.root)
    _with_site(host)
    slot = Slot("alpha", None, None)
    slot.proc = _Proc()
    reply = lambda: {"sites": [slot.row()], "zygotes": []}      # noqa: E731
    facts, history = SiteFacts(host), History()
    sampler = Sampler(reply, history, paths.history_file(host), lambda: 300, facts=facts)
    now = time.time()
    slot.requests, slot.done = 3, Done([0, 2, 0, 0, 1])
    sampler.sample(now - 7000)                  # two hours ago: in the day, not the hour
    slot.requests, slot.done = 10, Done([0, 7, 0, 0, 3])
    sampler.sample(now - 3000)
    slot.proc = None                            # asleep now
    sampler.sample(now - 300)

    html = statuspage.page(reply(), {}, history=history, facts=facts, interval=300)
    row = _row(html, "alpha")
    version = importlib.metadata.version("prometheus_client")
    assert f"<td>promapp {version}</td><td>here</td>" in row
    assert '<td class="num hour">7 / 2</td><td class="num day">10 / 3</td>' in row
    assert '<td class="num">3</td>' in row                      # disk MiB
    plots = dict(re.findall(r'<svg class="plot (\w+)".*?<polyline points="([^"]*)"', row))
    assert set(plots) == {"memory", "requests"}
    memory = [tuple(map(int, p.split(","))) for p in plots["memory"].split()]
    assert len(memory) == statuspage.SITE_POINTS
    # 48 half hours: awake in the 45th and the 47th (at the top), asleep or no sample
    # in the others (0 MiB: at the bottom)
    awake = [i for i, (_, y) in enumerate(memory) if y == 0]
    assert awake == [44, 46] and all(y == statuspage.HEIGHT for i, (_, y) in enumerate(memory)
                                     if i not in awake)
    assert [x for x, _ in memory] == sorted(x for x, _ in memory)
    assert memory[-1][0] <= statuspage.WIDTH
    assert "memory of workers" in html and html.count("<polyline") == 5     # + host's 3

    newer = Slot("beta", None, None)             # made since the last sample
    html = statuspage.page({"sites": [slot.row(), newer.row()], "zygotes": []}, {},
                           history=history, facts=facts, interval=300)
    assert '<td class="num hour">0 / 0</td>' in _row(html, "beta")

    path = paths.history_file(host)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert History.load(path).total("alpha", "requests", 0) == 10


def test_certificate_expiry_on_the_page_and_in_the_metrics(bare, tmp_path):
    pem = make_ca(tmp_path / "ca")
    with host_config(bare, **{"tls.mode": "files", "tls.cert_file": str(pem["cert"]),
                              "tls.key_file": str(pem["key"])}):
        host = Host.open(bare.root)
        _with_site(host)
        facts = SiteFacts(host)
        end = tls.not_after(pem["cert"])
        assert 86400 < end - time.time() < 3 * 86400            # make_ca: 2 days
        server = host.cfg["server_name"]
        assert facts.certificates() == {server: end}

        reply = {"sites": [Slot("alpha", None, None).row()], "zygotes": []}
        registry = CollectorRegistry()
        registry.register(KeeperCollector(lambda: reply, certificates=facts.certificates))
        samples = {tuple(s.labels.items()): s.value
                   for f in text_string_to_metric_families(generate_latest(registry).decode())
                   for s in f.samples if s.name == "linohost_certificate_expiry_timestamp_seconds"}
        assert samples == {(("name", server),): end}
        html = statuspage.page(reply, {}, facts=facts)
        assert f"{server} until" in html and "<th>certificate days</th>" in html
        assert '<td class="num">2</td>' in _row(html, "alpha")
