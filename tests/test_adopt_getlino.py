"""`linohost adopt` of a Cosi site made by getlino itself (from PyPI, in its own
virtualenv, configured with a HOME under /tmp and run as `nobody`, as
bench/bench_lifecycle.py runs it: no apt-get, no services). The site gets settings
of its own (a Site attribute and a plugin option in its settings.py, a time zone in
getlino's shared lino_local/settings.py) and rows after startsite. Adopted: the same
rows per table, the customisation in effect, its SECRET_KEY kept (a session made
against the source still signs its user in), the source directory unchanged."""

import hashlib
import json
import shutil
import stat
import sys
import tomllib
from pathlib import Path

import pytest

from leftovers import assert_one_error_line
from test_adopt import ADD_ROW, names, rows, tree_hash

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_lifecycle import Getlino, GetlinoUnavailable  # noqa: E402

pytestmark = pytest.mark.slow

OWN_ATTR = ("    log_each_action_request = False\n",
            "    log_each_action_request = False\n    is_demo_site = False\n")
OWN_PLUGIN = ("        yield 'help', 'make_help_pages', True\n",
              "        yield 'help', 'make_help_pages', True\n"
              "        yield 'countries', 'country_code', 'DE'\n")
SHARED_TZ = ('TIME_ZONE = "Europe/Brussels"', 'TIME_ZONE = "Europe/Tallinn"')
#: Signs robin in through Lino's JSON API (as a browser does); writes the session id.
SIGN_IN = '''from django.test import Client
c = Client(HTTP_HOST="localhost")
r = c.post("/api/about/About/-99998", {"an": "sign_in", "username": "robin", "password": "1234"})
assert r.status_code == 200 and r.json()["success"], r.content[:300]
open(OUT, "w").write(c.cookies["sessionid"].value)
'''
#: Who the session signs in on a site, under its key and under another one.
WHO = '''from importlib import import_module
from django.conf import settings
from django.http import HttpRequest
from django.test.utils import override_settings
from lino.core.auth import get_user
store = import_module(settings.SESSION_ENGINE).SessionStore
r = HttpRequest()
r.session = store(SID)
with override_settings(SECRET_KEY="another key of at least fifty characters, not the site's"):
    other = bool(store(SID).load())
print("WHO", getattr(get_user(r), "username", None), other)
'''
EFFECT = ("from django.conf import settings as s; from lino.api import rt; print('OWN', "
          "s.SITE.is_demo_site, s.SITE.plugins.countries.country_code, s.TIME_ZONE, "
          "s.SITE.plugins.help.make_help_pages, "
          "rt.models.countries.Country.objects.filter(isocode='XA').count())")


@pytest.fixture(scope="module")
def getlino():
    """getlino, configured, with site gl1 (Cosi, SQLite) customised and signed in to:
    (Getlino, project directory, robin's session id)."""
    try:
        g = Getlino()
        g.configure()
        g.startsite("gl1")
    except GetlinoUnavailable as e:
        pytest.fail(f"getlino cannot run here: {e}")
    project = g.home / "lino" / "lino_local" / "gl1"
    for path, (old, new) in ((project / "settings.py", OWN_ATTR),
                             (project / "settings.py", OWN_PLUGIN),
                             (project.parent / "settings.py", SHARED_TZ)):
        text = path.read_text()
        assert old in text, (path, old)
        path.write_text(text.replace(old, new))
    sid = g.home / "sid"
    g.manage("gl1", "shell", "-c", ADD_ROW)
    g.manage("gl1", "shell", "-c", f"OUT = {str(sid)!r}\n" + SIGN_IN)
    yield g, project, sid.read_text().strip()
    g.close()


def source_key(project):
    """The SECRET_KEY in the getlino site's settings.py (read as the test, not printed)."""
    for line in (project / "settings.py").read_text().splitlines():
        if line.startswith("SECRET_KEY = "):
            return line.split("=", 1)[1].strip().strip("'\"")
    raise AssertionError("no SECRET_KEY line")


@pytest.fixture(scope="module")
def adopted(host, getlino):
    """Every site of the getlino host adopted with `--getlino CONFIG --all`: gl1, and
    glbroken (settings that raise), which fails and is left as it was: (name, the
    command's result, tree hash and rows before)."""
    g, project, _ = getlino
    broken = project.parent / "glbroken"
    broken.mkdir()
    (broken / "manage.py").write_text((project / "manage.py").read_text().replace(
        "lino_local.gl1.", "lino_local.glbroken."))
    assert (broken / "manage.py").read_text() != (project / "manage.py").read_text()
    (broken / "env").symlink_to(project / "env")
    (broken / "settings.py").write_text("raise RuntimeError('broken on purpose')\n")
    before, counts = tree_hash(g.home / "lino"), rows(project / "gl1")
    p = host("adopt", "--getlino", g.home / ".getlino.conf", "--all", "--yes", "--json",
             check=False, env={"HOME": str(g.home)})
    yield "gl1", p, before, counts
    host("rm", "gl1", "--yes", "--no-archive", check=False)
    shutil.rmtree(broken)


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def test_plan_says_getlino_and_carries_its_settings(host, getlino):
    g, project, _ = getlino
    p = host("adopt", project, "--as", host.unique("gdry"), "--dry-run", "--json",
             env={"HOME": str(g.home)})
    plan = json.loads(p.stdout)["plan"]
    assert plan["kind"] == "getlino"
    assert plan["getlino_config"] == str(g.home / ".getlino.conf")
    assert plan["python"] == str(project / "env" / "bin" / "python")
    assert plan["app"] == "cosi" and plan["secret_key_kept"] is True
    own = plan["own"]
    assert "SITE.is_demo_site = False" in own
    assert "SITE.plugins.countries.country_code = 'DE'" in own
    assert "TIME_ZONE = 'Europe/Tallinn'" in own          # from the shared settings
    assert "EMAIL_SUBJECT_PREFIX = '[gl1] '" in own
    assert "# EMAIL_HOST: linohost provides it" in own    # the host's mail, not getlino's
    assert "# SITE.server_url: of the old place" in own
    assert source_key(project) not in p.stdout + p.stderr
    q = host("adopt", project, "--as", host.unique("gdry"), "--dry-run",
             env={"HOME": str(g.home)})
    text = q.stdout + q.stderr
    assert "getlino site" in text and "kept as the site's own" in text
    assert source_key(project) not in text


