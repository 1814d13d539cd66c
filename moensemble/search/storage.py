"""Optuna storages shared by every search: one :func:`open_storage`, heartbeats, dead workers.

**Storages.** Pick one by where the workers run:

- ``postgresql+psycopg://user:password@host:5432/db`` (or any SQLAlchemy URL) for workers on
  many machines;
- ``journal:/path/study.log`` (Optuna's ``JournalStorage`` on a file) for processes on one
  machine;
- ``sqlite:///study.db`` for a quick single-machine run.

**Faults.** Finished trials are stored as they finish, so killing a worker never loses them.
A trial whose worker died is retried:

- with a database URL every running trial sends a heartbeat; a trial whose worker died
  (SIGKILL, a lost machine) is marked FAIL once its heartbeat is older than the grace
  period, and :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` queues it again with
  the same parameters (at most ``max_retry`` times); the next worker to ask for a trial
  runs it;
- journal files have no heartbeat: a worker starting on the same machine fails and queues
  again the running trials whose worker process no longer exists.

:class:`~moensemble.search.SearchCV`, the AutoML estimators and the ``moensemble tune``
workers (:mod:`moensemble.search.worker`) all open a ``storage`` given as a URL string here,
so resuming a study after a crash retries the trial that was running.
"""

from __future__ import annotations

import os
import re
import socket
import time
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # optuna is imported where used: `moensemble --help` stays fast
    import optuna

__all__ = ["open_storage", "mask_url", "url_password", "worker_id", "tag_worker", "heartbeat",
           "recover_trials", "requeue_dead_local_trials", "HEARTBEAT_INTERVAL", "GRACE_PERIOD",
           "MAX_RETRY", "WORKER_ATTR"]


#: Seconds between heartbeats of a running trial (database storages).
HEARTBEAT_INTERVAL = 30
#: A running trial whose heartbeat is older than this is taken as dead.
GRACE_PERIOD = 120
#: How many times a trial killed with its worker is queued again.
MAX_RETRY = 2
WORKER_ATTR = "worker"


def open_storage(
    url: Any,
    *,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int | None = GRACE_PERIOD,
    max_retry: int = MAX_RETRY,
) -> optuna.storages.BaseStorage | None:
    """Open a storage: heartbeats and retries on databases, a journal on a file.

    Parameters
    ----------
    url : str, optuna storage or None
        ``journal:<path>`` (or ``journal:///abs/path``) opens a
        :class:`optuna.storages.JournalStorage` on a file, which several processes on one
        machine can share; any other string is an SQLAlchemy URL
        (``postgresql+psycopg://...``, ``sqlite:///...``) opened as an
        :class:`optuna.storages.RDBStorage` with heartbeats. A storage object, or None (in
        memory), is returned as is.
    heartbeat_interval : int, default=30
        Seconds between the heartbeats of a running trial (database storages).
    grace_period : int or None, default=120
        Age of the last heartbeat after which a running trial is taken as dead; None uses
        Optuna's default (twice the interval).
    max_retry : int, default=2
        Times a dead worker's trial is queued again.

    Returns
    -------
    storage : optuna.storages.BaseStorage or None

    Raises
    ------
    ValueError
        When the storage cannot be opened; the message masks any password in ``url``.
    """
    import optuna

    if url is None or isinstance(url, optuna.storages.BaseStorage):
        return url
    url = str(url)
    if url.startswith("journal:"):
        return _open_journal(url)
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    retry = retry or optuna.storages.RetryFailedTrialCallback  # Optuna < 5
    kwargs: dict[str, Any] = {"heartbeat_interval": heartbeat_interval,
                              "grace_period": grace_period}
    key = "heartbeat_stale_trial_callback"
    if key not in optuna.storages.RDBStorage.__init__.__code__.co_varnames:
        key = "failed_trial_callback"  # Optuna < 5
    with warnings.catch_warnings():  # stable in practice since Optuna 2.8, still "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        kwargs[key] = retry(max_retry=max_retry)
    try:
        return _open_rdb(url, kwargs)
    except Exception as exc:
        raise ValueError(f"Could not open the Optuna storage {mask_url(url)!r}: "
                         f"{_masked(exc, url)}") from None


def _open_journal(url: str) -> optuna.storages.BaseStorage:
    try:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = re.sub(r"^journal:(//)?", "", url)
        if not path:
            raise ValueError("no file path after 'journal:'")
        return JournalStorage(JournalFileBackend(path))
    except Exception as exc:
        raise ValueError(
            f"Could not open the Optuna storage {mask_url(url)!r} (`storage`): "
            f"{_masked(exc, url)}"
        ) from None


