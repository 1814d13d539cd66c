"""Nothing wrong is silent: one list of bad inputs fed to every public estimator.

Each case must end in a ValueError/TypeError whose message names the fault, or in a finite,
correct result. Tiny data and ``max_epochs=2`` keep the whole file at a few seconds a test.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils._param_validation import InvalidParameterError

from moensemble import AutoClassifier, AutoRegressor
from moensemble.ensemble import (
    StackingEnsembleClassifier,
    StackingEnsembleRegressor,
    WeightedEnsembleClassifier,
    WeightedEnsembleRegressor,
)
from moensemble.gated import GatedEnsembleClassifier, GatedEnsembleRegressor
from moensemble.moe import MoEClassifier, MoERegressor
from moensemble.moe.checks import NonFiniteTrainingError

_NET = dict(max_epochs=2, random_state=0)
_CLF = [("nb", GaussianNB()), ("lr", LogisticRegression())]
_REG = [("ridge", Ridge()), ("tree", DecisionTreeRegressor(max_depth=3, random_state=0))]
_AUTO = dict(families=("weighted",), max_trials=1, cv=2, inner_cv=2, progress_bar=False,
             random_state=0)

ESTIMATORS = {
    "WeightedEnsembleClassifier": lambda: WeightedEnsembleClassifier(_CLF, cv=3),
    "WeightedEnsembleRegressor": lambda: WeightedEnsembleRegressor(_REG, cv=3),
    "StackingEnsembleClassifier": lambda: StackingEnsembleClassifier(_CLF, cv=3),
    "StackingEnsembleRegressor": lambda: StackingEnsembleRegressor(_REG, cv=3),
    "MoEClassifier": lambda: MoEClassifier(n_experts=2, **_NET),
    "MoERegressor": lambda: MoERegressor(n_experts=2, **_NET),
    "GatedEnsembleClassifier": lambda: GatedEnsembleClassifier(_CLF, cv=3, **_NET),
    "GatedEnsembleRegressor": lambda: GatedEnsembleRegressor(_REG, cv=3, **_NET),
    "AutoClassifier": lambda: AutoClassifier(**_AUTO),
    "AutoRegressor": lambda: AutoRegressor(**_AUTO),
}
# The searches fit whole trials: they get the cases refused before any fit.
_SEARCHES = {"AutoClassifier", "AutoRegressor"}


def _data(regression: bool):
    if regression:
        X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
    else:
        X, y = make_classification(n_samples=60, n_features=4, n_informative=3,
                                   n_redundant=0, class_sep=2.0, random_state=0)
    return X, y


def _with(array, index, value):
    array = np.array(array, dtype=np.float64)
    array[index] = value
    return array


# (case, change (X, y) -> (X, y), what the message must name); None: a finite correct result.
BAD_INPUTS = [
    ("nan_in_X", lambda X, y: (_with(X, (3, 1), np.nan), y), r"NaN"),
    ("inf_in_X", lambda X, y: (_with(X, (5, 0), np.inf), y), r"infinity"),
    ("nan_in_y", lambda X, y: (X, _with(y, 2, np.nan)), r"NaN"),
    ("inf_in_y", lambda X, y: (X, _with(y, 2, -np.inf)), r"infinity|inf"),
    ("X_1d", lambda X, y: (X[:, 0], y), r"2D array"),
    ("X_3d", lambda X, y: (X[:, :, None], y), r"dim"),
    ("no_rows", lambda X, y: (X[:0], y[:0]), r"0 sample"),
    ("y_too_short", lambda X, y: (X, y[:-5]), r"inconsistent numbers of samples"),
    ("y_2d_for_a_classifier", lambda X, y: (X, np.c_[y, y]), r"y|column|shape|multi"),
    ("string_column", lambda X, y: (np.c_[X.astype(object), ["a", "b", "c"] * 20], y),
     r"string|non-numeric"),
    ("X_scaled_by_1e30", lambda X, y: (X * 1e30, y), None),
    ("X_scaled_by_1e-30", lambda X, y: (X * 1e-30, y), None),
]
_REGRESSION_ONLY = {"inf_in_y"}
_CLASSIFICATION_ONLY = {"y_2d_for_a_classifier"}
_FITS = {"X_scaled_by_1e30", "X_scaled_by_1e-30"}


def _cases():
    for name in sorted(ESTIMATORS):
        regression = name.endswith("Regressor")
        for case, change, fault in BAD_INPUTS:
            if (case in _REGRESSION_ONLY and not regression) or (
                case in _CLASSIFICATION_ONLY and regression
            ) or (case in _FITS and name in _SEARCHES):
                continue
            yield pytest.param(name, change, fault, id=f"{name}-{case}")


def _assert_finite_and_correct(model, X, y):
    if is_classifier(model):
        proba = model.predict_proba(X)
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
        assert set(model.predict(X)) <= set(model.classes_)
    else:
        pred = model.predict(X)
        assert pred.shape == y.shape and np.isfinite(pred).all()


@pytest.mark.parametrize(("name", "change", "fault"), _cases())
def test_bad_input_is_named_or_the_result_is_finite_and_correct(name, change, fault):
    X, y = change(*_data(name.endswith("Regressor")))
    model = ESTIMATORS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes on the extreme scales
        if fault is None:
            try:
                model.fit(X, y)
            except (ValueError, TypeError) as exc:  # refused: then it must say why
                assert re.search(r"scale|lr|infinity|NaN|too large", str(exc)), exc
                return
            _assert_finite_and_correct(model, X, y)
            return
        with pytest.raises((ValueError, TypeError), match=fault):
            model.fit(X, y)


@pytest.mark.parametrize("name", sorted(set(ESTIMATORS) - _SEARCHES))
def test_predict_input_with_other_features_is_named(name):
    X, y = _data(name.endswith("Regressor"))
    model = ESTIMATORS[name]().fit(X, y)
    with pytest.raises(ValueError, match=r"features"):
        model.predict(X[:, :3])
    with pytest.raises(ValueError, match=r"NaN"):
        model.predict(_with(X, (0, 0), np.nan))


def _wrong_kind_params(estimator):
    """Every validated parameter with a value of a kind no constraint accepts."""
    for param, constraints in estimator._parameter_constraints.items():
        if "no_validation" not in constraints:
            yield param, object()


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_wrong_kind_parameter_is_named(name):
    X, y = _data(name.endswith("Regressor"))
    estimator = ESTIMATORS[name]()
    checked = 0
    for param, value in _wrong_kind_params(estimator):
        bad = ESTIMATORS[name]().set_params(**{param: value})
        with pytest.raises((InvalidParameterError, TypeError, ValueError),
                           match=rf"\b{param}\b"):
            bad.fit(X, y)
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("name", [n for n in sorted(ESTIMATORS)
                                  if n.startswith(("Weighted", "Stacking"))])
def test_negative_sample_weight_is_refused(name):
    X, y = _data(name.endswith("Regressor"))
    model = ESTIMATORS[name]()
    with pytest.raises(ValueError, match=r"Negative values .*sample_weight"):
        model.fit(X, y, sample_weight=np.r_[-1.0, np.ones(len(y) - 1)])
    with pytest.raises(ValueError, match=r"sample_weight.*NaN|NaN.*sample_weight"):
        model.fit(X, y, sample_weight=np.r_[np.nan, np.ones(len(y) - 1)])


# ---- the specific cases of issue 14 ---------------------------------------------------------


@pytest.mark.parametrize("name", ["MoEClassifier", "MoERegressor"])
def test_inputs_scaled_to_1e30_stop_the_net_with_the_cause(name):
    X, y = _data(name.endswith("Regressor"))
    with pytest.raises(NonFiniteTrainingError, match=r"largest \|input\| .*e\+30.*scale them"):
        ESTIMATORS[name]().fit(X * 1e30, y)


@pytest.mark.parametrize("scale", [1e6, 1e-6])
@pytest.mark.parametrize("name", ["MoEClassifier", "MoERegressor"])
def test_features_far_from_unit_scale_are_warned_about(name, scale):
    # At 1e8 a MoERegressor trained to finite but useless predictions (R^2 of -1e13).
    X, y = _data(name.endswith("Regressor"))
    with pytest.warns(UserWarning, match=r"far from unit scale .*StandardScaler"):
        ESTIMATORS[name]().set_params(max_epochs=1).fit(X * scale, y)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*far from unit scale")
        ESTIMATORS[name]().set_params(max_epochs=1).fit(X, y)


@pytest.mark.parametrize("name", ["MoEClassifier", "MoERegressor"])
def test_a_too_large_sgd_step_stops_the_net_naming_lr(name):
    X, y = _data(name.endswith("Regressor"))
    model = ESTIMATORS[name]().set_params(optimizer="sgd", lr=1e6, max_epochs=6)
    with pytest.raises(NonFiniteTrainingError, match=r"lower `lr`, now 1000000.0"):
        model.fit(X, y)
    assert issubclass(NonFiniteTrainingError, ValueError)


def test_the_gated_router_net_has_the_check_too():
    from moensemble.gated.net import _GateNetClassifier

    assert "finite_check" in dict(_GateNetClassifier(module=None)._default_callbacks)


def test_targets_near_1e160_give_finite_predictions_or_an_error():
    X, y = _data(True)
    y = y / np.abs(y).max() * 1e160
    try:
        model = MoERegressor(n_experts=2, **_NET).fit(X, y)
    except ValueError as exc:
        assert "scale" in str(exc)
        return
    assert np.isfinite(model.predict(X)).all()


def test_gated_regressor_with_targets_near_1e160_is_finite():
    X, y = _data(True)
    y = y / np.abs(y).max() * 1e160
    model = GatedEnsembleRegressor(_REG, cv=3, **_NET).fit(X, y)
    assert np.isfinite(model.predict(X)).all()


class _NaNSometimes(BaseEstimator):
    """A member whose predictions are NaN on every 7th row."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def _mask(self, out):
        out[::7] = np.nan
        return out


