"""Backups, restores and clones with real Lino demo data on each engine."""

import datetime
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from hoststate import fingerprint
from runner import kill_at

pytestmark = pytest.mark.slow

def media_files(host, site):
    root = host.root / site / "media"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] != "cache"}


def backup(host, *args):
    return [Path(line) for line in host("backup", *args).stdout.split()]


def members(archive):
    """{name: bytes} of every file in an archive."""
    with tarfile.open(archive) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def leftovers(host):
    """What an interrupted command could leave: journals, unpacked or partial archives,
    staging and dump directories."""
    out = [p for p in (host.root / "run" / "journal").glob("*.json")]
    out += [p for p in (host.root / "backups").glob(".*")]
    out += [p for p in (host.root / "home").glob("dump-*")]
    out += [p for p in (host.root / "home").glob("load-*")]
    return out


def put_media(host, site):
    d = host.root / site / "media" / "uploads"
    d.mkdir(exist_ok=True)
    (d / "contract.txt").write_text(f"a file of {site}\n")
    (d / "photo.bin").write_bytes(bytes(range(256)) * 40)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mysql"])
def test_round_trip_on_each_engine(host, cosi_sites, engine):
    site = cosi_sites[engine]
    put_media(host, site)
    [archive] = backup(host, site)
    assert archive.stat().st_mode & 0o077 == 0
    if engine != "sqlite":    # no database password in the archive: restore makes new ones
        password = (host.root / "secrets" / f"db-{site}").read_text().strip().encode()
        assert len(password) > 16
        assert not any(password in data for data in members(archive).values())
    copy = host.unique("rt")
    host("restore", archive, "--as", copy)
    try:
        assert fingerprint(host, copy) == fingerprint(host, site)
        assert media_files(host, copy) == media_files(host, site)
        rows = {r["name"]: r for r in json.loads(host("list", "--json").stdout)}
        assert rows[copy]["db"] == engine
        # the copy's title is its own name's, not its source's (two "Cosi on ..." otherwise)
        assert rows[copy]["title"] == copy.replace("_", " ").title() != rows[site]["title"]
        assert "no issues" in host("manage", copy, "--", "check").stderr + \
            host("manage", copy, "--", "check").stdout
    finally:
        host("rm", copy, "--yes", "--no-archive")


def test_restore_into_another_engine_through_the_portable_dump(host, cosi_sites):
    site = cosi_sites["sqlite"]
    [archive] = backup(host, site)
    copy = host.unique("xe")
    host("restore", archive, "--as", copy, "--db", "postgresql", "--title", "Moved books")
    try:
        # ids and every row's values survive the engine change
        assert fingerprint(host, copy, ids=False) == fingerprint(host, site, ids=False)
        row = json.loads(host("show", copy, "--json").stdout)
        assert row["db"] == "postgresql" and row["title"] == "Moved books"
    finally:
        host("rm", copy, "--yes", "--no-archive")


def test_clone_has_its_own_database_and_secret_key(host, cosi_sites):
    src = cosi_sites["mysql"]
    dst = host.unique("cl")
    host("clone", src, dst)
    try:
        assert fingerprint(host, dst) == fingerprint(host, src)
        show = {n: json.loads(host("show", n, "--json").stdout) for n in (src, dst)}
        assert show[dst]["db_name"] != show[src]["db_name"]
        key = "from django.conf import settings; print('KEY', settings.SECRET_KEY)"
        keys = {n: host("manage", n, "--", "shell", "-c", key).stdout.split("KEY ")[1].split()[0]
                for n in (src, dst)}
        assert keys[src] != keys[dst]
        pw = {n: (host.root / "secrets" / f"db-{n}").read_text() for n in (src, dst)}
        assert pw[src] != pw[dst]
    finally:
        host("rm", dst, "--yes", "--no-archive")


def test_force_restore_backs_up_first_and_brings_back_the_data(host):
    site = host.unique("fr")
    host("new", site, "--app", "cosi", "--db", "postgresql")
    try:
        before = fingerprint(host, site)
        [archive] = backup(host, site)
        host("manage", site, "--", "shell", "-c",
             "from lino.api import rt; rt.models.contacts.Partner.objects.update(name='changed')")
        assert fingerprint(host, site) != before
        p = host("restore", archive, check=False)
        assert p.returncode == 2 and "--force" in p.stderr
        p = host("restore", archive, "--force")
        assert fingerprint(host, site) == before
        # what was there was archived first
        assert "what was there:" in p.stderr
        safety = Path(p.stderr.split("what was there: ")[1].split(")")[0])
        assert safety.exists() and safety != archive
    finally:
        host("rm", site, "--yes", "--no-archive")


