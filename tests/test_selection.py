"""Ensemble selection: the metric it optimises, bagged selection, per-trial temperatures."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils._param_validation import InvalidParameterError

from moensemble.search import AutoClassifier, AutoRegressor
from moensemble.search.selection import (
    ensemble_selection,
    fit_temperature,
    gain_in_standard_errors,
    out_of_bag_gain,
    per_row_loss,
    prediction_loss,
    selection_loss,
    simplest_within_one_se,
    temper,
)


def _accurate_but_overconfident(rng, target, n_classes=3):
    """Right on 80 % of rows with probability 1 - 1e-9; wrong ones are wrong with certainty."""
    pred = np.full((len(target), n_classes), 1e-9)
    right = rng.random(len(target)) < 0.8
    labels = np.where(right, target, (target + 1) % n_classes)
    pred[np.arange(len(target)), labels] = 1.0
    return pred / pred.sum(axis=1, keepdims=True)


def _calibrated_but_weaker(rng, target, n_classes=3):
    """Right on about 65 % of rows, with soft probabilities."""
    logits = rng.normal(0, 1, (len(target), n_classes))
    logits[np.arange(len(target)), target] += 1.3
    pred = np.exp(logits)
    return pred / pred.sum(axis=1, keepdims=True)


def test_the_metric_decides_which_trial_is_picked():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 600)
    sharp, soft = _accurate_but_overconfident(rng, target), _calibrated_but_weaker(rng, target)
    acc = [np.mean(p.argmax(1) == target) for p in (sharp, soft)]
    losses = [prediction_loss(p, target, "classification") for p in (sharp, soft)]
    assert acc[0] > acc[1] and losses[0] > losses[1]  # the two metrics disagree
    by_loss = ensemble_selection([sharp, soft], target, "classification", 1, metric="log_loss")
    by_acc = ensemble_selection([sharp, soft], target, "classification", 1, metric="accuracy")
    np.testing.assert_array_equal(by_loss, [0.0, 1.0])
    np.testing.assert_array_equal(by_acc, [1.0, 0.0])
    # A scorer given by name goes through scikit-learn's scorer on the labels.
    classes = np.array(["a", "b", "c"])
    by_scorer = ensemble_selection([sharp, soft], target, "classification", 1,
                                   metric="balanced_accuracy", classes=classes)
    np.testing.assert_array_equal(by_scorer, [1.0, 0.0])


def test_accuracy_ties_are_broken_by_log_loss():
    target = np.array([0, 1, 0, 1])
    confident = np.eye(2)[target] * 0.9 + 0.05
    timid = np.eye(2)[target] * 0.2 + 0.4  # same argmax, worse log loss
    loss = selection_loss("accuracy", "classification")
    assert loss(confident, target) < loss(timid, target)
    assert ensemble_selection([timid, confident], target, "classification", 1,
                              metric="accuracy")[1] == 1.0


def test_bagged_selection_averages_selections_on_half_the_rows():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(300, 1))
    preds = [target + rng.normal(0, s, target.shape) for s in (0.5, 0.55, 0.6)]
    preds.append(np.full_like(target, 10.0))  # far off everywhere
    one = ensemble_selection(preds, target, "regression", 25)
    bagged = ensemble_selection(preds, target, "regression", 25, n_bags=10, random_state=0)
    assert bagged.sum() == pytest.approx(1.0)
    assert bagged[3] == 0  # the bad trial is left out in every bag
    assert not np.allclose(one, bagged)  # the bags saw other rows
    again = ensemble_selection(preds, target, "regression", 25, n_bags=10, random_state=0)
    np.testing.assert_array_equal(bagged, again)  # seeded


def test_temperature_softens_an_overconfident_model_and_sharpens_a_timid_one():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 800)
    sharp = _accurate_but_overconfident(rng, target)
    t_sharp = fit_temperature(sharp, target)
    assert t_sharp > 1.5
    assert prediction_loss(temper(sharp, t_sharp), target, "classification") < \
        prediction_loss(sharp, target, "classification") / 5
    np.testing.assert_array_equal(temper(sharp, t_sharp).argmax(1), sharp.argmax(1))
    timid = temper(_calibrated_but_weaker(rng, target), 4.0)  # flattened on purpose
    assert fit_temperature(timid, target) < 0.5
    np.testing.assert_allclose(temper(timid, 1.0), timid)


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=300, n_features=8, n_informative=5, random_state=0)


MEMBERS = [("logistic", LogisticRegression(max_iter=500)),
           ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)),
           ("nb", GaussianNB())]


def test_the_final_model_uses_the_members_temperatures(data):
    X, y = data
    auto = AutoClassifier(time_budget=60, base_estimators=MEMBERS, families=(), cv=3,
                          progress_bar=False, random_state=0).fit(X, y)
    ens = auto.best_estimator_
    temps = {n: ens.members[n].temperature for n in auto.ensemble_weights_.index}
    assert any(t != 1.0 for t in temps.values())
    manual = sum(w * temper(ens.trial_predictions(X, n), temps[n])
                 for n, w in auto.ensemble_weights_.items())
    np.testing.assert_allclose(auto.predict_proba(X), temper(manual, ens.temperature))
    assert auto.ensemble_weights_.sum() == pytest.approx(1.0)
    plain = AutoClassifier(time_budget=60, base_estimators=MEMBERS, families=(), cv=3,
                           temperature_scaling=False, progress_bar=False,
                           random_state=0).fit(X, y)
    assert all(m.temperature == 1.0 for m in plain.best_estimator_.members.values())
    assert plain.best_estimator_.temperature == 1.0


def test_selection_metric_defaults_to_scoring(data, monkeypatch):
    X, y = data
    seen = []
    import moensemble.search.final as final_module

    real = final_module.ensemble_selection

    def spy(*args, **kwargs):
        seen.append(kwargs["metric"])
        return real(*args, **kwargs)

    monkeypatch.setattr(final_module, "ensemble_selection", spy)
    common = dict(time_budget=60, base_estimators=MEMBERS[:2], families=(), cv=3,
                  progress_bar=False, random_state=0)
    AutoClassifier(**common).fit(X, y)
    AutoClassifier(scoring="balanced_accuracy", **common).fit(X, y)
    AutoClassifier(scoring="balanced_accuracy", ensemble_metric="log_loss", **common).fit(X, y)
    assert seen == ["accuracy", "balanced_accuracy", "log_loss"]


def test_bad_selection_parameters_are_named(data):
    X, y = data
    with pytest.raises(InvalidParameterError, match="ensemble_metric"):
        AutoClassifier(ensemble_metric="no_such_metric").fit(X, y)
    with pytest.raises(InvalidParameterError, match="ensemble_bags"):
        AutoClassifier(ensemble_bags=0).fit(X, y)
    with pytest.raises(ValueError, match="ensemble_metric='log_loss' is for classification"):
        AutoRegressor(ensemble_metric="log_loss", base_estimators=[], families=("weighted",),
                      progress_bar=False).fit(X, y.astype(float))


def test_batched_picks_equal_the_one_at_a_time_loop(monkeypatch):
    import moensemble.search.selection as selection

    rng = np.random.default_rng(2)
    target = rng.integers(0, 3, 300)
    preds = [_calibrated_but_weaker(rng, target) for _ in range(4)]
    preds.append(_accurate_but_overconfident(rng, target))
    reg_target = rng.normal(size=(300, 1))
    reg = [reg_target + rng.normal(0, s, reg_target.shape) for s in (0.4, 0.5, 0.7)]
    cases = [(preds, target, "classification", m) for m in ("accuracy", "log_loss")]
    cases.append((reg, reg_target, "regression", "r2"))
    batched = [ensemble_selection(p, t, task, 25, metric=m, n_bags=5, random_state=0)
               for p, t, task, m in cases]
    monkeypatch.setattr(selection, "_batch_loss", lambda metric, task: None)
    for (p, t, task, m), fast in zip(cases, batched, strict=True):
        slow = ensemble_selection(p, t, task, 25, metric=m, n_bags=5, random_state=0)
        np.testing.assert_allclose(fast, slow)


def test_bags_stop_at_the_time_limit():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(200, 1))
    preds = [target + rng.normal(0, s, target.shape) for s in (0.4, 0.5, 0.7)]
    one_bag = ensemble_selection(preds, target, "regression", 25, n_bags=1000,
                                 random_state=0, time_limit=0.0)  # one bag, then stop
    assert one_bag.sum() == pytest.approx(1.0)
    rows = np.sort(np.random.RandomState(0).choice(200, 100, replace=False))
    half = ensemble_selection([p[rows] for p in preds], target[rows], "regression", 25)
    np.testing.assert_allclose(one_bag, half)  # exactly the first bag's selection


def test_bagging_over_trials_lets_each_bag_pick_among_a_share_of_them():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 300)
    good = np.eye(3)[target] * 0.7 + 0.1
    weak = _calibrated_but_weaker(rng, target)
    all_trials = ensemble_selection([weak, good], target, "classification", 10, n_bags=20,
                                    random_state=0)
    np.testing.assert_allclose(all_trials, [0.0, 1.0])  # every bag sees the good trial
    halves = ensemble_selection([weak, good], target, "classification", 10, n_bags=20,
                                random_state=0, trial_fraction=0.5)
    assert halves.sum() == pytest.approx(1.0)
    # a bag holds one of the two: the weak one wins the bags that miss the good one
    assert 0.2 < halves[0] < 0.8


def test_gain_within_noise_tells_a_real_gain_from_a_few_rows():
    from moensemble.search.selection import gain_within_noise, per_row_gain

    target = np.arange(400) % 2

    def wrong_on(rows):
        proba = np.eye(2)[target] * 0.8 + 0.1
        proba[rows] = proba[rows, ::-1]
        return proba

    single = wrong_on(np.arange(0, 400, 4))  # wrong on every 4th row
    close = wrong_on(np.arange(4, 400, 4))  # right on just one row more
    better = wrong_on(np.arange(0, 400, 40))  # wrong on every 40th row
    assert per_row_gain(close, single, target, "classification", "accuracy").sum() == 1
    assert gain_within_noise(close, single, target, "classification", "accuracy")
    assert not gain_within_noise(better, single, target, "classification", "accuracy")
    assert gain_within_noise(single, single, target, "classification", "accuracy", n_std=0.0)
    y = np.linspace(0, 1, 400).reshape(-1, 1)
    assert not gain_within_noise(y + 0.01, y + 0.3, y, "regression")
    assert gain_within_noise(y + 0.3, y + 0.01, y, "regression")  # a loss is no gain


def test_the_bagged_selection_keeps_its_share_of_the_budget_past_the_deadline(monkeypatch):
    """A search that ran into the reserve still gets all its bags (not one half-row bag)."""
    import moensemble.search.final as final
    from moensemble.search import bagging

    X, y = make_classification(200, 6, random_state=0)
    seen = {}
    original = final.ensemble_selection

    def spy(*args, **kwargs):
        seen["time_limit"] = kwargs["time_limit"]
        return original(*args, **kwargs)

    real, late = bagging.clock, [0.0]
    monkeypatch.setattr(final, "ensemble_selection", spy)
    monkeypatch.setattr(bagging, "clock", lambda: real() + late[0])
    members = [("lr", LogisticRegression(max_iter=300)), ("nb", GaussianNB())]
    auto = AutoClassifier(time_budget=40, base_estimators=members, families=(), cv=3,
                          progress_bar=False, random_state=0)

    def search(runner, *args):  # the portfolio, then the last trial ends past the deadline
        runner.run_portfolio(members)
        late[0] = 3600.0

    monkeypatch.setattr(auto, "_search", search)
    auto.fit(X, y)
    assert seen["time_limit"] == pytest.approx(final.MIN_SELECTION_SHARE * 40)


# --------------------------------------------------------------------------- out-of-bag gain
def test_out_of_bag_gain_sees_through_a_selection_that_fits_noise():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(150, 1))
    single = 0.6 * y + 0.6 * rng.normal(size=(150, 1))
    # copies of the single trial with noise added: no blend of them is better on new rows,
    # yet the picks find copies whose noise happens to fit these rows
    copies = [single] + [single + 0.3 * rng.normal(size=(150, 1)) for _ in range(30)]
    # independent models as good as the single one: their average is better everywhere
    peers = [single] + [0.6 * y + 0.6 * rng.normal(size=(150, 1)) for _ in range(4)]
    gains = {}
    for name, preds in (("copies", copies), ("peers", peers)):
        weights, bags = ensemble_selection(preds, y, "regression", metric="r2", n_bags=20,
                                           random_state=0, return_bags=True)
        assert len(bags) == 20
        np.testing.assert_allclose(np.mean([w for w, _ in bags], axis=0), weights)
        assert all(len(rows) == 75 for _, rows in bags)  # each bag: half of the rows
        blend = np.tensordot(weights, np.stack(preds), axes=1)
        gains[name] = (gain_in_standard_errors(blend, single, y, "regression"),
                       out_of_bag_gain(preds, y, "regression", bags, single))
    assert gains["copies"][0] > 2  # in sample the noise passes a 2-standard-error guard
    assert gains["copies"][1] < 0  # out of bag the blend is worse than the single trial
    assert gains["peers"][0] > 4 and gains["peers"][1] > 4
    assert np.isnan(out_of_bag_gain(peers, y, "regression", [], single))  # no bags
    one = ensemble_selection(peers, y, "regression", n_bags=1, return_bags=True)
    assert one[1] == [] and one[0].sum() == pytest.approx(1.0)


def test_simplest_within_one_se_takes_the_first_close_enough_by_order():
    target = np.zeros(400, dtype=int)

    def wrong_on(share):  # probabilities wrong on the first ``share`` of the rows
        pred = np.tile([0.9, 0.1], (400, 1))
        pred[:int(share * 400)] = [0.1, 0.9]
        return pred

    # error rates 0.10 (the best), 0.11 and 0.15; one standard error of 0.10 is 0.015
    preds = [wrong_on(0.15), wrong_on(0.11), wrong_on(0.10)]
    assert simplest_within_one_se(preds, [0, 1, 2], target, "classification",
                                  "accuracy") == 1
    assert simplest_within_one_se(preds, [2, 1, 0], target, "classification",
                                  "accuracy") == 2  # the best comes first: itself
    assert simplest_within_one_se(preds[::2], [0, 1], target, "classification",
                                  "accuracy") == 1  # 0.15 is out of reach
    np.testing.assert_array_equal(per_row_loss(preds[2], target, "classification",
                                               "accuracy"), np.r_[np.ones(40), np.zeros(360)])
