"""A site's scheduled background tasks (Lino's linod), run *inside* its worker.

The keeper gives this file's text to the worker (which runs in the site's
environment): it imports nothing of linohost. Once the site is loaded, the
worker calls :func:`start`, which starts one daemon thread. Every few seconds
(Lino's ``linod.background_sleep_time``) that thread makes one pass over the
site's ``linod.SystemTask`` rows (every class of :class:`Procedures`) as
Lino's own ``start_task_runner`` decides: requested ones first, then enabled
ones that never ran or whose ``get_next_suggested_date(last_end_time)`` has
passed; each is run by Lino's ``Runnable.start_task`` (which logs, catches,
disables a failing task and notifies). Lino's runner cannot be called for one
pass: ``start_task_runner(max_count=N)`` skips every task whose procedure has
``during_initdb=False`` (e.g. ``send_pending_emails_often``). The Django
connections of the thread are closed after each pass.

For the keeper, :attr:`Jobs.next_job` is the epoch at which this site next has
something to do while it sleeps (None: nothing scheduled). A *frequent* task
(one that recurs more often than ``min_interval`` seconds, e.g. sending the
pending e-mails every 10 s) does not count there: a sleeping site creates no
work for it. It runs on time while the worker runs, and a worker started only
for jobs (:attr:`Jobs.finished`) leaves only once every frequent task has run
after the last other task, so that what a daily task leaves (e.g. e-mails)
goes out before the site sleeps again.
"""
import threading
import traceback
from datetime import timedelta

KILL_AFTER = timedelta(hours=2)      # as Lino's runner: a task "running" longer was lost


class Jobs:
    """The job thread's state, read by the worker's loop (plain attributes)."""

    def __init__(self, log, min_interval):
        self.log, self.min_interval = log, min_interval
        self.running = False         # a task runs now
        self.next_job = None         # epoch, or None
        self.passes = 0
        self.finished = False        # nothing left that a job-only worker must do
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._other_end = None       # when the last non-frequent task of ours ended

    def stop(self):
        """Start no more tasks (the one running finishes: see :attr:`running`)."""
        with self._lock:
            self.stopping.set()

    def _begin(self):
        """Whether a task may start now (not once stop() was called)."""
        with self._lock:
            if self.stopping.is_set():
                return False
            self.running = True
            return True


def start(log, min_interval=300):
    """Start the job thread of the loaded site; return its :class:`Jobs`
    (finished at once when the site has no linod)."""
    jobs = Jobs(log, min_interval)
    from django.conf import settings
    if not settings.SITE.is_installed("linod"):
        jobs.finished = True
        return jobs
    threading.Thread(target=_loop, args=(jobs,), name="linohost-jobs", daemon=True).start()
    return jobs


def _loop(jobs):
    from asgiref.sync import async_to_sync
    from django.db import connections
    from lino.api import dd
    from lino.modlib.linod.choicelists import Procedures
    sleep = dd.plugins.linod.background_sleep_time
    ar = None
    while not jobs.stopping.is_set():
        try:
            if ar is None:
                ar = _request()
                for proc in Procedures.get_list_items():   # as Lino's runner does first
                    async_to_sync(proc.install_if_needed)(ar)
            _pass(jobs, ar)
        except Exception:
            jobs.log(f"background tasks: pass failed:\n{traceback.format_exc()}")
            jobs.running = False
        finally:
            connections.close_all()
        jobs.passes += 1
        jobs.stopping.wait(sleep)


def _request():
    """The action request Lino's linod runs tasks with (its daemon user, if any)."""
    from django.conf import settings
    from lino.core.requests import BaseRequest
    User = settings.SITE.user_model
    try:
        user = User.objects.get(username=settings.SITE.plugins.linod.daemon_user)
    except Exception:                   # no such user (or no users at all)
        user = None
    return BaseRequest(user=user)


def tasks():
    """Every task Lino's runner looks at, in its order: requested first, then enabled."""
    from lino.modlib.linod.choicelists import Procedures
    out = []
    for cls in Procedures.task_classes():
        out += cls.objects.filter(requested_at__isnull=False).order_by("requested_at")
    for cls in Procedures.task_classes():
        out += cls.objects.filter(requested_at__isnull=True, disabled=False).order_by("seqno")
    return out


def when(task, ar):
    """When *task* is due by Lino's runner's rule: None if at once, a datetime (naive
    unless USE_TZ), or False if never (not scheduled, or it runs now)."""
    if task.is_running():
        return False
    if task.requested_at is not None or task.last_end_time is None:
        return None
    nst = task.get_next_suggested_date(task.last_end_time, ar.logger)
    return False if nst is None else nst


def _pass(jobs, ar):
    from asgiref.sync import async_to_sync
    from django.utils import timezone
    ran = False
    frequent_ends = []
    for task in tasks():
        now = timezone.now()
        if task.is_running():
            if now - task.last_start_time > KILL_AFTER:
                task.last_end_time = now
                task.message = f"Killed {task} because running more than 2 hours"
                task.full_clean()
                task.save()
            continue
        due = when(task, ar)
        if due is False or (due is not None and due > now):
            if due is not False and _frequent(jobs, task, due):
                frequent_ends.append(task.last_end_time)
            continue
        if not jobs._begin():
            return
        try:
            async_to_sync(task.start_task)(ar)
        finally:
            jobs.running = False
        ran = True
        nst = task.get_next_suggested_date(task.last_end_time, ar.logger)
        if nst is not None and _frequent(jobs, task, nst):
            frequent_ends.append(task.last_end_time)
        else:
            jobs._other_end = task.last_end_time
    jobs.next_job = next_job(jobs.min_interval, ar)
    jobs.finished = not ran and all(
        jobs._other_end is None or end >= jobs._other_end for end in frequent_ends)


def _frequent(jobs, task, nst):
    return (nst - task.last_end_time).total_seconds() < jobs.min_interval


def next_job(min_interval, ar=None):
    """Epoch of the site's next due job that is not frequent (see the module's doc),
    or None. Call in a thread that may use the database."""
    from django.utils import timezone
    ar = ar or _request()
    best = None
    now = timezone.now()
    for task in tasks():
        due = when(task, ar)
        if due is False:
            continue
        if due is None:
            due = now
        elif (due - task.last_end_time).total_seconds() < min_interval:
            continue
        best = due if best is None else min(best, due)
    return best.timestamp() if best is not None else None
