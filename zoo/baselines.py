"""The classic scikit-learn baselines, each a named zoo entry."""

from __future__ import annotations

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from zoo.registry import register_model


@register_model("knn_k1", "sklearn", "k-nearest neighbors, k=1")
def knn_k1(seed: int = 0):
    return KNeighborsClassifier(n_neighbors=1)


@register_model("knn_k3", "sklearn", "k-nearest neighbors, k=3, distance-weighted")
def knn_k3(seed: int = 0):
    return KNeighborsClassifier(n_neighbors=3, weights="distance")


@register_model("decision_tree", "sklearn", "one decision tree, grown until pure")
def decision_tree(seed: int = 0):
    return DecisionTreeClassifier(random_state=seed)


@register_model("random_forest_300", "sklearn", "random forest of 300 trees")
def random_forest(seed: int = 0):
    return RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1)


@register_model("extra_trees_300", "sklearn", "extremely randomized trees, 300 of them")
def extra_trees(seed: int = 0):
    return ExtraTreesClassifier(n_estimators=300, random_state=seed, n_jobs=1)


@register_model("svc_rbf", "sklearn", "support vector machine, RBF kernel, C=10, calibrated")
def svc_rbf(seed: int = 0):
    # scikit-learn 1.9 deprecates SVC(probability=True) for this wrapper.
    return CalibratedClassifierCV(
        SVC(C=10.0, gamma="scale", random_state=seed), ensemble=False, cv=5
    )


@register_model("logistic_regression", "sklearn", "multinomial logistic regression, C=1")
def logistic_regression(seed: int = 0):
    return LogisticRegression(C=1.0, max_iter=2000, random_state=seed)


@register_model("mlp_256x256", "sklearn", "scikit-learn MLPClassifier, 2 hidden layers of 256")
def mlp_256x256(seed: int = 0):
    return MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=200, random_state=seed)
