"""What the keeper compares with the registry every second (supervisor's added /
changed / removed): the sites there, what each one's process depends on, its group."""

from .zygotes import OWN_INI, group_of


class Registry:
    """The host's registry as the keeper reads it (cheaply: file stats)."""

    def __init__(self, host):
        self.host = host
        self._env_cache = {}

    def names(self):
        return set(self.host.site_names())

    def fingerprint(self, name):
        """What a site's process depends on: its record, settings, its own lino.ini,
        wsgi.py (mod_wsgi's restart convention, kept), its environment and the shared
        hook."""
        h = self.host
        reg = h.registry_dir / f"{name}.toml"
        files = [reg, h.site_dir(name) / "settings.py", h.site_dir(name) / OWN_INI,
                 h.site_dir(name) / "apache" / "wsgi.py", h.local_dir / "djangosite_local.py"]
        env = self._env_of(reg)
        if env:
            files.append(h.envs_dir / env / "linohost-env.toml")
        out = []
        for p in files:
            try:
                s = p.stat()
                out.append((s.st_mtime_ns, s.st_size, s.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def _env_of(self, reg):
        try:
            key = reg.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        cached = self._env_cache.get(reg)
        if not cached or cached[0] != key:
            try:
                cached = (key, self.host.site(reg.stem).env)
            except Exception:              # being written: next tick
                return None
            self._env_cache[reg] = cached
        return cached[1]

    def group(self, name):
        """The key of *name*'s group (None while its record is being written)."""
        try:
            return group_of(self.host, self.host.site(name))
        except Exception:                  # noqa: BLE001 - being written: next tick
            return None
