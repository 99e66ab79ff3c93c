"""Runs *inside* a site's environment (python -c): several Lino tasks in one process.

argv: PROJECT_DIR TASK... where TASK is one of
  requirements  print the Python requirements of the site's plugins, one a line
  demo          flush the database and load the demo fixtures (keeping media/)
  empty         flush the database and create empty tables
  static        collect static files into the (shared) STATIC_ROOT
  cache         build the site cache (media/cache: JS, JSON, CSS)
  locale        print the locale the site asks for (Lino's site_locale)
  previews      rebuild the memo previews and mentions Lino derives from texts: data
                copied from another site (a demo template, an archive) holds that
                site's URLs (``href="/PREFIX/#/api/..."``)
  admin         create the first admin from PROJECT_DIR/.first-admin (username and
                password on two lines; the file is removed first)
Linohost ships this file; it imports nothing of linohost.
"""
import os
import sys
import sysconfig
import time
from pathlib import Path

project = Path(sys.argv[1]).resolve()
tasks = sys.argv[2:]
sys.path[:0] = [str(project.parent), str(project.parent / "local")]
os.environ["DJANGO_SETTINGS_MODULE"] = project.name + ".settings"
# Under `python -c` sys.argv[0] is "-c", which Lino's is_devserver() takes for a
# doctest: build_site_cache then stamps the JS with time.time() and never touches
# lino_version.txt, the served site creates that file later with another time, and
# ExtJS answers every request with "Version mismatch". Look like the server does.
sys.argv = ["linohost-siteinit"]

import django  # noqa: E402

django.setup()


def rebuild_previews():
    """Lino's own checker rebuilds the memo previews and mentions; each row it fixes is
    saved, which would touch its time of last change (Lino's ``Modified``, Django's
    ``auto_now``): those times are put back, as a moved site holds the same data."""
    from django.apps import apps
    from django.core.management import call_command
    from django.db import models
    from lino.modlib.memo.mixins import BasePreviewable
    kept = {}
    for m in apps.get_models():
        if issubclass(m, BasePreviewable) and not m._meta.proxy:
            names = [f.name for f in m._meta.concrete_fields
                     if isinstance(f, models.DateTimeField)
                     and (f.name == "modified" or getattr(f, "auto_now", False))]
            if names:
                kept[m] = (names, {r[0]: r[1:] for r in m.objects.values_list("pk", *names)})
    call_command("checkdata", "memo.PreviewableChecker", fix=True, verbosity=0)
    for m, (names, was) in kept.items():
        for pk, *now in m.objects.values_list("pk", *names):
            if pk in was and tuple(now) != was[pk]:
                m.objects.filter(pk=pk).update(**dict(zip(names, was[pk])))
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402


def react_reads_site_title():
    """Whether this environment's React client reads ``site_title`` from the JSON
    Lino writes for it (lino_react 26.10 does not: its bundles never name it);
    True where unsure."""
    import importlib.util
    spec = importlib.util.find_spec("lino_react")
    if spec is None or not spec.submodule_search_locations:
        return False                            # no React: no such file
    bundles = list(Path(spec.submodule_search_locations[0]).glob("react/static/react/*.js"))
    return not bundles or any(b"site_title" in b.read_bytes() for b in bundles)


for task in tasks:
    started = time.monotonic()
    if task == "requirements":
        for req in sorted(set(settings.SITE.get_requirements())):
            print("requirement:", req)
    elif task == "demo":
        call_command("prep", interactive=False, keepmedia=True, verbosity=0)
    elif task == "empty":
        call_command("initdb", interactive=False, verbosity=0)
    elif task == "static":
        call_command("collectstatic", interactive=False, verbosity=0)
    elif task == "cache":
        # One lino_version for every site of this environment (when its packages last
        # changed), not the time of the build: sites alike then write the same files,
        # which linohost stores once (apply/pagecache.py).
        stamp = int(os.stat(sysconfig.get_paths()["purelib"]).st_mtime)
        version = project / "lino_version.txt"
        version.touch()
        os.utime(version, (stamp, stamp))
        kernel = settings.SITE.kernel
        kernel._lino_version = float(stamp)
        kernel.touch_lino_version = lambda: None
        if not react_reads_site_title():
            # React's lino_TYPE_LANG.json (a megabyte each) holds the site's title,
            # which its client does not read: built as the app's untitled site's, they
            # are the same for sites alike but for their titles (stored once).
            settings.SITE.title = settings.SITE.verbose_name
            print("cache: untitled")
        settings.SITE.build_site_cache(force=True, verbosity=0)
    elif task == "previews":
        from lino.api import dd
        if dd.is_installed("memo"):
            rebuild_previews()
    elif task == "locale":
        print("site_locale:", settings.SITE.site_locale or "")
    elif task == "admin":
        secret = project / ".first-admin"
        username, password = secret.read_text().split("\n")[:2]
        secret.unlink()
        from lino.api import rt
        user = rt.models.users.User(username=username,
                                    user_type=rt.models.users.UserTypes.admin)
        user.set_password(password)
        user.full_clean()
        user.save()
    else:
        sys.exit(f"unknown task {task!r}")
    print(f"task {task} done in {time.monotonic() - started:.1f} s", flush=True)

sys.stdout.flush()
sys.stderr.flush()
# Skip interpreter finalisation (about a second for a Lino site) and Lino's
# atexit hooks, which may wait on threads started by native libraries.
os._exit(0)
