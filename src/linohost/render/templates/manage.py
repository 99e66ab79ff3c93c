#!/usr/bin/env python3
"""Django's manage.py for a linohost site, the same for every site.

It finds its site from its own location: the directory it lives in is the
site's package, that directory's parent (the host root) goes on sys.path.
"""
import os
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path[:0] = [str(here.parent), str(here.parent / "local")]
os.environ["DJANGO_SETTINGS_MODULE"] = here.name + ".settings"

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
