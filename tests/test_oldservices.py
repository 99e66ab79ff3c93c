"""Which files of a host are an adopted project's old services (apply/oldservices.py):
those naming its directory as a whole path, in supervisor's programs directory, the
web servers' sites-enabled, cron's and logrotate's directories."""

from pathlib import Path

from linohost.apply import oldservices, system_apache, system_nginx


def test_the_files_naming_the_project_and_no_other(tmp_path, monkeypatch):
    project = tmp_path / "lino_local" / "prj1"
    other = tmp_path / "lino_local" / "prj10"       # its path starts with prj1's
    sup, etc = tmp_path / "conf.d", tmp_path / "etc"
    apache, nginx = tmp_path / "apache2", tmp_path / "nginx"
    for d in (sup, etc / "cron.daily", etc / "cron.d", etc / "logrotate.d",
              apache / "sites-available", apache / "sites-enabled", nginx / "sites-enabled"):
        d.mkdir(parents=True)
    monkeypatch.setattr(system_apache, "CONFDIR", apache)
    monkeypatch.setattr(system_nginx, "CONFDIR", nginx)
    for prj in (project, other):
        n = prj.name
        (sup / f"{n}-asgi.conf").write_text(
            f"[program:{n}_linod]\ncommand=python manage.py linod\ndirectory = {prj}\n"
            f"[fcgi-program:{n}_asgi]\ncommand=daphne asgi:application\ndirectory = {prj}\n")
        (etc / "cron.daily" / f"make_snapshot_{n}").write_text(f"{prj}/make_snapshot.sh\n")
        (apache / "sites-available" / f"{n}.conf").write_text(f"python-home={prj}/env\n")
        (nginx / "sites-enabled" / f"{n}.conf").write_text(f"alias {prj}/media;\n")
    (apache / "sites-enabled" / "prj1.conf").symlink_to("../sites-available/prj1.conf")
    (etc / "logrotate.d" / "lino-prj1.conf").write_text(f"{project}/log/lino.log {{\n}}\n")
    (sup / "prj1.conf.disabled").write_text(f"directory = {project}\n")    # not read
    found = oldservices.find(project, sup, etc)
    assert [(s.kind, s.path, s.programs, s.background) for s in found] == [
        ("supervisor", str(sup / "prj1-asgi.conf"), ("prj1_linod", "prj1_asgi"), False),
        ("apache", str(apache / "sites-enabled" / "prj1.conf"), (), False),
        ("nginx", str(nginx / "sites-enabled" / "prj1.conf"), (), False),
        ("cron", str(etc / "cron.daily" / "make_snapshot_prj1"), (), True),
        ("logrotate", str(etc / "logrotate.d" / "lino-prj1.conf"), (), True)]
    assert [s.path for s in oldservices.find(other, sup, etc)][0] == str(sup / "prj10-asgi.conf")


def test_a_path_is_named_whole():
    assert oldservices.names_project("directory = /srv/a/prj1\n", "/srv/a/prj1")
    assert oldservices.names_project("command=/srv/a/prj1/linod.sh", "/srv/a/prj1")
    assert not oldservices.names_project("directory = /srv/a/prj10\n", "/srv/a/prj1")
    assert not oldservices.names_project("/srv/a/prj1.old/x", "/srv/a/prj1")


def test_a_supervisor_file_is_background_when_none_of_its_programs_serves(tmp_path):
    """getlino's linod_PRJ.conf is stopped before the source is read; its PRJ-uwsgi.conf
    and PRJ-asgi.conf (and any program running a web server) only once it is checked."""
    project = tmp_path / "prj1"
    files = {
        "linod_prj1.conf": ("[program:linod_prj1]\ncommand={p}/linod.sh\n", True),
        "prj1-uwsgi.conf": ("[program:prj1-uwsgi]\ncommand = /usr/bin/uwsgi --ini "
                            "{p}/uwsgi.ini\n", False),
        "prj1-asgi.conf": ("[fcgi-program:asgi]\ncommand={p}/env/bin/python -m x\n", False),
        "prj1-web.conf": ("[program:w]\ncommand={p}/env/bin/gunicorn wsgi\n"
                          "[program:l]\ncommand={p}/linod.sh\n", False),
        "prj1-dev.conf": ("[program:d]\ncommand={p}/env/bin/python manage.py runserver\n",
                          False)}
    for n, (text, _) in files.items():
        (tmp_path / n).write_text(text.format(p=project))
    found = {Path(s.path).name: s.background for s in oldservices.find(project, tmp_path,
                                                                          tmp_path / "etc")}
    assert found == {n: background for n, (_, background) in files.items()}
