"""Warm commands: while the keeper runs, a site's manage.py commands (and the Lino
steps of `new`) are forked from its group's zygote, with the same output and exit
code as a plain start."""

import json
import os
import signal
import subprocess

import pytest

from hoststate import wait_for, wait_zygotes_ready
from runner import host_config, LINOHOST

slow = pytest.mark.slow


def warm_commands(host, site):
    """How many warm commands of *site* the keeper has logged."""
    log = (host.root / "logs" / "keeper.log").read_text()
    return log.count(f"{site}: warm command ")


SHELL = ("from django.conf import settings; import sys; "
         "print(settings.SITE.title, settings.SITE.site_prefix, sys.argv[0].endswith('manage.py')); "
         "from lino.api import rt; print(rt.models.contacts.Person.objects.count())")


@slow
def test_manage_is_warm_with_the_same_output_and_exit_code(host, cosi_sites, kserver):
    site = cosi_sites["sqlite"]
    wait_zygotes_ready(host)
    runs = {}
    for how, zygotes in (("warm", True), ("plain", False)):
        with host_config(host, **{"keeper.zygotes": zygotes}):
            before = warm_commands(host, site)
            ok = host("manage", site, "shell", "-c", SHELL)
            bad = host("manage", site, "nosuchcommand", check=False)
            raised = host("manage", site, "shell", "-c", "raise SystemExit(7)", check=False)
            runs[how] = (ok, bad, raised, warm_commands(host, site) - before)
    (ok, bad, raised, n), (pok, pbad, praised, pn) = runs["warm"], runs["plain"]
    log = [line for line in (host.root / "logs" / "keeper.log").read_text().splitlines()
           if "zygote" in line or site in line]
    assert n == 3 and pn == 0, "\n".join([f"{n} warm, {pn} plain", *log[-30:]])
    assert ok.stdout == pok.stdout and "Cosi on sqlite" in ok.stdout, (ok.stdout, pok.stdout)
    assert (bad.returncode, bad.stdout, bad.stderr) == (pbad.returncode, pbad.stdout,
                                                        pbad.stderr)
    assert bad.returncode == 1 and "Unknown command" in bad.stderr
    assert raised.returncode == praised.returncode == 7


@slow
def test_run_all_is_warm_and_reports_each_site(host, cosi_sites, kserver):
    wait_zygotes_ready(host)
    names = sorted(cosi_sites.values())
    before = {n: warm_commands(host, n) for n in names}
    p = host("run", *names, "--json", "--", "shell", "-c", "print('hello from', 1 + 1)")
    results = {r["site"]: r for r in json.loads(p.stdout)}
    assert all(results[n]["exit_code"] == 0 for n in names), results
    assert all("hello from 2" in open(results[n]["log"]).read() for n in names)
    assert sum(warm_commands(host, n) - before[n] for n in names) == len(names)


@slow
def test_ctrl_c_reaches_a_warm_command(host, cosi_sites, kserver):
    site = cosi_sites["sqlite"]
    wait_zygotes_ready(host)
    env = {**os.environ, "LINOHOST_ROOT": str(host.root)}
    p = subprocess.Popen([*LINOHOST, "manage", site, "shell", "-c",
                          "import time; print('sleeping', flush=True); time.sleep(120)"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []                          # Django's shell says what it imported first
    while "sleeping" not in lines and len(lines) < 5:
        lines.append(p.stdout.readline().strip())
    assert "sleeping" in lines, lines
    log = (host.root / "logs" / "keeper.log").read_text()
    pid = int(log.rsplit(f"{site}: warm command ", 1)[1].split(":")[0])
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "KeyboardInterrupt" in err, (p.returncode, err[-500:])
    wait_for("the command's process to end", lambda: not os.path.exists(f"/proc/{pid}"),
             timeout=10)


@slow
def test_new_runs_its_lino_steps_warm(host, cosi_sites, kserver):
    """The second site of a group is initialised by processes forked from its zygote."""
    wait_zygotes_ready(host)
    name = host.unique("warmnew")
    try:
        host("new", name, "--app", "cosi", "--front-end", "extjs", "--db", "sqlite")
        assert warm_commands(host, name) >= 1
        out = host("manage", name, "shell", "-c", SHELL).stdout
        assert f"/{name}/" in out
    finally:
        host("rm", name, "--yes", "--no-archive", check=False)
