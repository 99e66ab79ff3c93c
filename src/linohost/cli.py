"""The `linohost` command: parse, call the model and apply layers, print.

The only place that turns a LinohostError into one line on stderr and an exit
code; LINOHOST_TRACEBACK=1 or --traceback shows the stack instead.
"""

import os
import secrets
import sys
import traceback
from pathlib import Path

import click

from . import output
from .apply import envs as env_ops
from .apply import hostinit
from .apply import sites as site_ops
from .apply import warm
from .apply.context import Context
from .apply.journal import Journal
from .apply.lock import host_lock
from .apply.system import System
from .errors import Cancelled, Interrupted, LinohostError, StepFailed, UsageError
from .model import names
from .model.host import Host
from .backends.db import ENGINES
from .keeper import access


class State:
    def __init__(self, root, traceback):
        self.root = root
        self.traceback = traceback

    def host(self):
        """The host root; first, unless another command is at work on it, repair
        what an interrupted command left (every command does, even `list`)."""
        host = Host.open(Host.resolve_root(self.root))
        if Journal.left(host):
            with host_lock(host, wait=False) as got:
                if got:
                    self._repair(self.context(host))
        return host

    @staticmethod
    def _repair(ctx):
        from .apply import adopt, restore, upgrade, users  # noqa: F401 (with sites: every undo step)
        for j in Journal.pending(ctx.host):
            output.progress(f"repairing an interrupted {j.op} ({j.path.name})")
            j.undo(ctx, log=output.progress)

    def context(self, host=None):
        host = host or self.host()
        return Context(host, System(host.cfg, host.home_dir), output.progress)

    def locked(self, ctx):
        """The host lock, after repairing what an interrupted command left (a
        context manager that can be entered again after it was left)."""
        class _Repairing:
            def __enter__(s):
                s.lock = host_lock(ctx.host, on_wait=lambda: output.progress(
                    "another linohost command is changing this host: waiting"))
                s.lock.__enter__()
                State._repair(ctx)
                return s

            def __exit__(s, *exc):
                try:
                    return s.lock.__exit__(*exc)
                finally:
                    _tell_servers(ctx.host)
        return _Repairing()


def _tell_servers(host):
    """A running keeper learns at once what a command changed (it also looks by
    itself every second): new sites get sockets, changed ones new workers. A running
    `linohost serve` is waited for until its Apache routes to them."""
    from .apply.serve import wait_applied
    from .keeper import control
    if host.cfg["process_backend"] == "keeper":
        control.notify(host)
    if not wait_applied(host):
        output.progress("the running `linohost serve` has not applied this change yet "
                        "(see its output)")


pass_state = click.make_pass_decorator(State)
PORT = click.IntRange(1, 65535)

ROOT_HELP = ("Host root (default: $LINOHOST_ROOT, /usr/local/lino_sites as root, "
             "~/lino_sites otherwise).")


def _root_after_command(ctx, param, value):
    if value is not None:
        ctx.find_object(State).root = value