def _masked(exc: Exception, url: str) -> str:
    message = f"{type(exc).__name__}: {exc}"
    secret = url_password(url)
    return message.replace(secret, "***") if secret else message


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (journal:, a typo): mask by pattern
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def url_password(url: str) -> str | None:
    """The password in ``url`` (``scheme://user:password@host``), or None."""
    match = re.search(r"://[^:/@]*:([^@]*)@", url)
    return match.group(1) if match and match.group(1) else None


def _open_rdb(url: str, kwargs: dict, attempts: int = 5) -> optuna.storages.RDBStorage:
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # pool_pre_ping: a worker outlives database restarts and idle timeouts.
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"pool_pre_ping": True}, **kwargs
                )
        except (IntegrityError, ProgrammingError):
            # Workers started together on an empty database race to create Optuna's tables;
            # the losers find them created on the next attempt.
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def worker_id() -> str:
    """``host:pid`` of this process, stored on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def requeue_dead_local_trials(study: optuna.Study, *, max_retry: int = MAX_RETRY) -> list[int]:
    """Fail and queue again the RUNNING trials of dead processes on this machine.

    For storages without heartbeats (journal files, which serve one machine): a trial whose
    worker process no longer exists will never finish.

    Parameters
    ----------
    study : optuna.Study
        A study whose trials carry their worker (``host:pid`` in the ``worker`` user
        attribute, see :func:`worker_id`); trials without it are left alone.
    max_retry : int, default=2
        A trial is queued again at most this many times (a configuration that kills its
        process is then only failed).

    Returns
    -------
    numbers : list of int
        Numbers of the trials that were failed.
    """
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if is_heartbeat_enabled(study._storage):
        return []  # the storage's heartbeat handles it, across machines
    host = socket.gethostname()
    failed = []
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state != optuna.trial.TrialState.RUNNING:
            continue
        owner_host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        # Only one worker wins the RUNNING -> FAIL transition, so the trial is queued once.
        try:
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except UpdateFinishedTrialError:  # another worker got there first
            continue
        failed.append(trial.number)
        if _retries(trial, trials) < max_retry:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return failed


def _retries(trial: optuna.trial.FrozenTrial, trials: list[optuna.trial.FrozenTrial]) -> int:
    """How many times ``trial``'s configuration was queued again before it (``retry_of``)."""
    by_number = {t.number: t for t in trials}
    count, seen = 0, set()
    while "retry_of" in trial.user_attrs and trial.number not in seen:
        seen.add(trial.number)
        count += 1
        trial = by_number.get(trial.user_attrs["retry_of"])
        if trial is None:
            break
    return count


def recover_trials(study: optuna.Study, *, max_retry: int = MAX_RETRY) -> list[int]:
    """Fail (and queue again) the trials left RUNNING by dead workers.

    With a heartbeat (database storages opened by :func:`open_storage`), the trials whose
    heartbeat is older than the grace period go through Optuna's
    :func:`optuna.storages.fail_stale_trials` and the storage's retry callback; without one
    (journal files), :func:`requeue_dead_local_trials`. Cheap: call it before asking for a
    trial outside :meth:`optuna.Study.optimize` (which calls it itself).

    Parameters
    ----------
    study : optuna.Study
    max_retry : int, default=2
        Journal storages only: see :func:`requeue_dead_local_trials` (database storages
        retry as their callback says).

    Returns
    -------
    numbers : list of int
        Journal storages: the failed trials' numbers; database storages: an empty list.
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if not is_heartbeat_enabled(study._storage):
        return requeue_dead_local_trials(study, max_retry=max_retry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return []


def heartbeat(study: optuna.Study, trial: optuna.Trial):
    """Context manager: send ``trial``'s heartbeat while it runs (when the storage has one).

    :meth:`optuna.Study.optimize` does this itself; ask-and-tell loops need it, or other
    processes take their running trials for dead ones.
    """
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial._trial_id, study._storage)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def tag_worker(trial: optuna.Trial) -> None:
    """Store ``host:pid`` on a persisted trial, so that a later run can tell it was orphaned."""
    import optuna

    if not isinstance(trial.study._storage, optuna.storages.InMemoryStorage):
        trial.set_user_attr(WORKER_ATTR, worker_id())
