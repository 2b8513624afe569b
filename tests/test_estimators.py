"""The scikit-learn estimators: estimator checks, pipelines, grid search, DataFrames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris, load_wine
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from nmsnn import SpikingClassifier, SpikingRegressor
from nmsnn.errors import ConfigError

SMALL = {"hidden": (16,), "time_steps": 4, "epochs": 12, "batch_size": 32}

# Checks skipped, and why. Every other check of scikit-learn's suite runs on both estimators.
SMALL_MODEL_TOO_WEAK = (
    "the checks run on a tiny 12-epoch model to stay fast, which does not reach R^2 > 0.5 on the "
    "check's data; the default SpikingRegressor does (test_default_regressor_passes_the_train_check)"
)


def expected_failed_checks(estimator) -> dict[str, str]:
    if isinstance(estimator, SpikingRegressor):
        return {
            "check_regressors_train": SMALL_MODEL_TOO_WEAK,
            "check_regressors_train(readonly_memmap=True)": SMALL_MODEL_TOO_WEAK,
            "check_regressors_train(readonly_memmap=True,X_dtype=float32)": SMALL_MODEL_TOO_WEAK,
        }
    return {}


@parametrize_with_checks(
    [SpikingClassifier(**SMALL), SpikingRegressor(**SMALL)], expected_failed_checks=expected_failed_checks
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_default_regressor_passes_the_train_check():
    from sklearn.utils.estimator_checks import check_regressors_train

    check_regressors_train("SpikingRegressor", SpikingRegressor())


def test_grid_search_over_decay_and_threshold():
    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(
        SpikingClassifier(**{**SMALL, "epochs": 8}),
        {"decay": [0.8, 0.95], "threshold": [0.5, 1.0]},
        cv=3,
    )
    search.fit(X, y)
    assert set(search.best_params_) == {"decay", "threshold"}
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert search.best_score_ > 0.5


def test_pipeline_and_cross_val_score():
    X, y = load_wine(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), SpikingClassifier(**{**SMALL, "epochs": 10}))
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.6


def test_dataframe_with_text_and_missing_values(fixtures):
    frame = pd.read_csv(fixtures / "mixed_classification.csv")
    X, y = frame.drop(columns="label"), frame["label"]
    clf = SpikingClassifier(**{**SMALL, "epochs": 10}).fit(X, y)
    assert list(clf.classes_) == ["no", "yes"] and list(clf.feature_names_in_) == ["a", "b", "c", "color"]
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1)
    assert np.array_equal(clf.predict_proba(X), proba), "predictions are deterministic"
    assert set(clf.predict(X)) <= {"no", "yes"}


def test_missing_targets_are_named_not_a_type_error():
    X = pd.DataFrame({"a": np.arange(8.0)})
    labels = pd.Series(["yes", "no", None, "yes", "no", np.nan, "yes", "no"])
    with pytest.raises(
        ValueError, match=r"y has 2 missing value\(s\) .* of 8, at positions 2, 5; drop those rows"
    ):
        SpikingClassifier(**SMALL).fit(X, labels)
    with pytest.raises(ValueError, match=r"y has 1 missing value\(s\) .* at positions 3;"):
        SpikingRegressor(**SMALL).fit(X, [1.0, 2.0, 3.0, np.nan, 5.0, 6.0, 7.0, 8.0])


def test_get_and_set_params_and_validation():
    clf = SpikingClassifier(decay=0.8)
    assert clf.get_params()["decay"] == 0.8
    clf.set_params(threshold=0.5, time_steps=8)
    assert clf.threshold == 0.5 and clf.time_steps == 8
    with pytest.raises(ConfigError, match="decay must be in"):
        SpikingClassifier(decay=1.5, **SMALL).fit(np.random.rand(20, 3), [0, 1] * 10)
    with pytest.raises(ConfigError, match="time_steps must be a positive integer"):
        SpikingClassifier(time_steps=0).fit(np.random.rand(20, 3), [0, 1] * 10)
    for epochs in (0, -1, 2.5):
        with pytest.raises(ValueError, match="epochs must be a positive integer"):
            SpikingClassifier(**{**SMALL, "epochs": epochs}).fit(np.random.rand(20, 3), [0, 1] * 10)


def test_columns_match_by_position_between_frames_and_arrays():
    X, y = load_iris(return_X_y=True, as_frame=True)
    from_frame = SpikingClassifier(**SMALL).fit(X, y)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = from_frame.predict_proba(X.to_numpy())
    np.testing.assert_array_equal(from_array, from_frame.predict_proba(X))
    from_array_fit = SpikingClassifier(**SMALL).fit(X.to_numpy(), y)
    with pytest.warns(UserWarning, match="was fitted without feature names"):
        np.testing.assert_array_equal(
            from_array_fit.predict_proba(X), from_array_fit.predict_proba(X.to_numpy())
        )
    assert from_frame.module_._trainer is None, "a fitted estimator does not keep its training rows"


def test_boolean_and_large_integer_labels_keep_their_values():
    X = np.random.default_rng(0).normal(size=(40, 3))
    flags = X[:, 0] > 0
    clf = SpikingClassifier(**SMALL).fit(X, flags)
    assert clf.classes_.tolist() == [False, True] and clf.predict(X).dtype == bool
    assert 0 <= clf.score(X, flags) <= 1
    ids = np.where(flags, 10**17 + 3, 10**17 + 1)
    assert SpikingClassifier(**SMALL).fit(X, ids).classes_.tolist() == [10**17 + 1, 10**17 + 3]


def test_random_state_takes_a_numpy_random_state_and_an_int_hidden_size():
    X, y = load_iris(return_X_y=True)
    a = SpikingClassifier(**{**SMALL, "hidden": 16}, random_state=np.random.RandomState(3)).fit(X, y)
    b = SpikingClassifier(**{**SMALL, "hidden": 16}, random_state=np.random.RandomState(3)).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.module_.hparams.hidden == [16]


def test_quiet_by_default(capfd):
    X, y = load_iris(return_X_y=True)
    SpikingClassifier(**SMALL).fit(X, y)
    captured = capfd.readouterr()
    assert captured.out == "" and "GPU available" not in captured.err