class Command(click.Command):
    """Every command also takes ``--root DIR`` after its name (`linohost init --root DIR`)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.params.append(click.Option(["--root"], type=click.Path(file_okay=False),
                                        expose_value=False, callback=_root_after_command,
                                        help=ROOT_HELP))


class Group(click.Group):
    """Commands of this group (and of its sub-groups) are :class:`Command`; a Ctrl-C
    in any of them becomes :class:`Interrupted` (one line, exit 130)."""

    command_class = Command
    group_class = type

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(file_okay=False), envvar="LINOHOST_ROOT",
              help=ROOT_HELP)
@click.option("--traceback", is_flag=True, envvar="LINOHOST_TRACEBACK",
              help="Show the Python traceback of errors.")
@click.version_option(package_name="linohost")
@click.pass_context
def cli(ctx, root, traceback):
    """Host many Lino sites on one machine."""
    ctx.obj = State(root, traceback)


# -- host --------------------------------------------------------------------

@cli.command()
@click.option("--server-name", help="Host name of the server (prefix mode) or parent domain.")
@click.option("--mode", type=click.Choice(["prefix", "domain"]),
              help="Sites under URL prefixes of one host, or one host name per site.")
@click.option("--secret", "secret_policy", type=click.Choice(["derived", "shared", "env"]),
              help="SECRET_KEY policy (default derived: one key per site from a master secret).")
@click.option("--python", help="Base Python for environments (readable by the site user).")
@click.option("--port", "apache__port", type=PORT, help="Port of `linohost serve`.")
@click.option("--process-backend", "process_backend", type=click.Choice(["keeper", "mod_wsgi"]),
              help="What runs the sites: the keeper (workers on demand) or mod_wsgi daemons.")
@click.option("--web-server", "web_server", type=click.Choice(["apache", "nginx"]),
              help="Front server: Apache, or nginx (needs the keeper backend).")
@click.option("--tls", "tls__mode", type=click.Choice(["off", "files", "acme"]),
              help="HTTPS: off, certificate files, or ACME (mod_md of the system Apache).")
@click.option("--cert-file", "tls__cert_file", type=click.Path(dir_okay=False, resolve_path=True),
              help="Certificate chain (PEM) of the server name (tls.mode files).")
@click.option("--key-file", "tls__key_file", type=click.Path(dir_okay=False, resolve_path=True),
              help="Private key (PEM) of --cert-file.")
@click.option("--smtp-password-file", type=click.File("r"),
              help="File (- for stdin) holding the SMTP password: copied to secrets/.")
@click.option("--admin-password-file", type=click.File("r"),
              help="File (- for stdin) holding the password of /_linohost/ (user admin): "
                   "its hash goes to secrets/.")
@click.option("--force", is_flag=True,
              help="Overwrite a site's settings.py edited above its marker line "
                   "(a dated copy is kept beside it).")
@click.pass_obj
def init(state, smtp_password_file, admin_password_file, force, **changes):
    """Create a host root, or change its configuration."""
    root = Host.resolve_root(state.root).absolute()
    smtp_password = smtp_password_file.read().strip() if smtp_password_file else None
    admin_password = admin_password_file.read().strip() if admin_password_file else None
    if admin_password == "":
        raise UsageError("--admin-password-file: the file is empty")
    if (root / "linohost.toml").exists():          # changing a live host: one at a time
        with host_lock(Host(root), on_wait=lambda: output.progress(
                "another linohost command is changing this host: waiting")):
            host = hostinit.init(root, changes, output.progress, smtp_password, force)
    else:
        host = hostinit.init(root, changes, output.progress, smtp_password, force)
    if admin_password:
        access.write_password(host, admin_password)
    _tell_servers(host)
    if host.cfg["secret_policy"] == "env" and not os.environ.get("DJANGO_SECRET_KEY"):
        output.progress("warning: the secret policy is env but DJANGO_SECRET_KEY is not set "
                        "here: set it wherever sites run (and for linohost commands)")
    output.progress(f"host root ready: {host.root}")


# -- environments --------------------------------------------------------------

@cli.group()
def env():
    """Shared virtualenvs of Lino, its apps and front ends."""


@env.command("create")
@click.argument("name")
@click.argument("packages", nargs=-1)
@pass_state
def env_create(state, name, packages):
    """Create environment NAME with PACKAGES (pip names or app short names: cosi noi ...)."""
    ctx = state.context()
    with state.locked(ctx):
        e = env_ops.create(ctx, name, packages)
    output.progress(f"environment {e.name} ready: {e.path}")


@env.command("rm")
@click.argument("name")
@pass_state
def env_rm(state, name):
    """Remove environment NAME, which no site uses."""
    ctx = state.context()
    with state.locked(ctx):
        env_ops.remove(ctx, name)
    output.progress(f"environment {name} removed")


@env.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def env_list(state, as_json):
    """List the environments and the sites using each."""
    host = state.host()
    users = {}
    for s in host.sites():
        users.setdefault(s.env, []).append(s.name)
    rows = [{"name": e.name, "path": e.path, "python": e.python, "packages": list(e.packages),
             "apps": list(e.apps_installed), "sites": users.get(e.name, [])}
            for e in host.envs()]
    if as_json:
        output.print_json(rows)
    else:
        output.table(["name", "sites", "apps", "path"],
                     [(r["name"], len(r["sites"]), " ".join(r["apps"]), r["path"]) for r in rows])


# -- sites -------------------------------------------------------------------

def _limit_options(f):
    """--memory, --cpu-weight, --tasks: a site's own fence ([limits]; 0: the host's)."""
    for opt, kind, text in (
            ("--tasks", click.IntRange(0), "Processes and threads its worker may have."),
            ("--cpu-weight", click.IntRange(0, 10000), "Its worker's CPU weight (100: as "
                                                       "everybody's)."),
            ("--memory", click.IntRange(0), "MiB its worker may hold.")):
        f = click.option(opt, type=kind, help=text + " 0: the host's [limits].")(f)
    return f


@cli.command()
@click.argument("site")
@click.option("--app", required=True, help="App short name (std, cosi, noi, amici, ...) "
              "or a dotted settings module.")
@click.option("--env", "env_name", help="Environment (default: the host's default_env).")
@click.option("--db", type=click.Choice(ENGINES), default="sqlite", show_default=True)
@click.option("--demo/--empty", default=True, help="Load demo data (default) or none.")
@click.option("--title", help="Site title.")
@click.option("--languages", default="en", show_default=True, help="e.g. en,de")
@click.option("--domain", default="", help="Own host name: the site gets its own vhost.")
@click.option("--front-end", type=click.Choice(["react", "extjs"]),
              help="Default: react.")
@click.option("--admin", "admin", help="User name of an --empty site's first admin "
              "[default: admin].")
@click.option("--admin-password-file", type=click.File("r"),
              help="File (- for stdin) holding the first admin's password (default: a new "
                   "one, shown once).")
@_limit_options
@pass_state
def new(state, site, app, env_name, db, demo, title, languages, domain, front_end, admin,
        admin_password_file, **limits):
    """Create SITE running APP."""
    ctx = state.context()
    langs = names.languages(languages)
    if demo and (admin or admin_password_file):
        raise UsageError("--admin and --admin-password-file are for --empty sites "
                         "(a demo site has the demo users: robin, password 1234)")
    first_admin = None
    if not demo:
        password = (admin_password_file.read().strip() if admin_password_file
                    else secrets.token_urlsafe(12))
        if not password:
            raise UsageError("--admin-password-file holds no password")
        first_admin = (names.username(admin or "admin"), password)
    with state.locked(ctx):
        record = site_ops.plan_new(ctx, site, app, env_name or ctx.cfg["default_env"], db,
                                   title, langs, domain, front_end,
                                   admin=first_admin[0] if first_admin else "",
                                   limits={site_ops.LIMIT_FIELDS[k]: v
                                           for k, v in limits.items() if v is not None})
        site_ops.new(ctx, record, "demo" if demo else "empty", first_admin=first_admin)
    if first_admin and not admin_password_file:
        output.progress(f"first admin of {site}: {first_admin[0]}, password {first_admin[1]} "
                        f"(shown once: change it after signing in)")
    elif first_admin:
        output.progress(f"first admin of {site}: {first_admin[0]}, with the password of "
                        f"{admin_password_file.name}")
    output.progress(f"site {site} ready: {urls(ctx.host, record)}")


def urls(host, site):
    """The public URL of *site*, and the one on this machine when that differs (on
    the port of the running `linohost serve`, else the configured one)."""
    from .apply.serve import serving_port
    port = serving_port(host)
    public, local = host.site_url(site, port), host.local_url(site, port)
    return public if public == local else f"{public} (on this machine: {local})"


def site_row(host, s, port=None):
    return {"name": s.name, "app": s.app, "env": s.env, "db": s.db,
            "url": host.site_url(s, port),
            "path": str(host.site_dir(s.name)), "title": s.title,
            "languages": list(s.languages), "front_end": s.front_end, "domain": s.domain,
            "settings_module": s.settings_module, "plugins": list(s.plugins),
            "db_name": s.db_name, "created": s.created}


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def list_(state, as_json):
    """List the sites, one per row (URLs on the port that serves them)."""
    host = state.host()
    port = _url_port(host)
    rows = [site_row(host, s, port) for s in host.sites()]
    if as_json:
        output.print_json(rows)
    else:
        output.table(["name", "app", "env", "db", "url"],
                     [(r["name"], r["app"], r["env"], r["db"], r["url"]) for r in rows])


def _url_port(host):
    """The port of the running `linohost serve`; else the configured one, said so."""
    from .apply import serve as serving
    serve = serving.running(host)
    if serve:
        return serve["port"]
    port = host.cfg["apache.port"]
    if not serving.what_serves(host):
        output.progress(f"nothing serves these sites now: the URLs are those of "
                        f"`linohost serve` on the configured port {port} (apache.port)")
    return port


@cli.command()
@click.argument("site")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def show(state, site, as_json):
    """Show everything linohost knows about SITE."""
    from .model import apps, tls
    host = state.host()
    row = site_row(host, host.site(site), _url_port(host))
    row["deploy_warnings"] = [f"{code}: {why}" for code, why in tls.deploy_warnings(host.cfg)]
    if apps.resolve(row["app"]).channels:
        row["live"] = ("websockets at /WS/ and the channel worker, in the site's worker"
                       if host.cfg["process_backend"] == "keeper" else
                       "off: Lino's live notifications need process_backend = keeper")
    row.update(_ids_left(state, host))
    if as_json:
        output.print_json(row)
    else:
        output.table(["key", "value"], [(k, ("; " if k == "deploy_warnings" else " ").join(v)
                                         if isinstance(v, list) else v)
                                        for k, v in row.items()])


class PassThrough(Command):
    """A command whose arguments after ``--`` reach it untouched as ``ctx.meta["args"]``."""

    def parse_args(self, ctx, args):
        if "--" in args:
            i = args.index("--")
            args, ctx.meta["args"] = args[:i], tuple(args[i + 1:])
        else:
            ctx.meta["args"] = ()
        return super().parse_args(ctx, args)


class Manage(PassThrough):
    """`manage SITE [--root DIR] -- ARGS`; without ``--`` everything after SITE
    (and the options before it) is manage.py's, as it always was."""

    def parse_args(self, ctx, args):
        if "--" not in args:
            i = 0
            while i < len(args) and args[i].startswith("-"):
                i += 2 if args[i] == "--root" else 1
            args = [*args[:i + 1], "--", *args[i + 1:]]
        return super().parse_args(ctx, args)


