"""Trial throughput of ``moensemble tune`` with 1 and 2 worker processes on one study.

The same number of trials (``--trials``, weighted-ensemble family on the bundled WordNet
glosses) is run once by one worker and once split between two workers sharing the study.
Printed per setting: wall time from the first process start to the last exit, trials per
second on that wall time, trials per second between the first trial's start and the last
trial's end (no process start-up), and the ratio of two workers to one. Each process gets one
BLAS/OpenMP thread, so two workers need two cores to scale.

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

from moensemble.tune import open_storage

ROOT = Path(__file__).resolve().parents[1]


def run_workers(storage: str, n_workers: int, n_trials: int, n_samples: int) -> dict:
    """Start ``n_workers`` tune processes sharing ``n_trials``; return timings."""
    name = f"bench-{n_workers}-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    shares = [n_trials // n_workers + (i < n_trials % n_workers) for i in range(n_workers)]
    command = [sys.executable, "-m", "moensemble.tune", "--storage", storage, "--study-name",
               name, "--family", "weighted", "--n-samples", str(n_samples), "--quiet"]
    start = time.perf_counter()
    workers = [subprocess.Popen([*command, "--n-trials", str(share)], env=env,
                                stdout=subprocess.DEVNULL) for share in shares]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="storage URL (default: a temporary journal file)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--n-samples", type=int, default=1500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage = args.storage or f"journal:{Path(tmp) / 'bench.log'}"
        print(f"storage: {storage.split('@')[-1]}; {args.trials} trials; "
              f"{os.cpu_count()} CPU cores")
        results = [run_workers(storage, n, args.trials, args.n_samples) for n in (1, 2)]
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
