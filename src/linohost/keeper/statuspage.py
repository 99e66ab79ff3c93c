"""The status page at /_linohost/: one row per site from the keeper's status rows
(the same as `linohost status`), what :class:`.sitefacts.SiteFacts` knows of it, its
counts and small plots of the last day from :class:`.history.History`, host totals;
plain HTML with inline SVG (render/templates/status), readable without JavaScript."""
import bisect
import time

from ..processes import memory_of
from ..render import render
from . import states as st
from .sitefacts import UNKNOWN

#: The size of a plot (SVG user units) and the points of a site's plots over the day.
WIDTH, HEIGHT, SITE_POINTS = 96, 20, 48
HOUR, DAY = 3600, 86400


def _age(epoch, now):
    if epoch is None:
        return None
    hours = (now - epoch) / 3600
    return f"{hours:.1f} h ago" if hours < 48 else f"{hours / 24:.1f} d ago"


def buckets(times, values, start, end, n, combine):
    """*values* at *times* (ascending) as *n* points over [start, end), the values in
    each n-th combined (max, sum; 0 where there is none)."""
    step = (end - start) / n
    cuts = [bisect.bisect_left(times, start + k * step) for k in range(n + 1)]
    return [(start + (k + 0.5) * step, combine(values[a:b]) if b > a else 0)
            for k, (a, b) in enumerate(zip(cuts, cuts[1:]))]


def polyline(series, start, end):
    """{"points": SVG polyline points of *series* over [start, end], "top": its largest
    value (drawn at the top)}; no points when every value is 0."""
    top = max((v for _, v in series), default=0)
    if not top:
        return {"points": "", "top": 0}
    span = (end - start) or 1
    return {"points": " ".join(f"{round((t - start) / span * WIDTH)},"
                               f"{round(HEIGHT - v / top * HEIGHT)}" for t, v in series),
            "top": top}


def _site(history, name, now, start):
    """Site *name*'s requests and 5xx in the last hour and day, and its memory (max
    per point, MiB) and requests (sum per point) plots of SITE_POINTS points."""
    times, values = history.ordered(name)
    hour, day = (bisect.bisect_right(times, now - s) for s in (HOUR, DAY))
    memory = [v / 1024 for v in values.get("pss_kib", ())]
    requests, errors = values.get("requests", []), values.get("errors", [])
    return {"requests_hour": sum(requests[hour:]), "errors_hour": sum(errors[hour:]),
            "requests_day": sum(requests[day:]), "errors_day": sum(errors[day:]),
            "plots": {"memory": polyline(buckets(times, memory, start, now, SITE_POINTS,
                                                 max), start, now),
                      "requests": polyline(buckets(times, requests, start, now, SITE_POINTS,
                                                   sum), start, now)}}


def _host(history, now, start):
    """The host's plots (every sample: the workers' memory and the available memory,
    MiB; requests) and its requests in the last hour and day."""
    times, values = history.ordered(None)
    line = lambda field, scale=1: polyline(                           # noqa: E731
        [(t, v / scale) for t, v in zip(times, values[field])], start, now)
    return {"memory": line("pss_kib", 1024), "available": line("available_kib", 1024),
            "requests": line("requests"),
            "requests_hour": history.total(None, "requests", now - HOUR),
            "requests_day": history.total(None, "requests", now - DAY)}


def page(reply, backups, memory=memory_of, busy=(), history=None, facts=None,
         interval=300):
    """The HTML of *reply* (the control command ``status``'s answer), *backups*
    ({site: epoch of its last successful backup}), *busy* (the sites whose backup
    runs now), *history* (:class:`.history.History`, sampled every *interval*
    seconds) and *facts* (:class:`.sitefacts.SiteFacts`)."""
    now = time.time()
    start = now - (history.size * interval if history else DAY)
    certificates = facts.certificates() if facts else {}
    sites, pss_total = [], 0
    for row in reply.get("sites", []):
        name = row["name"]
        pss = memory(row["pid"])["pss_kib"] if row["pid"] else None
        pss_total += pss or 0
        peak = row.get("memory_peak_kib")
        extra = facts.site(name) if facts else dict(UNKNOWN)
        disk = extra.get("disk_bytes")
        cert = certificates.get(facts.vhost(name)) if certificates else None
        if history:
            extra.update(_site(history, name, now, start))
        sites.append({**row, **extra, "pss_mib": None if pss is None else round(pss / 1024),
                      "peak_mib": None if peak is None else round(peak / 1024),
                      "disk_mib": None if disk is None else round(disk / 2**20),
                      "cert_days": None if cert is None else round((cert - now) / 86400),
                      "backup_age": _age(backups.get(name), now),
                      "backing_up": name in busy})
    zygotes = reply.get("zygotes", [])
    totals = {"workers": sum(1 for s in sites if s["pid"]),
              "zygotes": len(zygotes),
              "zygotes_ready": sum(1 for z in zygotes if z["state"] == st.Z_READY),
              "pss_mib": round(pss_total / 1024)}
    host = _host(history, now, start) if history else None
    certs = [{"name": n, "until": time.strftime("%Y-%m-%d", time.localtime(end)),
              "days": round((end - now) / 86400)} for n, end in certificates.items()]
    return render("status/page.html.j2", sites=sites, totals=totals, host=host,
                  certificates=certs, history=bool(history), size=WIDTH, height=HEIGHT)