def test_rm_archives_before_destroying(host):
    site = host.unique("ra")
    host("new", site, "--app", "cosi", "--empty")
    before = set((host.root / "backups").glob(f"{site}-*"))
    p = host("rm", site, "--yes")
    [archive] = set((host.root / "backups").glob(f"{site}-*")) - before
    assert "archived" in p.stderr
    host("restore", archive)                          # it comes back
    assert host("show", site, "--json")
    host("rm", site, "--yes", "--no-archive")
    assert set((host.root / "backups").glob(f"{site}-*")) == before | {archive}


def test_prune_keeps_the_policy_and_the_newest(host, cosi_sites):
    """backup.keep_daily = 7, keep_weekly = 4 (the defaults)."""
    site = cosi_sites["sqlite"]
    [real] = backup(host, site)
    d = real.parent
    now = datetime.datetime.now(datetime.timezone.utc)
    made = {}                   # copies of a real archive, one a day, dated back 40 days
    for days in range(1, 41):
        when = (now - datetime.timedelta(days=days)).replace(hour=12, minute=0, second=0,
                                                               microsecond=0)
        path = d / f"{site}-{when:%Y%m%dT%H%M%S%fZ}.tar.gz"
        path.write_bytes(real.read_bytes())
        made[path] = when
    gone_site = host.unique("gone")           # a removed site's only archive, years old
    lonely = d / f"{gone_site}-20200101T000000000000Z.tar.gz"
    lonely.write_bytes(real.read_bytes())

    dry = [line.split(" ", 2)[2] for line in host("prune", "--dry-run").stdout.splitlines()]
    assert all(p.exists() for p in made)      # a dry run deletes nothing
    host("prune")
    kept = {p for p in made if p.exists()}
    assert real.exists() and lonely.exists()
    assert sorted(x for x in dry if Path(x) in made) == sorted(
        str(p) for p in made if p not in kept)
    # the last 7 days: today's (real) and days 1..6 back
    assert {p for p, w in made.items() if (now - w).days < 6} <= kept
    # older ones kept only as the newest of their ISO week, within 4 weeks
    weeks = sorted({w.isocalendar()[:2] for w in [now, *made.values()]}, reverse=True)[:4]
    for p in kept:
        w = made[p]
        if (now - w).days >= 7:
            assert w.isocalendar()[:2] in weeks
            assert w == max(x for x in made.values() if x.isocalendar()[:2] == w.isocalendar()[:2])
    assert all(made[p] > now - datetime.timedelta(days=35) for p in kept)
    for p in d.glob(f"{site}-*T120000000000Z.tar.gz"):
        p.unlink()
    lonely.unlink()


