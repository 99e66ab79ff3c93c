"""One page cache per app (apply/pagecache.py): sites of one app and structure share
their generated front-end files on disk (one read-only copy in ROOT/pagecache, hard
links in each site's media/cache), no site's user can write them, a site whose own
settings add a language has files of its own, a rebuild in one site leaves the others
as they were, and `rm` leaves nothing of a site's files in the store. The front ends
of sites made so are checked in Chromium by test_browser.py."""

import os
import re
import subprocess

import pytest
import requests

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="per-site users need root")]


def cache_files(host, name):
    """{path relative to media/cache: os.stat} of a site's cache."""
    top = host.root / name / "media" / "cache"
    return {str(p.relative_to(top)): p.stat() for p in top.rglob("*") if p.is_file()}


def store_files(host):
    return [p for p in (host.root / "pagecache").rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def alike(host):
    """Two React Cosi demo sites made alike and one that adds French."""
    names = [host.unique("pc"), host.unique("pc"), host.unique("pcfr")]
    for i, name in enumerate(names[:2]):
        host("new", name, "--app", "cosi", "--title", f"Shop number {i}")
    host("new", names[2], "--app", "cosi", "--languages", "en,fr")
    yield names
    for name in names:
        host("rm", name, "--yes", "--no-archive", check=False)


def test_sites_alike_share_their_layouts_and_cannot_write_them(host, alike):
    a, b, fr = alike
    fa, fb, ffr = cache_files(host, a), cache_files(host, b), cache_files(host, fr)
    layouts = [k for k in fa if k.startswith("json/Lino_")]
    assert len(layouts) > 100, sorted(fa)[:5]
    st = fa[layouts[0]]
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o444 and st.st_nlink >= 3
    # Every file is the other's, React's site-wide lino_TYPE_LANG.json (a megabyte
    # each) too: they hold the site's title, which the React client never reads
    # (siteinit.py builds them as the untitled site's).
    assert {k: s.st_ino for k, s in fa.items()} == {k: s.st_ino for k, s in fb.items()}
    site_wide = [k for k in fa if re.fullmatch(r"json/lino_\d+_en\.json", k)]
    assert len(site_wide) == 3 and sum(fa[k].st_size for k in site_wide) > 2**20
    bundles = list((host.root / "envs" / "default").glob(
        "lib/python3*/site-packages/lino_react/react/static/react/*.js"))
    assert bundles and not any(b"site_title" in p.read_bytes() for p in bundles)
    own = [k for k, s in fa.items() if s.st_nlink < 3]
    print(f"\n{a}'s cache: {sum(s.st_size for s in fa.values()) // 1024} KiB, all shared "
          f"but {own}")
    assert not own
    # The site's user can neither write nor replace the stored copy.
    user = f"lino-{a}"
    path = host.root / a / "media" / "cache" / layouts[0]
    store = host.root / "pagecache" / "x"
    for script in (f"open({str(path)!r}, 'a')", f"open({str(store)!r}, 'w')"):
        out = subprocess.run(["runuser", "-u", user, "--", "/usr/bin/python3", "-c", script],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "PermissionError" in out.stderr, out
    # The site that adds a language has layouts of its own where they differ.
    differ = [k for k in layouts if k in ffr and ffr[k].st_ino != fa[k].st_ino]
    french = [k for k in ffr if k.endswith("_fr.json")]
    assert differ and french, (len(differ), len(french))
    # (A French file may be byte for byte an English one: then it is that one.)
    theirs = {s.st_ino for s in fa.values()}
    assert sum(ffr[k].st_ino not in theirs for k in french) > len(french) / 2


def test_both_serve_the_same_file_and_their_pages_agree(host, server, alike):
    """Through the web server (Apache serves media/ itself under mod_wsgi) each site's
    layouts answer with the same bytes, stamped with the lino_version its page names
    (else React reloads for ever)."""
    a, b, _ = alike
    layout = sorted(k for k in cache_files(host, a) if k.startswith("json/"))[0]
    bodies = []
    for name in (a, b):
        r = requests.get(server.url(name) + "media/cache/" + layout, timeout=300)
        assert r.status_code == 200, (name, r.status_code)
        bodies.append(r.content)
        version = float((host.root / name / "lino_version.txt").stat().st_mtime)
        assert r.json()["lv"] == version
        page = requests.get(server.url(name), timeout=300)
        assert page.status_code == 200 and repr(version).encode() in page.content
    assert bodies[0] == bodies[1]


def test_a_site_made_from_its_kinds_template_takes_the_cache_a_build_gives(host):
    """A React demo site made from its kind's demo template takes the template's page
    cache instead of building it (about 3 s of a `new`): the very files the first site
    of the kind built (a kind no other test makes: its first site is the template's)."""
    first, second = host.unique("pcesa"), host.unique("pcesb")
    made = [host("new", name, "--app", "cosi", "--languages", "en,es").stderr
            for name in (first, second)]
    try:
        assert f"initialising {first}: demo" in made[0] and "cache" in made[0], made[0]
        assert f"for {first}" in made[1] and f"initialising {second}: previews\n" in made[1], \
            made[1]
        built, taken = cache_files(host, first), cache_files(host, second)
        assert any(k.endswith("_es.json") for k in built)
        assert {k: s.st_ino for k, s in taken.items()} == {k: s.st_ino for k, s in built.items()}
        # Lino takes a cache file for up to date when it is newer than lino_version.
        version = (host.root / second / "lino_version.txt").stat().st_mtime
        assert all(s.st_mtime > version for k, s in taken.items() if k.startswith("json/"))
    finally:
        for name in (first, second):
            host("rm", name, "--yes", "--no-archive")


def test_a_rebuild_in_one_site_gives_it_files_of_its_own(host, alike):
    """What an admin's "rebuild site cache" runs (Lino's build_site_cache) writes where
    the shared links were: the site gets its own files; the other keeps the shared."""
    a, b, _ = alike
    before = cache_files(host, b)
    host("manage", a, "--", "shell", "-c",
         "from django.conf import settings; settings.SITE.build_site_cache(force=True)")
    fa, fb = cache_files(host, a), cache_files(host, b)
    layouts = [k for k in fa if k.startswith("json/")]
    assert all(fa[k].st_nlink == 1 and fa[k].st_uid != 0 for k in layouts)
    assert {k: s.st_ino for k, s in fb.items()} == {k: s.st_ino for k, s in before.items()}


def test_rm_leaves_nothing_of_its_site_in_the_store(host):
    """What only the removed site linked leaves the store; what others link stays."""
    name = host.unique("pcrm")
    host("new", name, "--app", "cosi", "--languages", "en,nl")
    stored = {p.stat().st_ino for p in store_files(host)}
    files = cache_files(host, name)
    alone = {s.st_ino for s in files.values() if s.st_nlink == 2}   # it and the store
    assert alone and alone <= stored and any(k.endswith("_nl.json") for k in files)
    host("rm", name, "--yes", "--no-archive")
    left = store_files(host)
    assert not alone & {p.stat().st_ino for p in left}
    assert all(p.stat().st_nlink > 1 for p in left)
