"""Weighted and stacked ensembles over the same bases, sharing their out-of-fold fits.

    python examples/ensembles.py
"""

from __future__ import annotations

import tempfile

from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from moensemble import StackingEnsembleClassifier, WeightedEnsembleClassifier, out_of_fold


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, stratify=y, random_state=0)
    bases = [
        ("logreg", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
        ("forest", RandomForestClassifier(200, random_state=0)),
        ("bayes", GaussianNB()),
    ]

    # The out-of-fold predictions every ensemble learns from, for a look of our own.
    oof = out_of_fold(bases, X_tr, y_tr, cv=5, n_jobs=2)
    for name, proba in oof.predictions.items():
        print(f"{name:>7}: out-of-fold accuracy {(proba.argmax(1) == y_tr).mean():.3f}, "
              f"{oof.fit_seconds[name]:.1f}s to fit 5 folds")

    # One cache for both ensembles: the stack reuses the weighted ensemble's fold fits.
    with tempfile.TemporaryDirectory() as cache:
        weighted = WeightedEnsembleClassifier(bases, cv=5, n_jobs=2, memory=cache)
        weighted.fit(X_tr, y_tr)
        stacked = StackingEnsembleClassifier(bases, cv=5, n_jobs=2, memory=cache)
        stacked.fit(X_tr, y_tr)

    print("\nweights:", dict(zip([n for n, _ in bases], weighted.weights_.round(2).tolist(),
                                 strict=True)))
    print(f"weighted ensemble: out-of-fold log loss {weighted.ensemble_loss_:.3f} "
          f"(best base {weighted.base_losses_.min():.3f}), "
          f"held-out accuracy {weighted.score(X_te, y_te):.3f}")
    print(f"stacked ensemble:  held-out accuracy {stacked.score(X_te, y_te):.3f}")


if __name__ == "__main__":
    main()
