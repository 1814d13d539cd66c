"""Each example script runs in its fast mode and prints what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "MOENSEMBLE_FAST": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(EXAMPLES.parent)}
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1).replace(",", ""))


def test_tfidf_moe_pipeline(tmp_path):
    out = run_example("tfidf_moe_pipeline.py", cwd=tmp_path)
    assert 0.0 <= _number(r"accuracy: ([\d.]+)", out) <= 1.0
    assert _number(r"active parameters per row: ([\d,]+)", out) > 0
    # One line per expert in the routing summary, loads summing to 1.
    loads = [float(m) for m in re.findall(r"^\s+\d+\s+([\d.]+)\s", out, flags=re.M)]
    assert len(loads) == 8
    assert sum(loads) == pytest.approx(1.0, abs=0.05)


def test_compare_ensembles_vs_moe(tmp_path):
    out = run_example("compare_ensembles_vs_moe.py", "--output", str(tmp_path / "plots"),
                      cwd=tmp_path)
    for name in ("logreg", "naive_bayes", "weighted", "moe"):
        assert re.search(rf"^{name}\s+[\d.]+", out, flags=re.M), out
    assert "best: " in out
    for png in ("leaderboard.png", "routing_heatmap.png", "expert_load.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 1000


def test_gridsearch_moe(tmp_path):
    out = run_example("gridsearch_moe.py", cwd=tmp_path)
    # Four rows of the 2 x 2 grid, then the winner.
    rows = re.findall(r"^\s+([48])\s+([12])\s+[\d.]+", out, flags=re.M)
    assert sorted(rows) == [("4", "1"), ("4", "2"), ("8", "1"), ("8", "2")]
    assert "best: {'moe__n_experts'" in out
    assert 0.0 <= _number(r"held-out accuracy: ([\d.]+)", out) <= 1.0
