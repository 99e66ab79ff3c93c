"""Alerts by mail to the host's ``admin_email`` (through its ``[mail]``), sent by the
keeper, at most one per subject per hour (a subject names what is wrong, never how
much: the numbers are in the body) (kept across restarts in
``run/keeper-alerts.json``, root's only):

- a site failed to start ``alerts.failed_starts`` times in a row, or its worker was
  killed over its memory limit;
- a site's last backup failed, or its newest is older than ``alerts.backup_days`` days
  (sites never backed up are not reported: `linohost config systemd` installs the
  nightly backup);
- a certificate the host serves (the operator's files, or mod_md's or certbot's)
  expires within ``alerts.certificate_days``;
- the host's available memory is under ``keeper.min_free_memory``, or the host root's
  disk has less than ``alerts.min_free_disk`` MiB free.

Without ``admin_email`` or ``mail.host`` an alert is only logged.
"""

import email.message
import json
import logging
import shutil
import smtplib
import ssl
import time

from .. import processes
from ..fs import atomic_write
from ..model import archive, tls
from . import states as st

log = logging.getLogger("linohost.keeper")

#: Seconds between two alerts of one subject, and between two looks.
EVERY = 3600
LOOK = 15


class Alerts:
    def __init__(self, keeper):
        self.keeper, self.host = keeper, keeper.host
        self.path = self.host.run_dir / "keeper-alerts.json"
        self.next_look = 0.0
        try:
            self.sent = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.sent = {}

    def tick(self):
        """Look at the host every LOOK seconds; send what is new."""
        if time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + LOOK
        for subject, body in self.look():
            self.alert(subject, body)

    def look(self):
        """[(subject, body)] of what is wrong now."""
        cfg, out = self.host.cfg, []
        for slot in self.keeper.slots.values():
            if slot.state == st.FAILED and slot.failures >= cfg["alerts.failed_starts"]:
                out.append((f"{slot.name} fails to start",
                            f"It failed to start {slot.failures} times in a row; its last "
                            f"failure: {slot.last_failure}\n\n"
                            f"linohost logs {slot.name}\n{self._log_tail(slot.name)}"))
        out += self._backups(cfg)
        out += self._certificates(cfg)
        if self.keeper.min_free_kib:
            try:
                available = processes.available_kib()
            except OSError:
                available = None
            if available is not None and available < self.keeper.min_free_kib:
                out.append(("the host is short of memory",
                            f"{available // 1024} MiB available, keeper.min_free_memory is "
                            f"{self.keeper.min_free_kib // 1024} MiB."))
        free = shutil.disk_usage(self.host.root).free // (1 << 20)
        if free < cfg["alerts.min_free_disk"]:
            out.append((f"the disk of {self.host.root} is nearly full",
                        f"{free} MiB free, alerts.min_free_disk is {cfg['alerts.min_free_disk']} MiB."))
        return out

    def killed_for_memory(self, slot, reason):
        """*slot*'s worker was killed over its memory limit: say so at once."""
        self.alert(f"{slot.name}: worker killed over its memory limit",
                   f"{reason}\n\nlinohost logs {slot.name}\n{self._log_tail(slot.name)}")

    def alert(self, subject, body):
        """Send (or log) *subject* unless it was sent within the hour."""
        now = time.time()
        if now - self.sent.get(subject, 0) < EVERY:
            return
        cfg = self.host.cfg
        log.warning("alert: %s", subject)
        if not (cfg["admin_email"] and cfg["mail.host"]):
            self.sent[subject] = now
            self._save()
            return
        self.sent[subject] = now                    # (sent in the background)
        self._save()
        self.keeper.responders.submit(self._send, cfg, subject, body)

    def _send(self, cfg, subject, body):
        msg = email.message.EmailMessage()
        msg["Subject"] = f"[linohost {cfg['server_name']}] {subject}"
        msg["From"] = cfg["mail.sender"].format(site="linohost", server=cfg["server_name"])
        msg["To"] = cfg["admin_email"]
        msg.set_content(f"{subject}.\n\n{body}\n\n(host root {self.host.root}; at most one "
                        f"mail per subject per hour)\n")
        try:
            if cfg["mail.security"] == "ssl":
                smtp = smtplib.SMTP_SSL(cfg["mail.host"], cfg["mail.port"], timeout=30)
            else:
                smtp = smtplib.SMTP(cfg["mail.host"], cfg["mail.port"], timeout=30)
            with smtp:
                if cfg["mail.security"] == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if cfg["mail.user"]:
                    password = (self.host.secrets_dir / "smtp.password").read_text().strip()
                    smtp.login(cfg["mail.user"], password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:
            log.error("alert %r not sent to %s: %s", subject, cfg["admin_email"], e)
            self.sent.pop(subject, None)            # the next look tries again

    # -- what it looks at ------------------------------------------------------------
    def _backups(self, cfg):
        newest = {}
        d = self.host.backups_dir
        for p in d.glob(f"*{archive.SUFFIX}") if d.is_dir() else ():
            parsed = archive.parse_name(p.name)
            if parsed:
                newest[parsed[0]] = max(newest.get(parsed[0], 0), parsed[1].timestamp())
        try:
            results = json.loads(self.host.backup_results.read_text())
        except (OSError, ValueError):
            results = {}
        out = []
        for site in self.keeper.slots:
            r = results.get(site, {})
            if r.get("error") and r.get("failed", 0) > r.get("ok", 0):
                out.append((f"{site}: its backup failed",
                            f"Its last backup failed at {time.ctime(r['failed'])}: "
                            f"{r['error']}"))
            if site in newest:
                days = (time.time() - newest[site]) / 86400
                if days > cfg["alerts.backup_days"]:
                    out.append((f"{site}: its newest backup is too old",
                                f"Its newest backup is {days:.0f} days old. "
                                f"Back it up: linohost backup {site}"))
        return out

    def _certificates(self, cfg):
        out = []
        names = [cfg["server_name"], *(s.domain for s in self._sites() if s.domain)]
        for name, (cert, _) in tls.certificates(cfg, names).items():
            end = tls.not_after(cert)
            if end is None:
                continue
            days = (end - time.time()) / 86400
            if days < cfg["alerts.certificate_days"]:
                out.append((f"the certificate of {name} expires soon",
                            f"{cert}: valid until {time.ctime(end)} ({days:.0f} days)."))
        return out

    def _sites(self):
        for name in self.keeper.slots:
            try:
                yield self.host.site(name)
            except Exception:               # noqa: BLE001 - being written: next look
                continue

    def _log_tail(self, name, lines=10):
        try:
            text = (self.host.logs_dir / "sites" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _save(self):
        try:
            atomic_write(self.path, json.dumps(self.sent), mode=0o600)
        except OSError as e:
            log.warning("not keeping the alerts sent: %s", e)