@cli.command(cls=Manage)
@click.argument("site")
@pass_state
def manage(state, site):
    """Run `manage.py ARGS` of SITE in its environment: SITE -- ARGS (exit code passed on)."""
    args = click.get_current_context().meta["args"]
    ctx = state.context()
    s = ctx.host.site(site)
    e = ctx.host.env(s.env)
    site_ops.check_secret_key(ctx.cfg)
    project = ctx.host.site_dir(site)
    code = warm.run_terminal(ctx, s, args)              # forked from its zygote, or
    if code is None:                                    # a plain start
        code = ctx.system.exec_site([e.bin_python, project / "manage.py", *args], site,
                                    cwd=project)
    if ctx.cfg["process_backend"] == "keeper":
        from .keeper import control
        control.jobs_changed(ctx.host, s.name)
    sys.exit(code)


@cli.command()
@click.argument("site")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-archive", is_flag=True, help="Do not back the site up first.")
@pass_state
def rm(state, site, yes, no_archive):
    """Remove SITE: back it up, then drop its database and user, secrets and directory."""
    from .apply import backup as backups
    ctx = state.context()
    with state.locked(ctx):
        s = ctx.host.site(site)
        plan = site_ops.destruction_plan(ctx, s)
        if not no_archive:
            output.err.print(f"Site {site} is archived into {backups.backup_dir(ctx.host)}, "
                             f"then this is destroyed:", markup=False)
        else:
            output.err.print(f"This destroys site {site} (no archive):", markup=False)
        for step in plan:
            output.err.print(f"  - {site_ops.describe(step)}", markup=False)
        if not yes:
            _confirm("Remove it?", f"nothing of {site} was removed")
        if not no_archive:
            try:
                backups.backup(ctx, s)
            except LinohostError as e:
                raise StepFailed(f"could not archive {site}, so nothing was removed: {e} "
                                 f"(`rm --no-archive` removes it without an archive)") from None
        site_ops.rm(ctx, s)
    output.progress(f"site {site} removed")


