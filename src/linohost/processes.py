"""Processes: ending one politely, and what the kernel says of memory (from /proc:
a process's, where PSS shares what is shared and USS is what it alone holds, and
the host's)."""

import subprocess


def end(proc, timeout):
    """SIGTERM to *proc* (a subprocess.Popen), then SIGKILL if it has not ended within
    *timeout* seconds; return its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def memory_of(pid):
    """{"pss_kib", "rss_kib", "uss_kib"} of *pid* (None for each if it is gone)."""
    out = {"pss_kib": None, "rss_kib": None, "uss_kib": None}
    if not pid:
        return out
    private = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Rss"):
                    out[f"{key.lower()}_kib"] = int(rest.split()[0])
                elif key in ("Private_Clean", "Private_Dirty"):
                    private += int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return out
    out["uss_kib"] = private
    return out


def available_kib():
    """The host's MemAvailable: what can be given to new processes without swapping."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise OSError("/proc/meminfo has no MemAvailable")
