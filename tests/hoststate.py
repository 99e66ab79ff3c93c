"""What a host root under test holds and runs (status, pids, rows), and bounded waits
for it."""

import json
import time

def status(host):
    """{site: its row of `linohost status --json`}."""
    return {r["name"]: r for r in json.loads(host("status", "--json").stdout)}


def wait_for(what, condition, timeout=120, every=0.2, detail=None):
    """The first true value of *condition()*, asked every *every* s (bounded); on
    timeout the assertion names *what* and *detail()*."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, \
            f"timed out waiting for {what}" + (f": {detail()}" if detail else "")
        time.sleep(every)


def wait_zygotes_ready(host, timeout=600):
    """Until none of the keeper's zygotes is starting (`status --zygotes`) and one is
    ready; their rows."""
    def zygotes():
        return json.loads(host("status", "--zygotes", "--json").stdout)

    def ready():
        rows = zygotes()
        return any(r["state"] == "ready" for r in rows) and \
            not any(r["state"] in ("starting", "stopped") for r in rows) and rows
    return wait_for("the zygotes", ready, timeout, every=1, detail=zygotes)


def site_pids(h):
    """{site: pid} of the sites' running processes, from `linohost status`."""
    return {r["name"]: r["pid"] for r in json.loads(h("status", "--json").stdout) if r["pid"]}


#: Every table's rows, as a digest per model, computed inside the site.
FINGERPRINT = """
import hashlib, json
from django.apps import apps
out = {}
for m in apps.get_models():
    if m._meta.proxy or not m._meta.managed:
        continue
    rows = sorted(repr(r) for r in m.objects.order_by().values_list())
    out[m._meta.label] = [len(rows), hashlib.sha256("\\n".join(rows).encode()).hexdigest()]
print("FINGERPRINT", json.dumps(out, sort_keys=True))
"""


def fingerprint(host, site, ids=True):
    out = host("manage", site, "--", "shell", "-c", FINGERPRINT).stdout
    data = json.loads(out.split("FINGERPRINT ", 1)[1].splitlines()[0])
    # Tables Django fills by itself at startup, not the site's data.
    for volatile in ("sessions.Session", "contenttypes.ContentType", "auth.Permission"):
        data.pop(volatile, None)
    return data if ids else {k: v[0] for k, v in data.items()}