class NaNClassifier(ClassifierMixin, _NaNSometimes):
    def predict_proba(self, X):
        return self._mask(np.full((len(X), len(self.classes_)), 1 / len(self.classes_)))

    def predict(self, X):
        return self.classes_[np.zeros(len(X), dtype=int)]


class NaNRegressor(RegressorMixin, _NaNSometimes):
    def predict(self, X):
        return self._mask(np.zeros(len(X)))


_NAN_CASES = {
    "weighted-greedy": lambda m: WeightedEnsembleClassifier([("bad", m), *_CLF], cv=3),
    "weighted-optimize": lambda m: WeightedEnsembleClassifier([("bad", m), *_CLF], cv=3,
                                                              weighting="optimize"),
    "weighted-uniform": lambda m: WeightedEnsembleClassifier([("bad", m), *_CLF], cv=3,
                                                             weighting="uniform"),
    "stacking": lambda m: StackingEnsembleClassifier([("bad", m), *_CLF], cv=3),
    "stacking-layer": lambda m: StackingEnsembleClassifier(_CLF, cv=3,
                                                           layers=[[("bad", m), *_CLF]]),
    "gated": lambda m: GatedEnsembleClassifier([("bad", m), *_CLF], cv=3, **_NET),
}


@pytest.mark.parametrize("case", sorted(_NAN_CASES))
def test_member_with_nan_oof_predictions_is_named(case):
    X, y = _data(False)
    where = "layers" if case == "stacking-layer" else "estimators"
    with pytest.raises(ValueError, match=rf"`{where}` member\(s\) 'bad' \(9 of 60 rows\) gave "
                                         "NaN or infinite out-of-fold predictions"):
        _NAN_CASES[case](NaNClassifier()).fit(X, y)


