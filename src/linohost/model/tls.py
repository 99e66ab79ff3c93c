"""HTTPS of a host: which certificate each vhost uses, checked before anything is written.

``tls.mode`` is ``off``, ``files`` (PEM files the operator provides: tls.cert_file and
tls.key_file for server_name, tls.cert_dir/DOMAIN.crt and DOMAIN.key for a site's own
--domain) or ``acme`` (the system Apache's mod_md obtains and renews them, or for
nginx certbot: :mod:`..apply.system_nginx`).
"""

import os
import ssl
from pathlib import Path

from ..errors import UsageError


def enabled(cfg):
    return cfg["tls.mode"] != "off"


def scheme(cfg):
    return "https" if enabled(cfg) else "http"


def deploy_warnings(cfg):
    """What Django's `check --deploy` still reports for a site of this host (as the
    shared hook sets it up; its operator's part may change more), and why:
    ``[(check id, reason)]``. Without TLS a site cannot insist on HTTPS."""
    if not enabled(cfg):
        why = "tls.mode is off: the site is reached over plain HTTP"
        return [("security.W004", f"no HSTS ({why})"),
                ("security.W008", f"no redirect to HTTPS ({why})"),
                ("security.W012", f"the session cookie is not secure-only ({why})")]
    if cfg["tls.hsts_max_age"] == 0:
        return [("security.W004", "no HSTS (tls.hsts_max_age is 0)")]
    return []


def check(cfg):
    """Raise UsageError unless the TLS keys of *cfg* make a usable set."""
    mode = cfg["tls.mode"]
    if mode == "files":
        for key in ("tls.cert_file", "tls.key_file"):
            if not cfg[key]:
                raise UsageError(f"tls.mode is files but {key} is not set")
            _readable_pem(cfg[key], key)
        if cfg["tls.cert_dir"] and not Path(cfg["tls.cert_dir"]).is_dir():
            raise UsageError(f"tls.cert_dir: no such directory: {cfg['tls.cert_dir']}")
    elif mode == "acme":
        if not cfg["tls.acme_directory"].startswith("https://"):
            raise UsageError(f"tls.acme_directory must be an https:// URL, "
                             f"not {cfg['tls.acme_directory']!r}")
        if cfg["tls.acme_ca_file"]:
            _readable_pem(cfg["tls.acme_ca_file"], "tls.acme_ca_file")


def check_serve(cfg):
    """`serve` takes its certificates from files in every mode but off (mod_md, the ACME
    client, runs in the system Apache only)."""
    if cfg["tls.mode"] == "acme" and not (cfg["tls.cert_file"] and cfg["tls.key_file"]):
        raise UsageError("serve under tls.mode acme needs tls.cert_file and tls.key_file "
                         "(ACME certificates are obtained for the system's web server: "
                         f"`linohost config {cfg['web_server']} --write`)")
    if enabled(cfg):
        check(cfg.replace(tls__mode="files"))


def _readable_pem(path, key):
    p = Path(path)
    if not p.is_absolute():
        raise UsageError(f"{key} must be an absolute path, not {path!r}")
    try:
        text = p.read_text(encoding="ascii", errors="replace")
    except OSError as e:
        raise UsageError(f"{key}: cannot read {path}: {e.strerror}") from None
    if "-----BEGIN " not in text:
        raise UsageError(f"{key}: {path} is not a PEM file")


def certificate(cfg, name):
    """(cert file, key file) of the vhost named *name* in files mode: the site's own pair
    from tls.cert_dir if both files are there, else the server's."""
    if cfg["tls.cert_dir"]:
        d = Path(cfg["tls.cert_dir"])
        own = (d / f"{name}.crt", d / f"{name}.key")
        if all(os.path.exists(p) for p in own):
            return tuple(map(str, own))
    return cfg["tls.cert_file"], cfg["tls.key_file"]


def certbot_files(cfg, name):
    """(certificate chain, key) of *name* where certbot keeps them (acme with nginx)."""
    d = Path(cfg["certbot.config_dir"]) / "live" / name
    return d / "fullchain.pem", d / "privkey.pem"


def md_files(cfg, name):
    """(certificate chain, key) of *name* where mod_md keeps those in use (acme with
    Apache; a renewed one waits in staging/ until Apache's next graceful restart)."""
    d = Path(cfg["apache.md_store_dir"]) / "domains" / name
    return d / "pubcert.pem", d / "privkey.pem"


def certificates(cfg, names):
    """{name: (cert file, key file)} of the vhosts *names*: the operator's files, or
    where the ACME client of the web server keeps them ({} with tls off)."""
    mode = cfg["tls.mode"]
    if mode == "files":
        return {n: certificate(cfg, n) for n in names}
    if mode == "acme":
        where = certbot_files if cfg["web_server"] == "nginx" else md_files
        return {n: tuple(map(str, where(cfg, n))) for n in names}
    return {}


def not_after(cert):
    """When the PEM certificate file *cert* expires (epoch); None if it is unreadable."""
    try:
        return ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(str(cert))["notAfter"])
    except (OSError, ValueError, KeyError, ssl.SSLError):
        return None


def apache_modules(cfg):
    """Debian's names of the Apache modules HTTPS needs under *cfg*."""
    if not enabled(cfg):
        return ()
    return (("socache_shmcb", "ssl", "headers", "alias")      # ssl.conf needs socache_shmcb
            + (("md",) if cfg["tls.mode"] == "acme" else ()))
