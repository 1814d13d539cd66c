"""What the command line tells its user: notes on dropped rows and models, help, progress."""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np
import pandas as pd
import pytest

from moensemble.cli import build_parser, main
from moensemble.cli.compare import MODEL_NAMES, build_models, select_models

FAST = ["--cv", "2"]


def _reviews(tmp_path, unlabelled=()):
    rng = np.random.default_rng(0)
    words = {"sport": "ball goal team match", "food": "bread cheese soup taste"}
    rows = [{"review": " ".join(rng.choice(w.split(), size=5)), "topic": label,
             "price": rng.normal(), "constant": "same"}
            for label, w in words.items() for _ in range(30)]
    frame = pd.DataFrame(rows)
    frame.loc[list(unlabelled), "topic"] = np.nan
    path = tmp_path / "reviews.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def csv(tmp_path):
    return _reviews(tmp_path)


def test_rows_with_an_empty_target_are_never_dropped_silently(tmp_path, capsys):
    from moensemble.cli.common import load_data

    path = _reviews(tmp_path, unlabelled=[3, 17, 40])
    # `tune` drops them and its "data:" line says how many.
    args = argparse.Namespace(data=path, target="topic", text_column="review", features=[],
                              task="auto", n_samples=None, cv=2, random_state=0)
    dataset = load_data(args)
    assert len(dataset["y"]) == 57
    assert dataset["description"] == ("reviews.csv, 57 rows, 2 classes (dropped 3 rows with "
                                      "an empty 'topic')")
    # The worker's first line carries that description.
    code = main(["tune", "--storage", f"journal:{tmp_path / 'study.log'}", "--study-name", "s",
                 "--n-trials", "1", "--data", str(path), "--target", "topic", "--text-column",
                 "review", "--cv", "2"])
    first = capsys.readouterr().out.splitlines()[0]
    assert code == 0
    assert "on reviews.csv, 57 rows, 2 classes (dropped 3 rows with an empty 'topic')" in first
    # `compare` refuses them, naming the rows.
    code = main(["compare", "--data", str(path), "--text-column", "review", "--target",
                 "topic", "--output", str(tmp_path / "o"), *FAST])
    assert code == 2
    assert "3 missing value(s), at row(s) 3, 17, 40" in capsys.readouterr().err


def test_the_single_class_error_names_the_class_plainly(csv, tmp_path, capsys):
    code = main(["compare", "--data", str(csv), "--text-column", "review", "--target",
                 "constant", "--output", str(tmp_path), *FAST])
    err = capsys.readouterr().err
    assert code == 2
    assert "has a single class ('same'); a classifier needs at least two" in err
    assert "np." not in err


def _dataset(text: bool) -> dict:
    return {"task": "classification", "text": text, "numeric": [] if text else ["e0"],
            "text_column": None}


def test_without_word_counts_naive_bayes_is_left_out_with_a_note(csv, tmp_path, capsys,
                                                                 monkeypatch):
    args = argparse.Namespace(max_features=100, random_state=0)
    # TF-IDF keeps naive Bayes; numeric (or embedding) features do not.
    assert [n for n, _ in select_models(build_models(_dataset(True), args), None,
                                        optional=("weighted_moe", "mlp"))] == list(
        MODEL_NAMES["classification"])
    dense = build_models(_dataset(False), args)
    assert "naive_bayes" not in dict(dense)
    with pytest.raises(Exception, match="--models naive_bayes: not in this run: naive Bayes "
                                        "needs non-negative word counts"):
        select_models(dense, "logreg,naive_bayes",
                      left_out={"naive_bayes": "naive Bayes needs non-negative word counts"})
    # The run prints why, without --models too (two cheap models stand in for the six).
    import moensemble.cli.compare as cli_compare

    monkeypatch.setattr(cli_compare, "build_models",
                        lambda dataset, args: [(n, m) for n, m in dense if n == "logreg"])
    code = main(["compare", "--data", str(csv), "--features", "price", "--target", "topic",
                 "--output", str(tmp_path / "o"), *FAST])
    out = capsys.readouterr().out
    assert code == 0
    assert "models: logreg;" in out
    assert "note: naive Bayes needs non-negative word counts (TF-IDF features)" in out
    # Asked for by name, it is refused with the same reason.
    code = main(["compare", "--data", str(csv), "--features", "price", "--target", "topic",
                 "--models", "naive_bayes", "--output", str(tmp_path / "o"), *FAST])
    assert code == 2
    assert "--models naive_bayes: not in this run: naive Bayes" in capsys.readouterr().err


def test_the_model_names_in_the_help_are_the_default_models():
    from moensemble.cli.compare import OPTIONAL_MODELS
    from moensemble.leaderboard import default_models

    for task in MODEL_NAMES:
        names = {n for sparse in (True, False)
                 for n, _ in default_models(task, sparse=sparse, quick=True, moe_members=True,
                                            mlp=True)}
        assert names == set(MODEL_NAMES[task]) | set(OPTIONAL_MODELS)
    help_text = " ".join(_subparser("compare").format_help().split())
    assert ("logreg, naive_bayes, extra_trees, weighted, stacked, moe, gated, stacked_moe"
            in help_text)
    assert "ridge, extra_trees" in help_text
    assert "only when named, weighted_moe" in help_text and "mlp" in help_text


