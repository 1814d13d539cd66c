"""Distributed search workers on one Optuna study: PostgreSQL and journal storages, faults."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import pytest

from moensemble.cli.tune import main
from moensemble.search.storage import open_storage, requeue_dead_local_trials

ROOT = Path(__file__).resolve().parents[1]
State = optuna.trial.TrialState


# ---- a private PostgreSQL server -------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as `postgres` (or `nobody`) then."""
    if os.geteuid() != 0:
        return command
    user = "postgres" if _user_exists("postgres") else "nobody"
    return ["runuser", "-u", user, "--", *command]


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway server on 127.0.0.1 (trust auth, fsync off); its URL for SQLAlchemy."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: install the `distributed` extra.")
        pytest.skip("needs psycopg (the `distributed` extra)")
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: install Debian's `postgresql`.")
        pytest.skip("no PostgreSQL binaries (initdb) found; install Debian's `postgresql`")
    # Not under pytest's tmp_path: the server user must be able to reach its folder.
    base = Path(tempfile.mkdtemp(prefix="moensemble-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres" if _user_exists("postgres") else "nobody")
        os.chown(base, user.pw_uid, user.pw_gid)
    port = _free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    try:
        subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "tune",
                                        "--auth=trust", "-E", "UTF8", "--no-sync"]), **run)
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
                   "-c fsync=off -c max_connections=50")
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                                        "-l", str(base / "server.log"), "-w", "-t", "60",
                                        "start"]), **run)
    except subprocess.CalledProcessError as exc:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr.decode()} {log}")
    try:
        yield f"postgresql+psycopg://tune@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                                        "immediate", "-w", "-t", "60", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["postgresql", "journal"])
def storage_url(request, tmp_path):
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.log'}"
    return request.getfixturevalue("postgres_url")


# ---- helpers ---------------------------------------------------------------------------------


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url)
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _wait_for(predicate, what: str, seconds: float = 90.0) -> None:
    for _ in range(int(seconds / 0.2)):  # bounded: fail rather than hang
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


WORKER = """
import sys, time
from moensemble.search.storage import open_storage
from moensemble.search.worker import run_worker

url, name, n_trials, stall = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    # Trial `stall` hangs, so that the test can kill the worker in the middle of it.
    time.sleep(600 if trial.number == stall else 0.1)
    return x

storage = open_storage(url, heartbeat_interval=1, grace_period=2)
run_worker(storage, name, objective, n_trials=n_trials, seed=0)
"""


# ---- two workers on one study ----------------------------------------------------------------


