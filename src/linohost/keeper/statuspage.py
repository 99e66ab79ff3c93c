"""The status page at /_linohost/: one row per site from the keeper's status rows
(the same as `linohost status`), host totals, plain HTML (render/templates/status)."""
import time

from ..processes import memory_of
from ..render import render
from . import states as st


def _age(epoch, now):
    if epoch is None:
        return None
    hours = (now - epoch) / 3600
    return f"{hours:.1f} h ago" if hours < 48 else f"{hours / 24:.1f} d ago"


def page(reply, backups, memory=memory_of, busy=()):
    """The HTML of *reply* (the control command ``status``'s answer), *backups*
    ({site: epoch of its last successful backup}) and *busy* (the sites whose backup
    runs now)."""
    now = time.time()
    sites, pss_total = [], 0
    for row in reply.get("sites", []):
        pss = memory(row["pid"])["pss_kib"] if row["pid"] else None
        pss_total += pss or 0
        peak = row.get("memory_peak_kib")
        sites.append({**row, "pss_mib": None if pss is None else round(pss / 1024),
                      "peak_mib": None if peak is None else round(peak / 1024),
                      "backup_age": _age(backups.get(row["name"]), now),
                      "backing_up": row["name"] in busy})
    zygotes = reply.get("zygotes", [])
    totals = {"workers": sum(1 for s in sites if s["pid"]),
              "zygotes": len(zygotes),
              "zygotes_ready": sum(1 for z in zygotes if z["state"] == st.Z_READY),
              "pss_mib": round(pss_total / 1024)}
    return render("status/page.html.j2", sites=sites, totals=totals)
