"""The status page at /_linohost/: one row per site from the keeper's status rows
(the same as `linohost status`), what :class:`.sitefacts.SiteFacts` knows of it, its
counts and small plots of the last day from :class:`.history.History`, host totals;
plain HTML with inline SVG (render/templates/status), readable without JavaScript."""
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


def buckets(series, start, end, n, combine):
    """*series* [(epoch, value)] as *n* points over [start, end), the values in each
    n-th combined (max, sum; 0 where there is none)."""
    step = (end - start) / n
    found = [[] for _ in range(n)]
    for t, v in series:
        if start <= t < end:
            found[min(n - 1, int((t - start) / step))].append(v)
    return [(start + (i + 0.5) * step, combine(vs) if vs else 0) for i, vs in enumerate(found)]


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


def _plots(history, name, start, end, points):
    """The memory (max per point, MiB) and requests (sum per point) plots of site
    *name* (None: the host, every sample)."""
    memory = [(t, v / 1024) for t, v in history.series(name, "pss_kib")]
    requests = history.series(name, "requests")
    if points:
        memory = buckets(memory, start, end, points, max)
        requests = buckets(requests, start, end, points, sum)
    return {"memory": polyline(memory, start, end), "requests": polyline(requests, start, end)}


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
            extra.update({f"{what}_{window}": history.total(name, what, now - seconds)
                          for what in ("requests", "errors")
                          for window, seconds in (("hour", HOUR), ("day", DAY))},
                         plots=_plots(history, name, start, now, SITE_POINTS))
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
    host = None
    if history:
        available = [(t, v / 1024) for t, v in history.series(None, "available_kib")]
        host = {**_plots(history, None, start, now, None),
                "available": polyline(available, start, now),
                "requests_hour": history.total(None, "requests", now - HOUR),
                "requests_day": history.total(None, "requests", now - DAY)}
    certs = [{"name": n, "until": time.strftime("%Y-%m-%d", time.localtime(end)),
              "days": round((end - now) / 86400)} for n, end in certificates.items()]
    return render("status/page.html.j2", sites=sites, totals=totals, host=host,
                  certificates=certs, history=bool(history), size=WIDTH, height=HEIGHT)