def test_the_default_board_has_an_ensemble_with_the_moe_and_the_mlp_only_when_named():
    from moensemble.moe import MoEClassifier

    args = argparse.Namespace(max_features=100, random_state=0)
    built = build_models(_dataset(True), args)
    default = [n for n, _ in select_models(built, None, optional=("weighted_moe", "mlp"))]
    assert default == list(MODEL_NAMES["classification"])
    chosen = dict(select_models(built, "mlp,moe,weighted_moe"))
    assert list(chosen) == ["mlp", "moe", "weighted_moe"]
    members = dict(chosen["weighted_moe"][-1].estimators)
    assert isinstance(members["moe"], MoEClassifier)
    # The MLP is the MoE's dense peer: one expert as wide as the MoE's two routed ones.
    moe, mlp = chosen["moe"][-1].get_params(), chosen["mlp"][-1].get_params()
    assert (mlp["n_experts"], mlp["top_k"]) == (1, 1)
    assert mlp["expert_hidden"] == tuple(moe["top_k"] * w for w in moe["expert_hidden"])
    assert {k: v for k, v in mlp.items() if k not in ("n_experts", "top_k", "expert_hidden")} \
        == {k: v for k, v in moe.items() if k not in ("n_experts", "top_k", "expert_hidden")}


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


@pytest.mark.parametrize("command", ["compare", "tune"])
def test_help_gives_each_default_once_and_only_when_it_says_something(command):
    help_text = _subparser(command).format_help()
    text = " ".join(help_text.split())
    options: list[str] = []  # each option's help, its wrapped lines joined
    for line in help_text.splitlines():
        if re.match(r"^ {2}-", line) or not line.startswith(" "):
            options.append(line.strip())
        elif options:
            options[-1] += " " + line.strip()
    assert sum(o.startswith("--") for o in options) >= 10
    for option in options:
        assert option.count("(default:") <= 1, option
        assert option.count("default") <= 2, option  # "default: X" once, and the help's own
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: 3)" in text  # --cv: a default worth showing stays


def test_no_progress_bar_when_stderr_is_not_a_terminal(csv, tmp_path, capsys, monkeypatch):
    run = ["compare", "--data", str(csv), "--text-column", "review", "--target", "topic",
           "--models", "naive_bayes", "--output", str(tmp_path / "o"), *FAST]
    assert main(run) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
    assert "compare:" not in captured.err
    lines = captured.out.splitlines()
    assert any(line.split()[:1] == ["accuracy"] or "accuracy" in line for line in lines)
    # On a terminal the bar is drawn.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(run) == 0
    assert "compare:" in capsys.readouterr().err


def test_table_embeddings_bypass_the_column_by_column_table_encoder(monkeypatch):
    # 384 embedding columns through the TableEncoder cost ~15 s a fit (40 ms a column):
    # they go beside it as one scaled numeric block, and the models see every column.
    import moensemble.text
    from moensemble.cli.compare import embed_text

    class FakeEmbedder:
        def fit(self, texts):
            return self

        def transform(self, texts):
            return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    monkeypatch.setattr(moensemble.text, "SentenceEmbedder", FakeEmbedder)
    X = pd.DataFrame({"review": ["a cat", "a dog sat", "the sun", "rain again"] * 5,
                      "price": np.arange(20.0), "store": list("xyxy") * 5})
    kinds = {"review": "text", "price": "numeric", "store": "categorical"}
    dataset = {"X": X, "y": np.arange(20) % 2, "task": "classification", "kinds": kinds,
               "text": True, "text_column": "review", "numeric": ["price"],
               "description": "t"}
    embedded = embed_text(dataset, lambda message: None)
    assert embedded["kinds"] == {"price": "numeric", "store": "categorical"}
    assert embedded["embedding_columns"] == [f"review_embedding{i}" for i in range(3)]
    args = argparse.Namespace(max_features=100, random_state=0)
    features = dict(build_models(embedded, args))["logreg"][0]
    table, block = features.transformers[0], features.transformers[1]
    assert type(table[1]).__name__ == "TableEncoder" and table[2] == ["price", "store"]
    assert block[2] == embedded["embedding_columns"]
    out = features.fit_transform(embedded["X"])
    assert out.shape == (20, 1 + 2 + 3)  # price, store one-hot, 3 embedding columns
    assert out.min() >= 0.0 and out.max() <= 1.0  # scaled as the encoder scales