@pytest.mark.parametrize("make", [WeightedEnsembleRegressor, StackingEnsembleRegressor])
def test_regressor_member_with_nan_predictions_is_named(make):
    X, y = _data(True)
    with pytest.raises(ValueError, match=r"'bad' \(9 of 60 rows\)"):
        make([("bad", NaNRegressor()), *_REG], cv=3).fit(X, y)


def test_stacking_classifier_refuses_a_regressor_on_top():
    X, y = _data(False)
    with pytest.raises(TypeError, match=r"`final_estimator` .* must be a classifier.*Ridge"):
        StackingEnsembleClassifier(_CLF, final_estimator=Ridge(), cv=3).fit(X, y)
    Xr, yr = _data(True)
    with pytest.raises(TypeError, match=r"`final_estimator` .* must be a regressor"):
        StackingEnsembleRegressor(_REG, final_estimator=LogisticRegression(), cv=3).fit(Xr, yr)


@pytest.mark.parametrize("name", ["WeightedEnsembleClassifier", "StackingEnsembleClassifier",
                                  "GatedEnsembleClassifier"])
def test_string_column_of_a_dataframe_is_named(name):
    X, y = _data(False)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(city=["Oslo", "Rome"] * 30)
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['city'\]"):
        ESTIMATORS[name]().fit(frame, y)
    model = ESTIMATORS[name]().fit(frame.drop(columns="city"), y)
    # The gated ensemble's router reads X before the members: it names the column too.
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['b'\]"):
        model.predict(frame.drop(columns="city").assign(b="x"))
    # Numbers stored as text are numbers: no column is blamed for them.
    as_text = frame.drop(columns="city").astype(str).astype(object)
    assert ESTIMATORS[name]().fit(as_text, y).predict(as_text).shape == y.shape


def _integer_params(estimator):
    """The parameters that an integer interval constrains (counts, sizes, n_jobs)."""
    from numbers import Integral

    from sklearn.utils._param_validation import Interval

    return sorted(param for param, constraints in estimator._parameter_constraints.items()
                  if any(isinstance(c, Interval) and c.type is Integral for c in constraints))


# sklearn's Interval(Integral, ...) takes True as 1; moensemble._validation.IntInterval does not.
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_a_bool_for_an_integer_parameter_is_refused_by_name(name):
    X, y = _data(name.endswith("Regressor"))
    params = _integer_params(ESTIMATORS[name]())
    assert params
    for param in params:
        for flag in (True, False):
            bad = ESTIMATORS[name]().set_params(**{param: flag})
            with pytest.raises(InvalidParameterError, match=rf"'{param}' parameter .*not a bool"):
                bad.fit(X, y)
