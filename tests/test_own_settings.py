"""A site's own settings: the part of its settings.py below linohost's marker line is
kept byte for byte by every command that rewrites the file, and carried to a copy;
an edited generated part is refused (or, with --force, kept as a dated copy); a file
of an older linohost is migrated, the lines added to it kept."""

import hashlib

import pytest

from linohost.render import site as render_site

pytestmark = pytest.mark.slow

#: What an operator appends: an attribute Lino reads, a Django setting, a comment.
OWN = ('# Our helpdesk is not a demo.\n'
       'SITE.is_demo_site = False\n'
       'ADMINS = [("Own", "own@example.test")]\n')
#: A plugin setting of its own, where Lino reads them (lino.ini, as getlino writes it).
LINO_INI = "[countries]\ncountry_code = DE\n"
#: Prints what OWN and LINO_INI change, as the site sees it.
EFFECT = ("from django.conf import settings; print('OWN', settings.SITE.is_demo_site, "
          "settings.ADMINS, settings.SITE.plugins.countries.country_code)")
IN_EFFECT = "False [('Own', 'own@example.test')] DE"


def settings_of(host, name):
    return host.root / name / "settings.py"


def own_of(host, name):
    parts = render_site.split_settings(settings_of(host, name).read_text())
    assert parts, f"{name}: no marker line"
    return parts[2]


def effect(host, name):
    out = host("manage", name, "--", "shell", "-c", EFFECT).stdout
    return out.split("OWN ", 1)[1].strip()


def digests(host):
    """{path: sha256} of every site's settings.py and of linohost.toml."""
    paths = [host.root / "linohost.toml", *host.root.glob("*/settings.py")]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def own_site(host):
    """A Cosi site with settings of its own appended to its settings.py."""
    name = host.unique("own")
    host("new", name, "--app", "cosi")
    with settings_of(host, name).open("a") as f:
        f.write(OWN)
    (host.root / name / "lino.ini").write_text(LINO_INI)
    yield name
    host("rm", name, "--yes", "--no-archive", check=False)


def test_own_part_is_in_effect_and_kept_by_init(host, own_site):
    assert own_of(host, own_site) == OWN
    assert effect(host, own_site) == IN_EFFECT
    host("init")                                 # rewrites every site's settings
    assert own_of(host, own_site) == OWN
    assert effect(host, own_site) == IN_EFFECT


def test_clone_and_restore_as_carry_the_own_part(host, own_site):
    clone = host.unique("ownclone")
    host("clone", own_site, clone, "--db", "postgresql")
    try:
        assert own_of(host, clone) == OWN
        assert effect(host, clone) == IN_EFFECT
        assert (host.root / clone / "lino.ini").read_text() == LINO_INI
        # The copy's generated part is its own (its name, its database).
        assert f"/{clone}/" in settings_of(host, clone).read_text()
    finally:
        host("rm", clone, "--yes", "--no-archive")
    # A forced restore over the site keeps its settings.py as it is.
    before = settings_of(host, own_site).read_bytes()
    [archive] = host("backup", own_site).stdout.split()
    host("restore", archive, "--force")
    assert settings_of(host, own_site).read_bytes() == before


def test_edited_generated_part_is_refused_then_forced(host, own_site):
    path = settings_of(host, own_site)
    good = path.read_text()
    edited = good.replace("DEBUG = False", "DEBUG = True")
    assert edited != good
    path.write_text(edited)
    try:
        before = digests(host)
        p = host("init", "--mode", "prefix", check=False)
        assert p.returncode == 1, p.stderr
        line = p.stderr.strip()
        assert len(line.splitlines()) == 1 and str(path) in line and "--force" in line, line
        assert digests(host) == before           # nothing rewritten, config unchanged
        p = host("init", "--force")
        copies = list(path.parent.glob("settings.py.2*"))
        assert [c.read_text() for c in copies] == [edited], copies
        assert str(copies[0]) in p.stderr
        assert path.read_text() == good           # regenerated, its own part kept
        assert oct(copies[0].stat().st_mode & 0o777) == oct(path.stat().st_mode & 0o777)
        for c in copies:
            c.unlink()
    finally:
        path.write_text(good)


def test_settings_of_an_older_linohost_are_migrated(host, own_site):
    """No marker (as before): the lines added to what linohost wrote move below it;
    a generated line changed by hand is refused."""
    path = settings_of(host, own_site)
    good = path.read_text()
    generated, _, own = render_site.split_settings(good)
    # As an older linohost wrote it, with a line added in the middle and at the end.
    old = generated.replace("\nDEBUG = False\n", "\nDEBUG = False\nTIME_ZONE = 'Europe/Brussels'\n")
    path.write_text(old + own)
    try:
        p = host("init")
        assert "kept: TIME_ZONE = 'Europe/Brussels'" in p.stderr
        assert "kept: SITE.is_demo_site = False" in p.stderr
        assert own_of(host, own_site) == "TIME_ZONE = 'Europe/Brussels'\n" + OWN
        assert render_site.split_settings(path.read_text())[0] == generated
        # A generated line changed in an old file: refused as an edit.
        path.write_text(generated.replace("DEBUG = False", "DEBUG = True"))
        p = host("init", check=False)
        assert p.returncode == 1 and "--force" in p.stderr
    finally:
        path.write_text(good)
