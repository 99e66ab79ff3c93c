"""A site that moves (clone, restore --as) keeps no link to where it came from: the
URLs Lino stores in texts (memo previews of comments) are those of the copy, the
rows keep their times of last change, and its checkdata is as clean as its source's."""

import json

import pytest

pytestmark = pytest.mark.slow

#: checkdata's messages per checker, and every stored preview, in one Lino start.
PROBE = """
import json
from django.core.management import call_command
from lino.api import rt
from lino.modlib.memo.mixins import BasePreviewable
call_command("checkdata", verbosity=0)
problems = {}
for m in rt.models.checkdata.Message.objects.all():
    problems[str(m.checker)] = problems.get(str(m.checker), 0) + 1
previews = [getattr(o, f) or "" for model in rt.models_by_base(BasePreviewable)
            for o in model.objects.all()
            for f in ("body_short_preview", "body_full_preview") if hasattr(o, f)]
modified = sorted(f"{model.__name__} {o.pk} {o.modified.isoformat(timespec='seconds')}"
                  for model in rt.models_by_base(BasePreviewable)
                  for o in model.objects.all() if getattr(o, "modified", None))
print("PROBE" + json.dumps({"problems": problems, "previews": previews, "modified": modified}))
"""


def probe(host, name):
    out = host("manage", name, "--", "shell", "-c", PROBE).stdout
    return json.loads(out.split("PROBE", 1)[1])


@pytest.fixture(scope="module")
def noi_sources(host):
    """Two Noi demo sites with comments: under a prefix (SQLite) and on a host name."""
    prefixed, domain = host.unique("hd"), host.unique("hddom")
    host("new", prefixed, "--app", "noi")
    host("new", domain, "--app", "noi", "--db", "postgresql",
         "--domain", f"{domain}.example.test")
    yield {"prefix": prefixed, "domain": domain}
    for name in (prefixed, domain):
        host("rm", name, "--yes", "--no-archive", check=False)


#: The two loads (native: clone; Lino's portable dump into another engine), each
#: from one kind of source: the other two combinations add minutes, not paths.
@pytest.mark.parametrize(("where", "how"), [("prefix", "clone"),
                                            ("domain", "restore-as-portable")])
def test_a_moved_site_stores_its_own_urls(host, noi_sources, how, where):
    src = noi_sources[where]
    source = probe(host, src)
    links = [p for p in source["previews"] if "href=" in p]
    assert links, "the source has no previews with links: nothing would be tested"
    dst = host.unique("moved")
    if how == "clone":                          # the same engine: the native dump
        host("clone", src, dst)
    else:                                       # another engine: Lino's portable dump
        [archive] = host("backup", src, "--portable").stdout.split()
        host("restore", archive, "--as", dst, "--db", "mysql")
    try:
        copy = probe(host, dst)
        assert sum(copy["problems"].values()) <= sum(source["problems"].values()), \
            (copy["problems"], source["problems"])
        assert len(copy["previews"]) == len(source["previews"])
        # rebuilding a preview is no change of the row: its time of last change stays
        assert copy["modified"] and copy["modified"] == source["modified"]
        if where == "prefix":                   # the source's prefix is nowhere in the copy
            assert f"/{src}/" in "".join(links)
            assert not [p for p in copy["previews"] if f"/{src}/" in p]
        assert any(f'href="/{dst}/' in p for p in copy["previews"]), copy["previews"][:3]
    finally:
        host("rm", dst, "--yes", "--no-archive")


def test_a_demo_site_made_from_a_template_stores_its_own_urls(host, noi_sources):
    """The second Noi demo site of a kind gets the first one's data (demo.py): its
    previews are rebuilt for its own prefix."""
    name = host.unique("hdt")
    made = host("new", name, "--app", "noi")
    try:
        assert "the demo data made by prep today for" in made.stderr
        template_site = made.stderr.split("the demo data made by prep today for", 1)[1].split()[0]
        previews = probe(host, name)["previews"]
        assert any(f'href="/{name}/' in p for p in previews), previews[:3]
        assert not [p for p in previews if f"/{template_site}/" in p]
    finally:
        host("rm", name, "--yes", "--no-archive")
