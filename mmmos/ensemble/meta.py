"""Meta-models of a stacked ensemble: ridge regression in closed form (numpy), optionally LightGBM.

Ridge: features standardised on the fitting clips, ``w = V diag(s / (s^2 + alpha)) U^T (y - mean y)`` from one
SVD for every alpha of :data:`ALPHAS`; the model is returned in raw feature units (``intercept + X @ coef``) so
an exported predictor needs no statistics. ``alpha`` is chosen by grouped K-fold cross-validation on the
clips it is fitted on (lowest pooled held-out MSE; ties go to the larger alpha).

LightGBM (``lightgbm``, optional): gradient-boosted trees with fixed, deterministic settings; it is only
imported when asked for and cannot be exported to a predictor (no linear record).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .folds import grouped_folds

MODELS: tuple[str, ...] = ("ridge", "lightgbm")
ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 5, 17))


@dataclass
class LinearModel:
    """``y = intercept + X @ coef`` (raw feature units), with the ridge penalty it was fitted with."""

    intercept: float
    coef: np.ndarray
    alpha: float
    kind: str = "ridge"
    alpha_errors: dict[float, float] = field(default_factory=dict)  # cross-validated MSE per alpha

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.intercept + np.asarray(X, dtype=np.float64) @ self.coef

    def to_json(self) -> dict:
        return {"kind": self.kind, "alpha": self.alpha, "intercept": float(self.intercept),
                "coefficients": [float(c) for c in self.coef]}


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)  # a constant feature stays 0 after centring: no weight
    return (X - mu) / sd, mu, sd


def ridge_path(X: np.ndarray, y: np.ndarray, alphas: tuple[float, ...] = ALPHAS):
    """Standardised-space weights ``(p, n_alphas)`` for every alpha, and the centring statistics."""
    Xs, mu, sd = _standardise(np.asarray(X, dtype=np.float64))
    ybar = float(np.mean(y))
    U, s, Vt = np.linalg.svd(Xs, full_matrices=False)
    uty = U.T @ (np.asarray(y, dtype=np.float64) - ybar)
    a = np.asarray(alphas, dtype=np.float64)
    d = s[:, None] / (s[:, None] ** 2 + a[None, :])
    return Vt.T @ (d * uty[:, None]), mu, sd, ybar


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> LinearModel:
    """Ridge with penalty ``alpha`` on standardised features, returned in raw units."""
    W, mu, sd, ybar = ridge_path(X, y, (alpha,))
    coef = W[:, 0] / sd
    return LinearModel(ybar - float(mu @ coef), coef, float(alpha))


def cv_mse(X: np.ndarray, y: np.ndarray, folds: np.ndarray, alphas: tuple[float, ...] = ALPHAS) -> np.ndarray:
    """Pooled held-out MSE per alpha over the given folds."""
    err = np.zeros(len(alphas))
    for f in np.unique(folds):
        tr, ho = folds != f, folds == f
        W, mu, sd, ybar = ridge_path(X[tr], y[tr], alphas)
        pred = ybar + ((X[ho] - mu) / sd) @ W
        err += ((pred - y[ho, None]) ** 2).sum(axis=0)
    return err / len(y)


def choose_alpha(X: np.ndarray, y: np.ndarray, groups: list[str], k: int, seed: int,
                 alphas: tuple[float, ...] = ALPHAS) -> tuple[float, dict[float, float]]:
    """The alpha with the lowest grouped K-fold MSE on these clips (ties: the larger alpha).

    With a single group the folds fall back to clips (nothing to leak between systems inside one system).
    """
    if len(set(groups)) < 2:
        groups = [str(i) for i in range(len(y))]
    err = cv_mse(X, y, grouped_folds(groups, k, seed), alphas)
    best = len(alphas) - 1 - int(np.argmin(err[::-1]))  # last minimum = largest alpha on ties
    return float(alphas[best]), {float(a): float(e) for a, e in zip(alphas, err)}


def fit_ridge_cv(X: np.ndarray, y: np.ndarray, groups: list[str], k: int, seed: int,
                 alphas: tuple[float, ...] = ALPHAS) -> LinearModel:
    """Ridge whose alpha is chosen by grouped cross-validation on the same clips (the inner loop)."""
    alpha, errors = choose_alpha(X, y, groups, k, seed, alphas)
    model = fit_ridge(X, y, alpha)
    model.alpha_errors = errors
    return model


class TreeModel:
    """LightGBM regressor with fixed, deterministic settings (single thread, seeded)."""

    kind = "lightgbm"

    def __init__(self, X: np.ndarray, y: np.ndarray, seed: int):
        import lightgbm

        self.model = lightgbm.LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=15,
                                            min_child_samples=10, subsample=0.8, subsample_freq=1,
                                            colsample_bytree=0.8, random_state=seed, n_jobs=1,
                                            deterministic=True, verbose=-1)
        self.model.fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(X, dtype=np.float64)), dtype=np.float64)

    def to_json(self) -> dict:
        imp = self.model.booster_.feature_importance(importance_type="gain")
        return {"kind": self.kind, "feature_importance_gain": [float(v) for v in imp]}


def fit_ridge_raw(X: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> LinearModel:
    """Ridge with a fixed ``alpha`` on the RAW features (centred, not scaled; intercept unpenalised): what
    ``sklearn.linear_model.Ridge(alpha)`` fits, the public ASTAR-NTU stacking's meta-model."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mu, ybar = X.mean(axis=0), float(y.mean())
    Xc = X - mu
    coef = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - ybar))
    return LinearModel(ybar - float(mu @ coef), coef, float(alpha), kind="ridge")


class PublicTreeModel(TreeModel):
    """LightGBM with the public recipe's settings: ``LGBMRegressor(random_state=42)``, every other default."""

    def __init__(self, X: np.ndarray, y: np.ndarray, seed: int = 42):
        import lightgbm

        self.model = lightgbm.LGBMRegressor(random_state=42)
        self.model.fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64))


def fit_public_meta(kind: str, X: np.ndarray, y: np.ndarray):
    """The public recipe's meta-model of ``kind``: ridge alpha 1 on raw features, or default LightGBM."""
    if kind == "ridge":
        return fit_ridge_raw(X, y, 1.0)
    if kind == "lightgbm":
        return PublicTreeModel(X, y)
    raise ValueError(f"unknown meta-model {kind!r}; valid: {', '.join(MODELS)}")


def lightgbm_available() -> bool:
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


def fit_meta(kind: str, X: np.ndarray, y: np.ndarray, groups: list[str], k: int, seed: int):
    """A fitted meta-model of ``kind`` (``ridge``: alpha by grouped CV on these clips)."""
    if kind == "ridge":
        return fit_ridge_cv(X, y, groups, k, seed)
    if kind == "lightgbm":
        return TreeModel(X, y, seed)
    raise ValueError(f"unknown meta-model {kind!r}; valid: {', '.join(MODELS)}")


__all__ = ["ALPHAS", "LinearModel", "MODELS", "PublicTreeModel", "TreeModel", "fit_public_meta", "fit_ridge_raw", "choose_alpha", "cv_mse", "fit_meta", "fit_ridge",
           "fit_ridge_cv", "lightgbm_available", "ridge_path"]