@cli.command("move-ids")
@click.argument("names", nargs=-1)
@click.option("--all", "all_sites", is_flag=True, help="Every site of the host, one by one.")
@pass_state
def move_ids(state, names, all_sites):
    """Give the users of SITE... (or --all) ids from site_ids: sites made by an older
    linohost have Debian's system ids (each site is let sleep while it moves; under
    mod_wsgi, stop Apache first)."""
    from .apply import fleet, users
    from .backends.process import process_backend
    ctx = state.context()
    if not ctx.system.is_root:
        raise UsageError("only root has site users to move")
    with state.locked(ctx):
        chosen = fleet.select(ctx.host, names, all_sites)
        users.id_range(ctx)                        # a bad range: refused before any site
        moving = [s for s in chosen if users.outside_range(ctx, s.name)]
        for s in chosen:
            if s not in moving:
                output.progress(f"{s.name}: its user already has an id of site_ids")
        if ctx.host.cfg["process_backend"] == "mod_wsgi":
            awake = [s.name for s in moving if users.runs(ctx, s.name)]
            if awake:                              # its daemon never sleeps: refused at once
                raise UsageError(f"{', '.join(awake)}: served by mod_wsgi (a daemon runs as "
                                 f"its user): stop `linohost serve` or the system's Apache, "
                                 f"then move")
        backend = process_backend(ctx.host)
        for s in moving:
            backend.restart_site(s.name)           # its worker leaves; the next starts anew
            journal = Journal(ctx.host, "move-ids", s.name).start()
            try:
                old, new = users.move_into_range(ctx, s.name, journal)
            except BaseException:
                journal.undo(ctx, log=output.progress)
                raise
            journal.commit()
            backend.restart_site(s.name)
            output.progress(f"{s.name}: user {ctx.system.user_of(s.name)} moved from id "
                            f"{old} to {new}")


# -- backups -------------------------------------------------------------------

@cli.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_sites", is_flag=True, help="Every site of the host.")
@click.option("--env", "env_name", help="Every site of this environment.")
@click.option("--to", "to", type=click.Path(file_okay=False),
              help="Directory for the archives (default: backup.dir of the host config).")
@click.option("--portable/--no-portable", default=True, show_default=True,
              help="Include Lino's portable dump (restores on any engine and Lino version).")
@pass_state
def backup(state, names, all_sites, env_name, to, portable):
    """Back up SITE... (or --all, or --env NAME): one verified archive per site."""
    from .apply import backup as backups
    from .apply import fleet
    ctx = state.context()
    with state.locked(ctx):
        chosen = fleet.select(ctx.host, names, all_sites, env_name)
        failed = []
        for s in chosen:              # one failing site does not keep the others unsaved
            try:
                sys.stdout.write(f"{backups.backup(ctx, s, to, portable)}\n")
                sys.stdout.flush()
            except LinohostError as e:
                output.error(f"{s.name}: {e}")
                backups.record_result(ctx.host, s.name, e)
                failed.append(s.name)
    if failed:
        raise StepFailed(f"{len(failed)} of {len(chosen)} backups failed: {', '.join(failed)}")


@cli.command()
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("--as", "as_name", help="Restore as a new site of this name.")
@click.option("--force", is_flag=True, help="Replace the existing site (backed up first).")
@click.option("--db", type=click.Choice(ENGINES),
              help="Database engine of a new site (another engine uses the portable dump).")
@click.option("--title", help="Title of a new site (default: the archive's under its own "
              "name, else from the new name).")
