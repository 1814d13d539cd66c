"""Trial throughput of search workers with 1 and 2 processes on one Optuna study.

The same number of trials (``--trials``) is run once by one worker process and once split
between two worker processes sharing the study through :func:`moensemble.search.worker.run_worker`
(the code behind ``moensemble tune``). Every trial does the same work — a 3-fold
cross-validation of a fixed weighted ensemble (logistic regression, naive Bayes, a tree) on
scikit-learn's digits — so that the sampler's choices do not change the cost of a trial; only
the storage, the workers and the machine do. Printed per setting (best of ``--repeats``):
wall time from the first process start to the last exit, trials per second on that wall time,
trials per second between the first trial's start and the last trial's end (no process
start-up), and the ratio of two workers to one. Each process gets one BLAS/OpenMP thread, so
two workers need two free cores to scale.

    python benchmarks/bench_tune_workers.py                       # journal file, 8 trials
    python benchmarks/bench_tune_workers.py --storage postgresql+psycopg://u:pw@host/db
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

from moensemble.search.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]


def run_workers(storage: str, n_workers: int, n_trials: int) -> dict:
    """Start ``n_workers`` tune processes sharing ``n_trials``; return timings."""
    name = f"bench-{n_workers}-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    shares = [n_trials // n_workers + (i < n_trials % n_workers) for i in range(n_workers)]
    start = time.perf_counter()
    workers = [subprocess.Popen([sys.executable, __file__, "--worker", storage, name, str(share)],
                                env=env) for share in shares]
    codes = [w.wait(timeout=3600) for w in workers]
    wall = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a worker failed: exit codes {codes}")
    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == n_trials, f"expected {n_trials} trials, found {len(trials)}"
    span = (max(t.datetime_complete for t in complete)
            - min(t.datetime_start for t in complete)).total_seconds()
    return {"workers": n_workers, "trials": len(complete), "wall": wall,
            "per_s_wall": len(complete) / wall, "per_s_trials": len(complete) / span}


def worker(storage: str, name: str, n_trials: int) -> None:
    """One worker process: ``n_trials`` trials of equal cost."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    from moensemble.ensemble import WeightedEnsembleClassifier
    from moensemble.search.worker import run_worker

    X, y = load_digits(return_X_y=True)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("unused", 0.0, 1.0)  # the sampler runs, the work stays the same
        model = WeightedEnsembleClassifier(
            [("lr", LogisticRegression(max_iter=200)), ("nb", GaussianNB()),
             ("tree", DecisionTreeClassifier(random_state=0))], cv=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(cross_val_score(model, X, y, cv=3).mean())

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_worker(storage, name, objective, n_trials=n_trials, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="storage URL (default: a temporary journal file)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs=3, metavar=("STORAGE", "STUDY", "N"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        storage = args.storage or f"journal:{Path(tmp) / 'bench.log'}"
        print(f"storage: {storage.split('@')[-1]}; {args.trials} trials; "
              f"{os.cpu_count()} CPU cores")
        results = [
            min((run_workers(storage, n, args.trials) for _ in range(args.repeats)),
                key=lambda r: r["wall"])
            for n in (1, 2)
        ]
    print(f"{'workers':>7} {'trials':>6} {'wall s':>7} {'trials/s (wall)':>16} "
          f"{'trials/s (in trials)':>21}")
    for r in results:
        print(f"{r['workers']:>7} {r['trials']:>6} {r['wall']:>7.1f} {r['per_s_wall']:>16.3f} "
              f"{r['per_s_trials']:>21.3f}")
    one, two = results
    print(f"ratio 2 workers / 1 worker: {two['per_s_wall'] / one['per_s_wall']:.2f} (wall), "
          f"{two['per_s_trials'] / one['per_s_trials']:.2f} (in trials)")


if __name__ == "__main__":
    main()
