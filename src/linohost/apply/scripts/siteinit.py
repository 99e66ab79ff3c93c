"""Runs *inside* a site's environment (python -c): several Lino tasks in one process.

argv: PROJECT_DIR TASK... where TASK is one of
  requirements  print the Python requirements of the site's plugins, one a line
  demo          flush the database and load the demo fixtures (keeping media/)
  empty         flush the database and create empty tables
  static        collect static files into the (shared) STATIC_ROOT
  cache         build the site cache (media/cache: JS, JSON, CSS)
Linohost ships this file; it imports nothing of linohost.
"""
import os
import shutil
import sys
import time
from pathlib import Path

project = Path(sys.argv[1]).resolve()
tasks = sys.argv[2:]
sys.path[:0] = [str(project.parent), str(project.parent / "local")]
os.environ["DJANGO_SETTINGS_MODULE"] = project.name + ".settings"

import django  # noqa: E402

django.setup()
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402



def private_initdb_migrations():
    """Send the migrations of Lino's `initdb` to a package in the project directory.

    On PostgreSQL, `initdb` writes migrations into the installed plugin
    packages and removes them afterwards: in an environment shared by many
    sites and not writable by the site user that fails (and two sites would
    race). Django's MIGRATION_MODULES lets them live in the site's own package.
    """
    from lino.management.commands import initdb

    pkg = project / "_initdb_migrations"

    def makemigrations(self, verbosity):
        shutil.rmtree(pkg, ignore_errors=True)
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        modules = dict(getattr(settings, "MIGRATION_MODULES", None) or {})
        labels = []
        for p in settings.SITE.installed_plugins:
            if p.app_name.startswith("lino") or any(
                    p.app_name.startswith(x) for x in settings.SITE.migratable_plugin_prefixes):
                (pkg / p.app_label).mkdir()
                (pkg / p.app_label / "__init__.py").write_text("")
                modules[p.app_label] = f"{project.name}._initdb_migrations.{p.app_label}"
                labels.append(p.app_label)
        settings.MIGRATION_MODULES = modules
        for label in labels:
            call_command("makemigrations", label, interactive=False, verbosity=verbosity)

    def removemigrations(self):
        shutil.rmtree(pkg, ignore_errors=True)

    initdb.Command.makemigrations = makemigrations
    initdb.Command.removemigrations = removemigrations


private_initdb_migrations()

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
        settings.SITE.build_site_cache(force=True, verbosity=0)
    else:
        sys.exit(f"unknown task {task!r}")
    print(f"task {task} done in {time.monotonic() - started:.1f} s", flush=True)

sys.stdout.flush()
sys.stderr.flush()
# Skip interpreter finalisation (about a second for a Lino site) and Lino's
# atexit hooks, which may wait on threads started by native libraries.
os._exit(0)
