"""scikit-learn's own conformance checks on the zoo's Keras estimators.

``parametrize_with_checks`` runs scikit-learn's shared estimator suite (the
one its own estimators pass) instead of hand-written conventions. The checks
these estimators do not pass are listed with the reason, as strict expected
failures: one that starts to pass fails the test, so the list stays true.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from zoo.dense import DenseNetClassifier
from zoo.ensemble import DenseEnsembleClassifier

# The checks fit dozens of times on tiny data of many shapes, and most of a fit
# is XLA compilation for its shapes: the smallest network, one epoch, no dropout
# and plain SGD compile fastest (about 1.5 s for a new shape, against 2.5 s with
# the defaults' dropout and Adam).
FAST = {
    "n_layers": 1,
    "units": 8,
    "dropout_rate": 0.0,
    "optimizer": "sgd",
    "epochs": 1,
    "batch_size": 32,
}

# fit and predict read X with numpy (any shape is flattened into rows, so image
# arrays work) and check it with the zoo's own ZooError messages, not with
# scikit-learn's validate_data; these checks expect validate_data's behaviour.
INPUT_HANDLING = {
    "check_n_features_in_after_fitting": (
        "predict checks the feature count itself: ZooError 'X has N features but the "
        "network (or ensemble) was trained on M', not validate_data's wording"
    ),
    "check_fit1d": (
        "fit flattens any X that is not 2-D into rows (so (n, 8, 8) images work): a 1-D X "
        "becomes n rows of one feature instead of an error"
    ),
    "check_fit2d_predict1d": (
        "a 1-D X is flattened into rows of one feature (see check_fit1d), so predict raises "
        "the feature-count ZooError, not 'Reshape your data'"
    ),
    "check_complex_data": (
        "X is cast to float32 by numpy (ComplexWarning, imaginary part dropped) instead of "
        "raising 'Complex data not supported'"
    ),
    "check_estimators_empty_data_messages": (
        "X with 0 features raises ZooError 'a dense net needs at least 1 input and 2 "
        "classes', not validate_data's wording"
    ),
    "check_estimators_nan_inf": (
        "NaN or inf in X is not rejected up front: the loss becomes non-finite and fit raises "
        "TrainingDiverged, an ArithmeticError (tested in test_dense.py)"
    ),
    "check_estimator_sparse_tag": (
        "sparse X is not supported and not rejected by name: numpy's float32 cast fails with "
        "'setting an array element with a sequence'"
    ),
    "check_estimator_sparse_array": "sparse X fails in numpy's cast (see check_estimator_sparse_tag)",
    "check_estimator_sparse_matrix": "sparse X fails in numpy's cast (see check_estimator_sparse_tag)",
    "check_classifiers_train": (
        "fit does not check that X and y have the same number of rows (no check_X_y)"
    ),
    "check_classifiers_regression_target": (
        "fit does not check the target type: each distinct value of a continuous y becomes a class"
    ),
    "check_supervised_y_2d": (
        "a column-vector y of shape (n, 1) is not raveled with a DataConversionWarning; "
        "training fails on a shape mismatch inside Keras"
    ),
    "check_fit2d_1sample": (
        "one training row is one class: ZooError 'training data needs at least 2 classes "
        "(got 1)', a wording the check does not match"
    ),
    "check_requires_y_none": (
        "y=None is not rejected as missing: it counts as one class and fit raises ZooError "
        "'training data needs at least 2 classes (got 1)'"
    ),
}


def expected_failures(estimator) -> dict[str, str]:
    """The checks ``estimator`` is known to fail, each with the reason."""
    return dict(INPUT_HANDLING)


@pytest.mark.slow
@parametrize_with_checks(
    [DenseNetClassifier(**FAST)], expected_failed_checks=expected_failures, xfail_strict=True
)
def test_dense_net_passes_sklearn_checks(estimator, check):
    check(estimator)


# The ensemble gets the API checks only (parameters, clone, fit returns self,
# fitted attributes, unfitted errors): the rest check input handling, which it
# leaves to its DenseNetClassifier members, checked in full above, and each of
# its fits trains two networks.
@parametrize_with_checks(
    [DenseEnsembleClassifier(members=(FAST, {**FAST, "seed": 1}))],
    legacy=False,
    expected_failed_checks=expected_failures,
    xfail_strict=True,
)
def test_dense_ensemble_passes_sklearn_api_checks(estimator, check):
    check(estimator)