def test_two_cli_workers_share_one_study(storage_url, tmp_path):
    """Two ``moensemble tune`` processes: every trial lands once, the count is exact."""
    command = [sys.executable, "-m", "moensemble", "tune", "--storage", storage_url,
               "--study-name", "shared", "--n-trials", "3", "--family", "weighted",
               "--n-samples", "200", "--cv", "2", "--quiet"]
    workers = [subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    trials = _trials(storage_url, "shared")
    assert len(trials) == 6
    assert sorted(t.number for t in trials) == list(range(6))
    assert len({t._trial_id for t in trials}) == 6
    assert all(t.state == State.COMPLETE for t in trials), [t.state for t in trials]
    per_worker: dict[str, int] = {}
    for t in trials:
        per_worker[t.user_attrs["worker"]] = per_worker.get(t.user_attrs["worker"], 0) + 1
    assert sorted(per_worker.values()) == [3, 3]
    assert all("ran 3 trials" in out for out, _ in outputs)

    # The best trial is refit on all rows and saved safely.
    output = tmp_path / "best.moe"
    code = main(["--storage", storage_url, "--study-name", "shared", "--refit-best",
                 "--output", str(output), "--family", "weighted", "--n-samples", "200",
                 "--cv", "2", "--quiet"])
    assert code == 0
    import moensemble

    model = moensemble.load(output)
    best = max(trials, key=lambda t: t.value)
    assert model.named_steps["model"].weighting == best.params["weighting"]


def test_a_worker_with_other_settings_is_refused(tmp_path, capsys):
    url = f"journal:{tmp_path / 'study.log'}"
    common = ["--storage", url, "--study-name", "s", "--n-trials", "1", "--n-samples", "200",
              "--cv", "2", "--quiet"]
    assert main([*common, "--family", "weighted"]) == 0
    assert main([*common, "--family", "stacking"]) == 2
    assert "started with other settings (family)" in capsys.readouterr().err
    common[common.index("200")] = "201"  # another subset of the data
    assert main([*common, "--family", "weighted"]) == 2
    assert "started with other settings (data, n_samples)" in capsys.readouterr().err
    assert len(_trials(url, "s")) == 1


def test_unwritable_output_folder_is_a_clear_error(tmp_path, capsys):
    url = f"journal:{tmp_path / 'study.log'}"
    code = main(["--storage", url, "--study-name", "s", "--refit-best", "--output",
                 str(tmp_path / "missing" / "m.moe"), "--n-samples", "200", "--quiet"])
    assert code == 2
    assert "is missing or not writable" in capsys.readouterr().err


def test_disk_full_while_saving_keeps_the_earlier_model(tmp_path, capsys, monkeypatch):
    import errno
    import io
    import zipfile

    url = f"journal:{tmp_path / 'study.log'}"
    data = ["--n-samples", "200", "--cv", "2", "--quiet"]
    assert main(["--storage", url, "--study-name", "s", "--n-trials", "1", *data]) == 0
    output = tmp_path / "model.moe"
    refit = ["--storage", url, "--study-name", "s", "--refit-best", "--output", str(output)]
    assert main([*refit, *data]) == 0
    before = output.read_bytes()

    writestr = zipfile.ZipFile.writestr

    def full(self, *args, **kwargs):
        if isinstance(self.fp, io.BytesIO):  # skops builds its archive in memory: let it
            return writestr(self, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full)
    assert main([*refit, *data]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.moe", "study.log"]
    assert len(_trials(url, "s")) == 1  # the study is untouched


def test_bad_storage_url_masks_the_password(capsys):
    code = main(["--storage", "postgresql+psycopg://me:s3cret@127.0.0.1:1/db",
                 "--study-name", "s", "--n-trials", "1", "--n-samples", "200", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err and "***" in err


# ---- faults ----------------------------------------------------------------------------------


def test_sigkilled_worker_loses_no_finished_trial_and_its_trial_is_retried(storage_url,
                                                                          tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    name = "faults"

    def start(n_trials: int, stall: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), storage_url, name, str(n_trials),
                                 str(stall)], env=_env(), stderr=subprocess.PIPE, text=True)

    def states() -> list[tuple[State, bool]]:
        """Each trial's state and whether it has drawn its parameters yet."""
        with contextlib.suppress(KeyError):  # the study may not exist yet
            return [(t.state, bool(t.params))
                    for t in sorted(_trials(storage_url, name), key=lambda t: t.number)]
        return []

    first = start(10, stall=3)
    try:
        # Trial 3 is created RUNNING a moment before it suggests "x": wait for both, so that
        # the kill lands inside the stalled objective and the retry has parameters to copy.
        _wait_for(lambda: states()[:4] == [(State.COMPLETE, True)] * 3 + [(State.RUNNING, True)],
                  "three finished trials and a fourth running with its parameters")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    before = {t.number: t.value for t in _trials(storage_url, name)
              if t.state == State.COMPLETE}
    assert sorted(before) == [0, 1, 2]
    stalled = next(t for t in _trials(storage_url, name) if t.number == 3)
    assert stalled.state == State.RUNNING  # left behind by the dead worker

    time.sleep(3.5)  # past the 2 s grace period of the last heartbeat
    second = start(2, stall=-1)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err

    trials = {t.number: t for t in _trials(storage_url, name)}
    # No finished trial was lost, and none ran twice.
    assert {n: trials[n].value for n in before} == before
    assert trials[3].state == State.FAIL
    retries = [t for t in trials.values() if t.number > 3
               and _retry_of(t) == 3]
    assert len(retries) == 1
    assert retries[0].state == State.COMPLETE
    assert retries[0].params == stalled.params  # the same configuration, run again
    assert sorted(trials) == list(range(6))
    assert not [t for t in trials.values() if t.state in (State.RUNNING, State.WAITING)]


def _retry_of(trial: optuna.trial.FrozenTrial) -> int | None:
    if "retry_of" in trial.user_attrs:  # journal: moensemble re-queues the dead trial
        return trial.user_attrs["retry_of"]
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback",
                    optuna.storages.RetryFailedTrialCallback)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return retry.retried_trial_number(trial)


def test_requeue_leaves_live_workers_alone(tmp_path):
    url = f"journal:{tmp_path / 'study.log'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    alive = study.ask()
    alive.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    elsewhere = study.ask()
    elsewhere.set_user_attr("worker", "another-host:1")
    assert requeue_dead_local_trials(study) == []
    assert [t.state for t in study.trials] == [State.RUNNING, State.RUNNING]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


def test_requeue_stops_after_max_retry(tmp_path):
    url = f"journal:{tmp_path / 'study.log'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    first = study.ask()
    first.suggest_float("x", 0.0, 1.0)
    first.set_user_attr("worker", dead)
    assert requeue_dead_local_trials(study, max_retry=1) == [0]
    retry = study.ask()  # the queued copy, with the same parameters
    assert retry.user_attrs["retry_of"] == 0
    retry.suggest_float("x", 0.0, 1.0)
    retry.set_user_attr("worker", dead)
    assert requeue_dead_local_trials(study, max_retry=1) == [1]  # failed, not queued again
    assert [t.state for t in study.trials] == [State.FAIL, State.FAIL]
    assert study.trials[1].params == study.trials[0].params


def test_refit_best_writes_nothing_to_the_study(tmp_path):
    """A study without stored settings (e.g. from SearchCV) is refit without being changed."""
    import numpy as np
    from sklearn.datasets import make_classification

    from moensemble.search.worker import Problem, make_objective, refit_best, run_worker

    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    problem = Problem(X=X, y=y, task="classification", text=False, cv=2, inner_cv=2)
    log = tmp_path / "study.log"
    url = f"journal:{log}"
    run_worker(url, "plain", make_objective(problem), n_trials=1, seed=0)  # no config stored
    before = log.read_bytes()
    model = refit_best(url, "plain", problem)
    assert log.read_bytes() == before
    study = optuna.load_study(study_name="plain", storage=open_storage(url))
    assert study.user_attrs == {}
    assert np.mean(model.predict(X) == y) > 0.7


def test_problem_is_public_and_documented():
    import moensemble.search.storage as storage
    import moensemble.search.worker as worker

    assert "Problem" in worker.__all__
    for section in ("Parameters", "family :", "scoring :", "Examples"):
        assert section in worker.Problem.__doc__
    assert "\n    ``postgresql" not in storage.__doc__  # no indented block (a code block in MkDocs)


def test_cli_options_scoring_max_retry_and_quiet(tmp_path, capsys, monkeypatch):
    import moensemble.search.storage as storage

    url = f"journal:{tmp_path / 'study.log'}"
    common = ["--storage", url, "--n-trials", "1", "--n-samples", "200", "--cv", "2"]
    assert main([*common, "--study-name", "f1", "--scoring", "f1_macro"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2-fold f1_macro" in lines[0]  # what the worker runs
    assert lines[1].startswith("trial 0 complete ")  # a line per finished trial
    assert "ran 1 trials" in lines[-1] and len(lines) == 3
    assert _trials(url, "f1")[0].state == State.COMPLETE
    study = optuna.load_study(study_name="f1", storage=open_storage(url))
    assert study.user_attrs["moensemble_tune"]["scoring"] == "f1_macro"
    assert main([*common, "--study-name", "f1"]) == 2  # accuracy: other settings
    assert "started with other settings (scoring)" in capsys.readouterr().err

    assert main([*common, "--study-name", "q", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "ran 1 trials" in out[0]  # only the summary line
    default = optuna.load_study(study_name="q", storage=open_storage(url))
    assert "scoring" not in default.user_attrs["moensemble_tune"]  # as before --scoring

    assert main([*common, "--study-name", "x", "--scoring", "accuracyy"]) == 2
    assert "unknown --scoring 'accuracyy'" in capsys.readouterr().err

    seen = {}

    def fake_open(url, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(storage, "open_storage", fake_open)
    assert main([*common, "--study-name", "r", "--max-retry", "0"]) == 2
    assert seen["max_retry"] == 0
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for words in ("--max-retry N times a trial whose worker died",
                  "--cv K cross-validation folds", "--random-state SEED seeds the folds",
                  "--scoring NAME a scikit-learn scorer name",
                  "--quiet print only the final summary line"):
        assert words in help_text


def test_database_storage_retries_as_many_times_as_asked(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", max_retry=0)
    assert storage.get_heartbeat_stale_trial_callback()._max_retry == 0


# ---- resuming with a changed space -----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test's own study.ask()
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_worker_joining_a_study_of_another_space_is_refused(tmp_path, capsys, kind):
    """Optuna would fail each trial (other choices); the worker refuses before the first."""
    url = (f"journal:{tmp_path / 'study.log'}" if kind == "journal"
           else f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    trial = study.ask()
    trial.suggest_categorical("weighting", ["greedy", "uniform"])
    study.tell(trial, 0.5)
    code = main(["--storage", url, "--study-name", "s", "--n-trials", "1", "--family",
                 "weighted", "--n-samples", "200", "--cv", "2", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "parameter 'weighting' changed from categorical ['greedy', 'uniform'] (trial 0) " \
           "to categorical ['greedy', 'optimize', 'uniform']" in err
    assert "parameter 'use_" in err and "new study name" in err and "--study-name" in err
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    assert len(study.trials) == 1 and study.user_attrs == {}  # nothing written
    code = main(["--storage", url, "--study-name", "s", "--refit-best", "--output",
                 str(tmp_path / "m.moe"), "--n-samples", "200", "--cv", "2", "--quiet"])
    assert code == 2 and not (tmp_path / "m.moe").exists()
    err = capsys.readouterr().err
    assert "family 'weighted' differs" in err and "parameter 'weighting' changed" in err


def test_a_worker_whose_family_space_changed_is_refused(tmp_path, capsys, monkeypatch):
    """A worker of another version (here: one more parameter) cannot join an older study."""
    from moensemble.search.worker import Problem

    url = f"journal:{tmp_path / 'study.log'}"
    common = ["--storage", url, "--study-name", "s", "--n-trials", "1", "--n-samples", "200",
              "--cv", "2", "--quiet"]
    assert main(common) == 0
    make = Problem.make

    def newer(self):
        estimator, space = make(self)

        def more(trial):
            trial.suggest_int("extra", 1, 3)
            return space(trial)

        return estimator, more

    monkeypatch.setattr(Problem, "make", newer)
    assert main(common) == 2
    assert "parameter 'extra' is new (int in [1, 3])" in capsys.readouterr().err
    assert len(_trials(url, "s")) == 1
    monkeypatch.undo()
    assert main(common) == 0  # the same space resumes
    assert [t.state for t in _trials(url, "s")] == [State.COMPLETE] * 2


def test_run_worker_checks_the_given_space_on_an_in_memory_study():
    from moensemble.search.trials import space_changes
    from moensemble.search.worker import run_worker

    storage = optuna.storages.InMemoryStorage()

    def space(trial):
        return {"x": trial.suggest_float("x", 0.0, 1.0)}

    def objective(trial):
        return space(trial)["x"]

    assert len(run_worker(storage, "m", objective, n_trials=2, space=space)) == 2
    objective.space = lambda trial: {"x": trial.suggest_float("x", 0.0, 2.0)}  # taken as space
    with pytest.raises(ValueError, match=r"parameter 'x' changed from float in \[0.0, 1.0\] "
                       r"\(trial 0\) to float in \[0.0, 2.0\]"):
        run_worker(storage, "m", objective, n_trials=2)
    assert len(run_worker(storage, "m", objective, n_trials=1, space=space)) == 1
    study = optuna.load_study(study_name="m", storage=storage)
    assert len(study.trials) == 3 and space_changes(study, space) == []


def test_every_family_space_replays_as_it_was_drawn():
    """No family's space (conditional ones included) looks changed to a worker joining."""
    import numpy as np

    from moensemble.search.auto import FAMILIES
    from moensemble.search.trials import space_changes
    from moensemble.search.worker import Problem

    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.array([0, 1] * 20)
    for family in FAMILIES:
        _, space = Problem(X=X, y=y, task="classification", text=False, family=family).make()
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(10):
            trial = study.ask()
            space(trial)
            study.tell(trial, 0.0)
        assert space_changes(study, space) == [], family


def test_a_worker_whose_trial_is_refused_a_distribution_stops_with_a_clear_error():
    """A branch no stored trial took draws a name from another distribution: the worker
    stops at that trial instead of failing every trial with Optuna's message."""
    from moensemble.search.worker import run_worker

    storage = optuna.storages.InMemoryStorage()

    def objective(trial):
        if trial.number == 0:
            return trial.suggest_float("x", 1.0, 2.0)
        return trial.suggest_float("x", 1.0, 2.0, log=True)

    with pytest.raises(ValueError, match=r"worker asks for a parameter with another "
                       r"distribution .*'x': float in \[1.0, 2.0\]"):
        run_worker(storage, "w", objective, n_trials=5)
    study = optuna.load_study(study_name="w", storage=storage)
    assert [t.state for t in study.trials] == [State.COMPLETE, State.FAIL]


def test_the_family_help_names_every_family():
    from moensemble.cli import build_parser
    from moensemble.search.auto import FAMILIES

    tune = build_parser()._subparsers._group_actions[0].choices["tune"]
    text = " ".join(tune.format_help().split())
    assert [f for f in FAMILIES if f not in text] == []
