"""What the CLI's board writes to and reads from compare's joblib cache, by cached function.

Runs the default board of ``moensemble compare --n-samples N`` (the bundled WordNet glosses,
both TF-IDF views, the CLI's outer folds, seed 0) on the first ``--folds`` outer folds,
sequentially (one process, so that every dump and load is seen), with every
``joblib.Memory`` dump and load counted: items, megabytes written, seconds. Where the
cache's megabytes come from (the fitted models, the views' matrices, the pipelines' own
copies of them), to decide what to keep out of it.

    python benchmarks/bench_compare_cache.py --n-samples 20000 --folds 1
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import tempfile
import time
import warnings

import joblib._store_backends as store
from joblib import Memory

from moensemble.cli import build_parser
from moensemble.cli.common import load_data
from moensemble.cli.compare import (
    OPTIONAL_MODELS,
    _left_out,
    _quiet_known_warnings,
    build_models,
    select_models,
    with_text_views,
)
from moensemble.leaderboard import compare, make_folds

# function -> [dumps, bytes written, dump seconds, loads, load seconds]
STATS: dict[str, list] = collections.defaultdict(lambda: [0, 0, 0.0, 0, 0.0])


def _count() -> None:
    backend = store.FileSystemStoreBackend
    dump, load = backend.dump_item, backend.load_item

    def counted_dump(self, call_id, item, verbose=1):
        start = time.perf_counter()
        dump(self, call_id, item, verbose)
        row = STATS[call_id[0].split("/")[-1]]
        row[0] += 1
        row[2] += time.perf_counter() - start
        path = os.path.join(self.location, *call_id, "output.pkl")
        row[1] += os.path.getsize(path) if os.path.exists(path) else 0

    def counted_load(self, call_id, *args, **kwargs):
        start = time.perf_counter()
        out = load(self, call_id, *args, **kwargs)
        row = STATS[call_id[0].split("/")[-1]]
        row[3] += 1
        row[4] += time.perf_counter() - start
        return out

    backend.dump_item, backend.load_item = counted_dump, counted_load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", default="20000")
    parser.add_argument("--folds", type=int, default=1, help="outer folds run (of 3)")
    options = parser.parse_args()
    _count()
    args = build_parser().parse_args(["compare", "--n-samples", options.n_samples, "--quiet"])
    data = with_text_views(load_data(args), args)
    built = build_models(data, args)
    models = select_models(built, None, left_out=_left_out(built, data["task"]),
                           optional=OPTIONAL_MODELS)
    folds = make_folds(args.cv, data["X"], data["y"], random_state=args.random_state)
    location = tempfile.mkdtemp(prefix="bench-compare-cache-")
    try:
        with warnings.catch_warnings():
            _quiet_known_warnings()
            start, cpu = time.perf_counter(), time.process_time()
            _, table = compare(models, data["X"], data["y"], cv=folds[:options.folds],
                               n_jobs=1, memory=Memory(location, verbose=0), progress=False,
                               return_folds=True)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        shutil.rmtree(location, ignore_errors=True)
    print(table[["model", "fold", "accuracy", "log_loss", "cpu_time_s"]].round(4).to_string())
    print(f"\n{wall:.0f} s wall, {cpu:.0f} s CPU; the cache, by function:")
    for name, (dumps, size, dump_s, loads, load_s) in sorted(STATS.items(),
                                                             key=lambda kv: -kv[1][1]):
        print(f"  {name:36s} {dumps:4d} dumps {size / 1e6:9.1f} MB {dump_s:6.1f} s"
              f"   {loads:4d} loads {load_s:6.1f} s")
    total = sum(row[1] for row in STATS.values())
    print(f"  {'all':36s} {sum(r[0] for r in STATS.values()):4d} dumps {total / 1e6:9.1f} MB")


if __name__ == "__main__":
    main()