def test_same_rows_settings_in_effect_source_untouched(host, getlino, adopted):
    g, project, _ = getlino
    name, p, before, counts = adopted
    assert rows(host.root / name / "default.db") == counts
    out = host("manage", name, "--", "shell", "-c", EFFECT).stdout
    assert out.split("OWN ", 1)[1].strip() == "False DE Europe/Tallinn True 1"
    assert tree_hash(g.home / "lino") == before


def test_secret_key_kept_and_never_printed(host, getlino, adopted):
    g, project, sid = getlino
    name, p, _, _ = adopted
    key = source_key(project)
    assert key not in p.stdout + p.stderr
    for f in (host.root / "secrets" / f"key-{name}", host.root / "secrets" / f"kept-key-{name}"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert f.read_text().strip() == key
    out = host("manage", name, "--", "shell", "-c", f"SID = {sid!r}\n" + WHO)
    assert key not in out.stdout + out.stderr
    # robin is signed in by the source's session; under another key it would not decode
    assert out.stdout.split("WHO ", 1)[1].split() == ["robin", "False"]
    host("manage", name, "--", "shell", "-c",
         f"from django.conf import settings; assert settings.SECRET_KEY and "
         f"__import__('hashlib').sha256(settings.SECRET_KEY.encode()).hexdigest() == "
         f"{sha(key)!r}")


def test_all_adopts_each_site_goes_on_past_a_failure_and_adopts_none_twice(
        host, getlino, adopted):
    g, project, _ = getlino
    name, p, before, _ = adopted
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        "linohost: error: 1 of 2 sites not adopted: glbroken (each left as it was)")
    report = json.loads(p.stdout)
    assert report["getlino"] == str(project.parent)
    by = {Path(s["source"]).name: s for s in report["sites"]}
    assert by["gl1"]["result"] == "adopted" and by["gl1"]["ok"] and by["gl1"]["rows"] > 0
    assert Path(by["gl1"]["archive"]).is_file()
    assert by["glbroken"]["result"] == "failed" and not by["glbroken"]["ok"]
    assert "broken on purpose" in by["glbroken"]["message"]
    assert names(host) >= {"gl1"} and "glbroken" not in names(host)
    record = host.root / "adopted" / "gl1" / "adoption.toml"
    assert tomllib.loads(record.read_text())["source"] == str(project)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    # Again, with getlino's config found as getlino finds it: gl1 is not adopted twice.
    sites = names(host)
    q = host("adopt", "--getlino", "--all", "--yes", check=False, env={"HOME": str(g.home)})
    assert q.returncode == 1 and "skipped" in q.stdout and "already adopted" in q.stdout
    assert names(host) == sites and tree_hash(g.home / "lino") == before
    one = host("adopt", project, "--as", host.unique("gl"), "--yes", check=False,
               env={"HOME": str(g.home)})
    assert_one_error_line(one, 2, f"{project} is already adopted as site gl1")
    assert names(host) == sites


@pytest.mark.parametrize("args, words", [
    (["--all"], ["add --getlino"]),
    (["--getlino"], ["add --all"]),
    (["--getlino", "--all", "--as", "x"], ["--as", "cannot go with"]),
    (["--getlino", "/nonexistent/getlino.conf", "--all"], ["no such getlino config file"]),
])
def test_bad_all_input_is_refused_with_one_line(host, args, words):
    sites = names(host)
    p = host("adopt", *args, "--yes", check=False)
    assert_one_error_line(p, 2, *words)
    assert names(host) == sites


def test_bad_getlino_input_changes_nothing(host, getlino, adopted, tmp_path):
    g, project, _ = getlino
    project = project.parent / "glbroken"       # (gl1 is adopted: that is said first)
    before, sites = tree_hash(g.home / "lino"), names(host)
    p = host("adopt", project, "--as", host.unique("gb"), "--python", tmp_path / "nopython",
             "--yes", check=False, env={"HOME": str(g.home)})
    assert_one_error_line(p, 2, "not an executable interpreter")
    assert names(host) == sites and tree_hash(g.home / "lino") == before