def _worker_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_compare_fits_with_the_threads_asked_for_here_and_in_fold_workers(csv, tmp_path,
                                                                          monkeypatch):
    import torch
    from joblib import Parallel, delayed

    import moensemble.leaderboard

    seen = {}

    def fake_compare(models, X, y, **kwargs):
        seen["here"] = torch.get_num_threads()
        seen["workers"] = Parallel(n_jobs=2)(delayed(_worker_threads)() for _ in range(2))
        raise KeyboardInterrupt  # stop before any fit (exit code 130)

    monkeypatch.setattr(moensemble.leaderboard, "compare", fake_compare)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for threads in ("1", "2"):
            code = main(["compare", "--data", str(csv), "--target", "topic", "--features",
                         "price", "--threads", threads, "--n-jobs", "2", "--output",
                         str(tmp_path), "--quiet"])
            assert code == 130  # the interrupt, after the fake compare looked
            assert seen == {"here": int(threads), "workers": [int(threads)] * 2}
            assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)


def _fit_settings(models: list) -> dict:
    """What the row-scaled settings touch, read from compare's built models."""
    from moensemble.folds import final_step

    found: dict = {}
    for name, est in models:
        final = final_step(est)
        params = final.get_params()
        if name in ("weighted", "stacked", "gated", "stacked_moe", "weighted_moe"):
            found[f"{name}.cv"] = params["cv"].get_n_splits()
        if name in ("moe", "mlp", "gated"):
            found[f"{name}.max_epochs"] = params["max_epochs"]
        if name == "stacked_moe":
            found["stacked_moe.moe.max_epochs"] = dict(final.estimators)["moe"].max_epochs
        if name == "extra_trees":
            found["extra_trees.n_estimators"] = params["n_estimators"]
        if name == "logreg":
            found["logreg"] = (params["solver"], params["max_iter"])
    return found


def test_the_models_of_a_large_run_bound_their_work_and_a_small_run_is_unchanged():
    from moensemble.leaderboard import FULL_COST_ROWS, default_models, scaled_settings

    args = argparse.Namespace(max_features=100, random_state=0)
    small = _fit_settings(build_models({**_dataset(True), "y": np.zeros(FULL_COST_ROWS)}, args))
    assert small == _fit_settings(build_models(_dataset(True), args))  # rows unknown: the same
    assert small == {"weighted.cv": 3, "stacked.cv": 3, "gated.cv": 3, "stacked_moe.cv": 3,
                     "weighted_moe.cv": 3, "moe.max_epochs": 20, "mlp.max_epochs": 20,
                     "gated.max_epochs": 100, "stacked_moe.moe.max_epochs": 20,
                     "extra_trees.n_estimators": 100, "logreg": ("lbfgs", 300)}
    # the default small board: every parameter of every model as without n_rows
    for (_, a), (_, b) in zip(default_models(sparse=True, quick=True, n_rows=3000),
                              default_models(sparse=True, quick=True), strict=True):
        assert repr(a.get_params()) == repr(b.get_params())
    # the whole bundled set: 2 inner folds for every ensemble, fewer epochs and trees, saga
    whole = _fit_settings(build_models({**_dataset(True), "y": np.zeros(117_659)}, args))
    assert whole == {"weighted.cv": 2, "stacked.cv": 2, "gated.cv": 2, "stacked_moe.cv": 2,
                     "weighted_moe.cv": 2, "moe.max_epochs": 4, "mlp.max_epochs": 4,
                     "gated.max_epochs": 10, "stacked_moe.moe.max_epochs": 4,
                     "extra_trees.n_estimators": 25, "logreg": ("saga", 30)}
    # the stacks' meta-model: the penalty per row of FULL_COST_ROWS rows (C over the rows)
    for n, C in [(None, 10.0), (FULL_COST_ROWS, 10.0), (117_659, 10.0 * FULL_COST_ROWS / 117_659)]:
        y = {} if n is None else {"y": np.zeros(n)}
        built = dict(build_models({**_dataset(True), **y}, args))
        for name in ("stacked", "stacked_moe"):
            assert built[name][-1].final_estimator.C == pytest.approx(C)
    # in between, epochs shrink with the rows: each MoE fit sees at least the rows it saw at
    # FULL_COST_ROWS (epochs x rows), and never fewer than the floor of 4 epochs
    for n in (FULL_COST_ROWS + 1, 20_000, 40_000, 80_000):
        epochs = scaled_settings(n)["moe_max_epochs"]
        assert epochs * n >= 20 * FULL_COST_ROWS and epochs >= 4
        assert scaled_settings(n)["gated_max_epochs"] * n >= 100 * FULL_COST_ROWS


def test_the_svd_of_dense_members_passes_one_column_through():
    # `--max-features 1`: one TF-IDF column, which TruncatedSVD cannot project.
    import scipy.sparse as sp

    from moensemble._default_models import _WidthSVD

    X = sp.csr_matrix(np.arange(6, dtype=float).reshape(6, 1))
    svd = _WidthSVD(50, random_state=0)
    np.testing.assert_array_equal(svd.fit_transform(X), X.toarray())
    np.testing.assert_array_equal(svd.transform(X[:2]), X[:2].toarray())
    wide = sp.random(20, 8, density=0.5, random_state=0, format="csr")
    assert _WidthSVD(50, random_state=0).fit_transform(wide).shape == (20, 7)