@pass_state
def restore(state, archive, as_name, force, db, title):
    """Restore ARCHIVE into a new site, or over its site with --force."""
    from .apply import restore as restoring
    ctx = state.context()
    with state.locked(ctx):
        site = restoring.restore(ctx, archive, as_name, force, db, title)
    output.progress(f"site {site.name} restored: {urls(ctx.host, site)}")


@cli.command()
@click.argument("src")
@click.argument("dst")
@click.option("--db", type=click.Choice(ENGINES), help="Database engine of the clone.")
@click.option("--title", help="Title of the clone (default: from its name).")
@pass_state
def clone(state, src, dst, db, title):
    """Copy site SRC to a new site DST (own database, user, password, secret key)."""
    from .apply import restore as restoring
    ctx = state.context()
    with state.locked(ctx):
        site = restoring.clone(ctx, src, dst, db, title)
    output.progress(f"site {site.name} cloned from {src}: {urls(ctx.host, site)}")


@cli.command()
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--getlino", "getlino_config", is_flag=False, flag_value="", default=None,
              metavar="[CONFIG]", help="With --all: the sites of this host's getlino (its "
              "config file; default: the first that getlino reads).")
@click.option("--all", "all_sites", is_flag=True,
              help="Adopt every site of --getlino, one after the other.")
@click.option("--as", "as_name", help="Name of the new site (default: the directory's).")
@click.option("--env", "env_name", help="Environment (default: the first that has its app).")
@click.option("--db", "db_mode", type=click.Choice(["copy", "move"]), default="copy",
              show_default=True, help="copy: a new database filled from a dump; move: "
              "the site keeps the source's PostgreSQL or MariaDB database where it is, and "
              "takes over its user (a new password).")
@click.option("--python", help="The project's interpreter, where none is found beside it.")
@click.option("--path", "paths", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A directory the project had on its path (repeatable), e.g. that of a "
                   "shared djangosite_local.py.")
@click.option("--dry-run", is_flag=True, help="Only print the plan.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and result as JSON.")
@pass_state
def adopt(state, path, getlino_config, all_sites, as_name, env_name, db_mode, python, paths,
          dry_run, yes, as_json):
    """Take over the Lino project in PATH as a new site (the source stays untouched);
    or with --getlino --all every site of a getlino host."""
    from .apply import adopt as adopting
    if all_sites or getlino_config is not None:
        return _adopt_all(state, path, getlino_config, all_sites, as_name, env_name,
                          db_mode, python, paths, dry_run, yes, as_json)
    if not path:
        raise UsageError("name the directory of the project to adopt, or --getlino --all")
    ctx = state.context()
    with state.locked(ctx):
        plan = adopting.plan(ctx, path, as_name, env_name, db_mode, python, paths)
        if not as_json:
            output.err.print(f"Adopting {plan.source}:", markup=False)
            output.table(["", ""], plan.rows())
            for note in plan.notes:
                output.err.print(f"  note: {note}", markup=False)
        if dry_run:
            if as_json:
                output.print_json({"plan": plan.as_dict(), "done": False})
            return
        if not yes:
            _confirm("Adopt it?", f"{plan.source} was not adopted")
        site, archive, rows = adopting.adopt(ctx, plan)
    if as_json:
        output.print_json({"plan": plan.as_dict(), "done": True, "archive": str(archive),
                           "tables": len(rows), "rows": sum(rows.values())})
    output.progress(f"site {site.name} adopted from {plan.source} ({len(rows)} tables, "
                    f"{sum(rows.values())} rows; archive of the source: {archive}): "
                    f"{urls(ctx.host, site)}")


def _confirm(question, refused):
    """Ask *question* on stderr, answered from a terminal or a pipe (echo y |); raise
    Cancelled ("not confirmed: *refused*") unless the answer is yes."""
    try:
        confirmed = click.confirm(question, err=True)
    except click.exceptions.Abort:          # Ctrl-D, Ctrl-C, or no answer at all
        confirmed = False
    if not sys.stdin.isatty():              # a terminal echoed the answer's newline
        sys.stderr.write("\n")
    if not confirmed:
        raise Cancelled(f"not confirmed: {refused}"
                        + ("" if sys.stdin.isatty() else " (--yes: without asking)"))


