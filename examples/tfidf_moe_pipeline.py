"""A mixture of experts on TF-IDF features of the bundled WordNet glosses.

``make_pipeline(TfidfVectorizer(), MoEClassifier())`` is an ordinary scikit-learn pipeline: the
sparse TF-IDF matrix goes straight into the MoE, whose router sends each gloss to 2 of 8
experts. The script prints the held-out accuracy and, for each expert, the classes it
receives most.

    python examples/tfidf_moe_pipeline.py            # 8,000 glosses, about a minute
    MOENSEMBLE_FAST=1 python examples/tfidf_moe_pipeline.py   # (or --fast) a few seconds
"""

from __future__ import annotations

import argparse
import os

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from moensemble.datasets import load_wordnet_glosses
from moensemble.moe import MoEClassifier
from moensemble.plotting import routing_table


def main(fast: bool) -> None:
    texts, labels = load_wordnet_glosses(n_samples=800 if fast else 8000, return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.25, stratify=labels, random_state=0)

    model = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2)),
        MoEClassifier(n_experts=8, top_k=2, expert_hidden=(128,), dropout=0.3, lr=3e-3,
                      batch_size=256, max_epochs=3 if fast else 20, random_state=0),
    )
    model.fit(X_train, y_train)
    moe = model[-1]
    print(f"glosses: {len(texts)} ({len(set(labels))} classes)")
    print(f"accuracy: {accuracy_score(y_test, model.predict(X_test)):.3f}")
    print(f"active parameters per row: {moe.n_active_params_:,}")

    # Which classes does each expert specialise in? Share of each class routed to it.
    table = routing_table(model, X_test, y_test)
    print("expert  load  top classes (share of the class routed there)")
    load = moe.expert_load_
    for expert in table.columns:
        top = table[expert].sort_values(ascending=False).head(3)
        classes = ", ".join(f"{name} {share:.2f}" for name, share in top.items())
        print(f"{expert:>6}  {load[expert]:.2f}  {classes}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny data and epochs")
    args = parser.parse_args()
    main(fast=args.fast or os.environ.get("MOENSEMBLE_FAST") == "1")
