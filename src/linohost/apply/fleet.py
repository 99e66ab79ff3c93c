"""`linohost run`: one manage.py command on many sites, in parallel.

Every site runs to the end whatever the others do; each one's output goes to
``ROOT/logs/run/STAMP/SITE.log`` and the result is one row per site.
"""

import datetime
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass

from ..errors import UsageError
from ..model.names import did_you_mean
from . import warm


@dataclass
class Result:
    site: str
    exit_code: int
    duration: float        # seconds
    last_line: str
    log: str

    @property
    def ok(self):
        return self.exit_code == 0

    def as_dict(self):
        return {**asdict(self), "ok": self.ok}


def select(host, names=(), all_sites=False, env=None):
    """The sites named, or all, or all of an environment; bad input raises UsageError."""
    chosen = sum(bool(x) for x in (names, all_sites, env))
    if chosen != 1:
        raise UsageError("name the sites, or use --all or --env NAME (one of them)")
    if all_sites:
        sites = host.sites()
    elif env:
        host.env(env)                              # raises for an unknown environment
        sites = [s for s in host.sites() if s.env == env]
    else:
        unknown = [n for n in names if not host.has_site(n)]
        if unknown:
            raise UsageError(f"no site named {', '.join(map(repr, unknown))} in {host.root}"
                             + did_you_mean(unknown[0], host.site_names(), "linohost list"))
        sites = [host.site(n) for n in dict.fromkeys(names)]
    if not sites:
        raise UsageError("no sites to run on")
    return sites


def run(ctx, sites, args, jobs, on_done=lambda result: None, timeout=None):
    """Run ``manage.py ARGS`` on every site, *jobs* at a time; return Results in site order."""
    host, system = ctx.host, ctx.system
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    log_dir = host.logs_dir / "run" / stamp
    log_dir.mkdir(parents=True)     # root's: the logs are opened here, not by the sites

    def one(site):
        env = host.env(site.env)
        project = host.site_dir(site.name)
        log = log_dir / f"{site.name}.log"
        start = time.monotonic()
        code = warm.run_logged(ctx, site, args, log) if timeout is None else None
        if code is None:
            code = system.run_site_logged([env.bin_python, project / "manage.py", *args],
                                          site.name, log, cwd=project, timeout=timeout)
        return Result(site.name, code, time.monotonic() - start, _last_line(log), str(log))

    results = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, s) for s in sites]
        for f in as_completed(futures):
            r = f.result()
            results[r.site] = r
            on_done(r)
    return [results[s.name] for s in sites]


def _last_line(path):
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()
             if ln.strip()]
    return lines[-1].strip() if lines else ""