def _adopt_all(state, path, config, all_sites, as_name, env_name, db_mode, python, paths,
               dry_run, yes, as_json):
    from .apply import adopt as adopting
    from .model import getlino
    if config is None:
        raise UsageError("--all adopts the sites of a getlino host: add --getlino [CONFIG]")
    if not all_sites:
        raise UsageError("--getlino adopts every site of that host: add --all")
    clash = next((opt for opt, v in (("PATH", path), ("--as", as_name), ("--python", python),
                                      ("--path", paths)) if v), None)
    if clash:
        raise UsageError(f"{clash} names one site: it cannot go with --getlino --all")
    layout = getlino.find_layout(config or None)
    ctx = state.context()
    with state.locked(ctx):
        projects = layout.sites()
        if not projects:
            raise UsageError(f"{layout.local_dir}: no getlino sites there")
        output.progress(f"getlino sites in {layout.local_dir}: "
                        + " ".join(p.name for p in projects))
        if not (yes or dry_run):
            _confirm(f"Adopt these {len(projects)} sites?", "no site was adopted")
        with output.bar("adopting" if not dry_run else "planning", len(projects)) as advance:
            outcomes = adopting.adopt_all(ctx, layout, env_name, db_mode, dry_run,
                                          on_done=lambda o: advance(f"{o.site}: {o.result}"))
    failed = [o.site for o in outcomes if not o.ok]
    output.report(as_json, {"getlino": str(layout.local_dir),
                            "sites": [o.as_dict() for o in outcomes]},
                  ["site", "source", "result", "rows", "archive / reason"],
                  [(o.site, o.source, o.result, o.rows if o.result == "adopted" else "",
                    o.archive or o.message) for o in outcomes],
                  failed and f"{len(failed)} of {len(outcomes)} sites not adopted: "
                             f"{' '.join(failed)} (each left as it was)")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@pass_state
def prune(state, dry_run):
    """Delete the archives the retention policy (backup.keep_*) does not keep."""
    from .apply import backup as backups
    ctx = state.context()
    with state.locked(ctx):
        doomed = backups.prune(ctx, dry_run)
    for p in doomed:
        sys.stdout.write(f"{'would delete' if dry_run else 'deleted'} {p}\n")
    output.progress(f"{len(doomed)} archives {'to delete' if dry_run else 'deleted'}")


