"""How much memory a process holds, from /proc (PSS shares what is shared)."""


def of(pid):
    """{"pss_kib": ..., "rss_kib": ...} of *pid* (None for both if it is gone)."""
    out = {"pss_kib": None, "rss_kib": None}
    if not pid:
        return out
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Rss"):
                    out[f"{key.lower()}_kib"] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out