def _tamper(archive, out, member, data=None, drop_manifest=False):
    """A copy of *archive* with one member's bytes changed (manifest kept)."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for m in src.getmembers():
            if drop_manifest and m.name == "manifest.json":
                continue
            f = src.extractfile(m) if m.isfile() else None
            content = f.read() if f else None
            if m.name == member and content is not None:
                content = data
                m.size = len(content)
            dst.addfile(m, io.BytesIO(content) if content is not None else None)


def test_bad_archives_are_refused_and_change_nothing(host, cosi_sites, tmp_path):
    site = cosi_sites["sqlite"]
    [archive] = backup(host, site)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    tampered = tmp_path / "tampered.tar.gz"
    _tamper(archive, tampered, "database/db.sqlite3", b"SQLite format 3\x00 but not really")
    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as t:
        t.add(__file__, "test.py")
    not_tar = tmp_path / "plain.tar.gz"
    not_tar.write_bytes(gzip.compress(b"hello"))
    # made to harm, with checksums of its own: its manifest points outside the archive
    evil = tmp_path / "evil.tar.gz"
    files = members(archive)
    manifest = json.loads(files["manifest.json"])
    manifest["native"] = "../../../../etc/shadow"
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(evil, "w:gz") as t:
        for n, data in files.items():
            info = tarfile.TarInfo(n)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    # its record names a plugin that is not a module name (Lino would import it)
    plugged = tmp_path / "plugged.tar.gz"
    manifest = json.loads(members(archive)["manifest.json"])
    manifest["site"]["plugins"] = ["os; import this"]
    with tarfile.open(plugged, "w:gz") as t:
        for n, data in {**members(archive), "manifest.json": json.dumps(manifest).encode()}.items():
            info = tarfile.TarInfo(n)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    sites_before = host("list", "--json").stdout
    for bad, words in ((tmp_path / "missing.tar.gz", "no such archive"),
                       (truncated, "damaged"), (tampered, "checksum mismatch"),
                       (foreign, "not a linohost archive"), (not_tar, "not a linohost archive"),
                       (evil, "bad manifest"), (plugged, "bad manifest: plugins")):
        name = host.unique("bad")
        p = host("restore", bad, "--as", name, check=False)
        assert p.returncode == 2, (bad, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (bad, p.stderr)
        assert not (host.root / name).exists()
        assert host("list", "--json").stdout == sites_before


def test_killed_restore_is_undone_by_the_next_command(host, cosi_sites):
    """SIGKILL a forced restore after it emptied the database: the next command puts
    the site back as it was."""
    site = host.unique("kr")
    host("new", site, "--app", "cosi", "--db", "mysql")
    try:
        before = fingerprint(host, site)
        [archive] = backup(host, site)
        assert kill_at(host, "loading the mysql database", "restore", archive, "--force")
        assert (host.root / site / "maintenance.html").exists()     # caught half-way
        p = host("show", site, "--json")                            # any next command
        assert "repairing an interrupted restore" in p.stderr
        assert not (host.root / site / "maintenance.html").exists()
        assert fingerprint(host, site) == before
    finally:
        host("rm", site, "--yes", "--no-archive")


def test_killed_backup_leaves_no_partial_archive(host, cosi_sites):
    site = cosi_sites["postgresql"]
    d = host.root / "backups"
    before = set(d.iterdir()) if d.exists() else set()
    assert kill_at(host, "portable dump", "backup", site)
    assert leftovers(host)                        # caught half-way
    p = host("list")                              # any next command cleans up after it
    assert "repairing an interrupted backup" in p.stderr
    assert leftovers(host) == []
    assert set(d.iterdir()) == before
    host("backup", site, "--no-portable")
    new = set(d.iterdir()) - before
    assert len(new) == 1 and all(not p.name.startswith(".") for p in new)


@pytest.mark.parametrize("marker", ["loading the postgresql database", "initialising"])
def test_killed_restore_as_new_leaves_nothing(host, cosi_sites, marker):
    """SIGKILL a restore into a new site while it loads the data, and while it builds
    the caches: the next command removes every trace of the half-made site."""
    from test_lifecycle import assert_no_database
    [archive] = backup(host, cosi_sites["postgresql"], "--no-portable")
    copy = host.unique("kn")
    assert kill_at(host, marker, "restore", archive, "--as", copy)
    assert (host.root / copy).exists()                          # caught half-way
    p = host("list", "--json")
    assert "repairing an interrupted" in p.stderr
    assert copy not in [r["name"] for r in json.loads(p.stdout)]
    assert not (host.root / copy).exists()
    assert not (host.root / "secrets" / f"db-{copy}").exists()
    assert_no_database(host.db_name(copy))
    assert leftovers(host) == []
    host("restore", archive, "--as", copy)                       # the name is free again
    host("rm", copy, "--yes", "--no-archive")


def test_killed_forced_restore_while_backing_up_first(host, cosi_sites):
    """SIGKILL a forced restore while it archives what is there: the site is untouched."""
    site = host.unique("kb")
    [archive] = backup(host, cosi_sites["sqlite"], "--no-portable")
    host("restore", archive, "--as", site)
    try:
        host("manage", site, "--", "shell", "-c",
             "from lino.api import rt; rt.models.contacts.Partner.objects.update(name='mine')")
        before = fingerprint(host, site)
        assert kill_at(host, "Lino's portable dump", "restore", archive, "--as", site, "--force")
        host("list")
        assert leftovers(host) == []
        assert not (host.root / site / "maintenance.html").exists()
        assert fingerprint(host, site) == before
    finally:
        host("rm", site, "--yes", "--no-archive")