@cli.command(cls=PassThrough)
@click.argument("names", nargs=-1)
@click.option("--all", "all_sites", is_flag=True, help="Every site of the host.")
@click.option("--env", "env_name", help="Every site of this environment.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=os.cpu_count() or 1,
              show_default=True, help="Sites run at the same time.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def run(state, names, all_sites, env_name, jobs, as_json):
    """Run `manage.py ARGS` on many sites: (SITE... | --all | --env NAME) -- ARGS."""
    from .apply import fleet
    args = click.get_current_context().meta["args"]
    if not args:
        raise UsageError("no manage.py command: put it after --, e.g. "
                         "`linohost run --all -- checkdata`")
    ctx = state.context()
    sites = fleet.select(ctx.host, names, all_sites, env_name)
    with output.bar(f"manage.py {' '.join(args)}", len(sites)) as advance:
        results = fleet.run(ctx, sites, args, jobs,
                            on_done=lambda r: advance(f"{r.site}: {'ok' if r.ok else 'failed'}"))
    failed = [r.site for r in results if not r.ok]
    output.report(as_json, [r.as_dict() for r in results],
                  ["site", "exit code", "seconds", "last line of output"],
                  [(r.site, r.exit_code, f"{r.duration:.1f}", r.last_line[:100])
                   for r in results],
                  failed and f"{len(failed)} of {len(results)} sites failed: {' '.join(failed)} "
                             f"(logs in {Path(results[0].log).parent})")


@cli.command()
@click.option("--env", "env_name", required=True, help="The environment whose sites move.")
@click.option("--canary", help="Move this site first; if it fails, no other site moves.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--force", is_flag=True,
              help="Overwrite a site's settings.py edited above its marker line "
                   "(a dated copy is kept beside it).")
@click.argument("packages", nargs=-1)
@pass_state
def upgrade(state, env_name, canary, as_json, force, packages):
    """Move the sites of an environment to a new one with PACKAGES upgraded
    (default: the newest versions of everything)."""
    from .apply import upgrade as upgrading
    ctx = state.context()
    with state.locked(ctx):
        new_env, report = upgrading.upgrade(ctx, env_name, packages, canary, force)
    failed = [m.site for m in report if not m.ok]
    output.report(as_json, {"env": new_env, "sites": [vars(m) for m in report]},
                  ["site", "ok", "environment", "result"],
                  [(m.site, "yes" if m.ok else "NO", m.env, m.message) for m in report],
                  failed and f"{len(failed)} of {len(report)} sites stayed on {env_name}: "
                             f"{' '.join(failed)}")


# -- web server ------------------------------------------------------------------

@cli.command()
@click.option("--host", "bind", default="127.0.0.1", show_default=True,
              help="Address to listen on.")
@click.option("--port", type=PORT, help="Port (default: apache.port of the host config).")
@click.option("--wait-sites", is_flag=True,
              help="Start every site and name the URL only once each site's page answers.")
@pass_state
def serve(state, bind, port, wait_sites):
    """Serve all sites behind Apache, in the foreground (Ctrl-C stops): through the
    keeper (workers on demand) or in mod_wsgi daemons (process_backend)."""
    from .apply import serve as serving
    ctx = state.context()
    serving.serve(ctx, state.locked(ctx), bind, port or ctx.cfg["apache.port"],
                  wait_sites=wait_sites)


@cli.group("config")
def config_():
    """Configuration for other programs."""


@config_.command("keys")
def config_keys():
    """Every key of linohost.toml: type, default and meaning."""
    from .model import config
    sys.stdout.write(config.reference_table() + "\n")


@config_.command("apache")
@click.option("--diff", is_flag=True, help="Show what would change; write nothing.")
@click.option("--check", is_flag=True, help="Run Apache's configtest on the new config.")
@click.option("--write", is_flag=True, help="Test, install, enable and reload gracefully.")
@pass_state
def config_apache(state, diff, check, write):
    """The system Apache's config for all sites (printed unless --diff/--check/--write)."""
    from .apply import system_apache
    _config(state, system_apache, diff, check, write, "configtest passed",
            lambda ctx: system_apache.render(ctx)[0])


@config_.command("nginx")
@click.option("--diff", is_flag=True, help="Show what would change; write nothing.")
@click.option("--check", is_flag=True, help="Run `nginx -t` on a copy with the new config.")
@click.option("--write", is_flag=True, help="Test, install, enable and reload.")
@pass_state
def config_nginx(state, diff, check, write):
    """The system nginx's config for all sites (printed unless --diff/--check/--write)."""
    from .apply import system_nginx
    _config(state, system_nginx, diff, check, write, "nginx configtest passed",
            lambda ctx: system_nginx.render(ctx)[0])


@config_.command("systemd")
@click.option("--diff", is_flag=True, help="Show what would change; write nothing.")
@click.option("--check", is_flag=True,
              help="Check the units (systemd-analyze verify) and the logrotate snippet.")
@click.option("--write", is_flag=True,
              help="Check, install atomically, enable and reload systemd (when it runs).")
@pass_state
def config_systemd(state, diff, check, write):
    """Boot-time units and log rotation (printed unless --diff/--check/--write)."""
    from .apply import system_units
    _config(state, system_units, diff, check, write,
            "systemd-analyze verify and logrotate -d passed", system_units.show)


def _config(state, module, diff, check, write, passed, show):
    """What the `config` commands (apache, nginx, systemd) share: print the files (*show*), or
    --diff against what is installed, --check them, or --write them under the host lock."""
    ctx = state.context()
    if write:
        with state.locked(ctx):
            module.write(ctx)
    elif diff or check:
        if diff:
            sys.stdout.write(module.diff(ctx))
        if check:
            module.check(ctx)
            output.progress(passed)
    else:
        sys.stdout.write(show(ctx))


# -- processes -------------------------------------------------------------------

@cli.command()
@pass_state
def keeper(state):
    """Hold every site's socket and start its worker on demand (foreground; Ctrl-C
    stops). `linohost serve` runs one itself under the keeper backend."""
    import logging
    from .keeper.daemon import Keeper
    ctx = state.context()
    cfg = ctx.cfg
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s keeper: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    with state.locked(ctx):
        for e in ctx.host.envs():
            env_ops.ensure_worker_server(ctx, e)
    sys.exit(Keeper(ctx.host, ctx.system, web_group=cfg["site_group"]).run())


@cli.command()
@click.argument("site", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--zygotes", is_flag=True,
              help="The keeper's zygotes (one per site group, and per shared data variant) "
                   "instead of the sites.")
@click.option("--check", is_flag=True,
              help="Exit 1 if nothing serves the sites or a site has failed (for monitoring).")
@pass_state
def status(state, site, as_json, zygotes, check):
    """State of each site's process: sleeping, starting, running, stopping, failed
    (unserved: nothing serves it now)."""
    from .apply import serve as serving
    from .backends.process import process_backend
    host = state.host()
    backend = process_backend(host)
    if zygotes:
        rows = backend.zygotes() if hasattr(backend, "zygotes") else []
        if as_json:
            output.print_json(rows)
        else:
            output.table(["zygote", "state", "pid", "PSS MiB", "ready in s", "sites", "env",
                          "app", "languages", "front end", "urls", "db", "data"],
                         [(r["name"], r["state"] + (f" ({r['reason']})" if r["reason"] else ""),
                           r["pid"] or "", "" if r["pss_kib"] is None else
                           f"{r['pss_kib'] / 1024:.0f}", r["ready_s"] or "", r["sites"],
                           r["env"], r["app"], r["languages"], r["front_end"], r["urls"], r["db"],
                           f"variant {r['variant']}" if r["variant"] else "demo") for r in rows])
        return
    names = [host.site(site).name] if site else host.site_names()
    rows = backend.status(names)
    served = serving.what_serves(host)
    if not served:
        for r in rows:
            r["state"] = "unserved"
    if as_json:
        output.print_json(rows)
    else:
        _status_table(rows)
        fence = next((r["fence"] for r in rows if r.get("fence")), None)
        if fence:
            output.progress(f"limits ([limits]) enforced by {fence}")
    advice = ("" if served else
              f"nothing serves the sites of {host.root}: start `linohost serve`, or the "
              f"system's (`linohost config {host.cfg['web_server']} --write`"
              + (", `linohost config systemd --write` for the keeper"
                 if host.cfg["process_backend"] == "keeper" else "") + ")")
    failed = [r["name"] for r in rows if r["state"] == "failed"]
    if check and (failed or not served):
        raise StepFailed("; ".join(([advice] if advice else [])
                                   + ([f"failed: {' '.join(failed)}"] if failed else [])))
    if advice:
        output.progress(advice)
    ids = _ids_left(state, host)
    if ids:
        output.progress(f"site ids: {ids['site_ids_left']} of {ids['site_ids']} left")


@cli.command()
@click.argument("site")
@click.option("-f", "--follow", is_flag=True,
              help="Go on printing as the logs grow, across worker restarts (Ctrl-C stops).")
@click.option("-n", "--lines", default=50, show_default=True, type=click.IntRange(0),
              help="How many of the last lines (0: all).")
@click.option("--since", help="Only from then on: 10m, 2h, 1d, or a date and time.")
@pass_state
def logs(state, site, follow, lines, since):
    """SITE's worker log and its requests (from `linohost serve`'s access log), in
    time order."""
    from . import sitelogs as site_logs
    host = state.host()
    record = host.site(site)
    start = site_logs.since(since) if since else None
    for entry in site_logs.recent(host, record, lines, start):
        click.echo(entry.text)
    if follow:
        try:
            site_logs.follow(host, record, click.echo)
        except KeyboardInterrupt:
            pass


@cli.command()
@click.argument("site")
@_limit_options
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@pass_state
def limits(state, site, as_json, **values):
    """SITE's fence (the memory, CPU weight and tasks of its worker); with options, set
    its own (its next worker gets them)."""
    from .keeper.fence import Limits
    ctx = state.context()
    record = ctx.host.site(site)
    if any(v is not None for v in values.values()):
        with state.locked(ctx):
            record = site_ops.set_limits(ctx, record.name, **values)
    effective = Limits.of(ctx.host.cfg, record)
    own = {k: getattr(record, f) for k, f in site_ops.LIMIT_FIELDS.items()}
    rows = [{"limit": k, "value": v, "own": bool(own[k])} for k, v in
            (("memory", effective.memory_mib), ("cpu_weight", effective.cpu_weight),
             ("tasks", effective.tasks))]
    if as_json:
        output.print_json(rows)
    else:
        output.table(["limit", "value", "from"],
                     [(r["limit"], r["value"] or "none", "site" if r["own"] else "[limits]")
                      for r in rows])


def _ids_left(state, host):
    """{"site_ids": RANGE, "site_ids_left": N} as root (users get ids from the range)."""
    from .apply import users
    left = users.ids_left(state.context(host))
    return {} if left is None else {"site_ids": host.cfg["site_ids"], "site_ids_left": left}


def _status_table(rows):
    blank = lambda v: "" if v is None else v  # noqa: E731
    mib = lambda kib: "" if kib is None else f"{kib / 1024:.0f}"  # noqa: E731
    started = lambda r: (f"plain: {r['plain_reason']}" if r.get("plain_reason")  # noqa: E731
                         else blank(r.get("start")))
    live = lambda r: ("" if r.get("websockets") is None  # noqa: E731
                      else f"{r['websockets']} ws, {r['channel_messages']} msgs"
                           + (f", {r['websockets_waiting']} waiting"
                              if r.get("websockets_waiting") else ""))
    failure = lambda r: "; ".join(filter(None, (  # noqa: E731
        r.get("failed_starts") and f"{r['failed_starts']} failed starts", r["last_failure"],
        r.get("refused") and f"{r['refused']} answered 503: short of memory")))
    fenced = lambda r: ("" if r.get("memory_limit_mib") is None  # noqa: E731
                        else f"{mib(r.get('memory_peak_kib')) or '-'} / "
                             f"{r['memory_limit_mib'] or 'none'}")
    output.table(["site", "state", "pid", "PSS MiB", "peak / limit MiB", "uptime s", "requests", "last request",
                  "cold starts", "started", "live", "last failure"],
                 [(r["name"], r["state"] + (f" (queued {r['queued_s']:.0f} s)"
                                           if r.get("queued_s") is not None else ""),
                   blank(r["pid"]), mib(r["pss_kib"]), fenced(r),
                   blank(r["uptime_s"]), blank(r["requests"]), blank(r["last_request"]),
                   blank(r["cold_starts"]), started(r), live(r), failure(r))
                  for r in rows])


def main(argv=None):
    show_tb = bool(os.environ.get("LINOHOST_TRACEBACK"))
    try:
        rv = cli.main(args=argv, prog_name="linohost", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except Interrupted as e:                 # the user's choice, not an error
        sys.stderr.write(f"linohost: {e}\n")
        sys.exit(e.exit_code)
    except LinohostError as e:
        if show_tb or "--traceback" in (argv or sys.argv):
            traceback.print_exc()
        output.error(str(e))
        sys.exit(e.exit_code)
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, KeyboardInterrupt):    # Ctrl-C while click parsed
            sys.stderr.write("linohost: interrupted\n")
            sys.exit(130)
        output.error("aborted")
        sys.exit(1)
    except click.ClickException as e:
        output.error(e.format_message().replace("\n", " "))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(130)
