"""Two-component 1-D Gaussian mixtures: fitted parameters, the reference EM engine, posteriors.

The reference engine is scikit-learn's ``GaussianMixture`` fitted once per trace, exactly as
the report does. ``audiomoment.method.em_fast`` fits many traces at once and returns the same
:class:`MixtureFit`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from audiomoment.config import LocalizeConfig
from audiomoment.method.traces import check_traces


@dataclass(frozen=True)
class MixtureFit:
    """Fitted two-component mixtures for N traces, components in the engine's order.

    Attributes (all float64)
    ----------
    weights : (N, 2) mixing proportions.
    means : (N, 2) component means.
    variances : (N, 2) component variances (``reg_covar`` included).
    lower_bound : (N,) mean log-likelihood per frame of the kept initialisation.
    """

    weights: NDArray[np.float64]
    means: NDArray[np.float64]
    variances: NDArray[np.float64]
    lower_bound: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.weights.shape[0])

    def relevant_first(self) -> MixtureFit:
        """The same fits with the higher-mean ("relevant") component in column 0.

        Ties keep the engine's order.
        """
        swap = self.means[:, 1] > self.means[:, 0]
        order = np.where(swap[:, None], [1, 0], [0, 1])
        take = np.take_along_axis
        return MixtureFit(
            weights=take(self.weights, order, axis=1),
            means=take(self.means, order, axis=1),
            variances=take(self.variances, order, axis=1),
            lower_bound=self.lower_bound,
        )


def fit_reference(
    traces: Sequence[NDArray[np.float64]] | NDArray[np.float64], config: LocalizeConfig
) -> MixtureFit:
    """Fit scikit-learn's ``GaussianMixture(n_components=2)`` to each trace separately.

    ``traces``: N arrays (T_i,), T_i >= 2, finite (checked by
    :func:`~audiomoment.method.traces.check_traces`), or one (N, T) array. Uses ``config.n_init``,
    ``config.random_state``, ``config.tol``, ``config.max_iter``, ``config.reg_covar``;
    every other setting is scikit-learn's default (k-means initialisation, full covariance).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    traces = check_traces(traces)
    n = len(traces)
    weights = np.empty((n, 2))
    means = np.empty((n, 2))
    variances = np.empty((n, 2))
    lower = np.empty(n)
    for i, trace in enumerate(traces):
        gm = GaussianMixture(
            n_components=2,
            n_init=config.n_init,
            random_state=config.random_state,
            tol=config.tol,
            max_iter=config.max_iter,
            reg_covar=config.reg_covar,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(trace.reshape(-1, 1))
        weights[i] = gm.weights_
        means[i] = gm.means_[:, 0]
        variances[i] = gm.covariances_[:, 0, 0]
        lower[i] = gm.lower_bound_
    return MixtureFit(weights, means, variances, lower)


def log_component_densities(
    x: NDArray[np.float64], means: NDArray[np.float64], variances: NDArray[np.float64]
) -> NDArray[np.float64]:
    """log N(x_t | mu_k, var_k) for each frame and component.

    One trace: ``x`` (T,), ``means``, ``variances`` (2,) -> (T, 2). A block of traces:
    ``x`` (N, T), ``means``, ``variances`` (N, 2) -> (N, T, 2); every element is computed
    by the same operations as for the trace alone, so the two agree bit for bit.

    Written as scikit-learn writes it (via the precision's Cholesky factor), so that
    posteriors agree with ``GaussianMixture.predict_proba`` to the last bits.
    """
    prec_chol = 1.0 / np.sqrt(variances)
    y = x[..., :, None] * prec_chol[..., None, :] - (means * prec_chol)[..., None, :]
    return -0.5 * (np.log(2 * np.pi) + y**2) + np.log(prec_chol)[..., None, :]


def log_sum_exp_pair(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """log(exp(a) + exp(b)) elementwise, bit for bit as scikit-learn's ``_logsumexp`` and
    SciPy's ``logsumexp`` compute it over a pair: ``a``, ``b`` of one shape -> that shape.

    Where the larger of the pair is finite, their steps reduce to
    ``log1p(exp(min - max)) + max`` (on a tie ``log1p(1) == log(2)``, and the terms they add
    are exact zeros). Anything else (an infinite or NaN larger value anywhere) takes their
    general form: ``log1p(sum of exp(value - max) over the non-maximal values / count of
    maximal values) + log(count) + max``.
    """
    top = np.maximum(a, b)
    if np.all(np.isfinite(top)):
        out = np.minimum(a, b)
        out -= top
        np.exp(out, out=out)
        np.log1p(out, out=out)
        out += top
        return out
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a_top = a == top
        b_top = b == top
        count = a_top.astype(np.float64) + b_top.astype(np.float64)
        shift = np.where(np.isfinite(top), top, 0.0)
        exp_a = np.where(a_top, 0.0, np.exp(np.where(a_top, -np.inf, a) - shift))
        exp_b = np.where(b_top, 0.0, np.exp(np.where(b_top, -np.inf, b) - shift))
        rest = exp_a + exp_b
        rest = np.where(rest == 0, rest, rest / count)
        return np.log1p(rest) + np.log(count) + top


def posterior(
    x: NDArray[np.float64],
    weights: NDArray[np.float64],
    means: NDArray[np.float64],
    variances: NDArray[np.float64],
    component: int = 0,
) -> NDArray[np.float64]:
    """gamma_t = pi_k N(x_t | mu_k, var_k) / sum_j pi_j N(x_t | mu_j, var_j) for one component.

    A block of traces: ``x`` (N, T) with ``weights``, ``means``, ``variances`` (N, 2) ->
    (N, T). One trace is a block of one: ``x`` (T,) with parameters (2,) -> (T,). Every
    element is computed by the same operations whatever the block, so a row's posterior
    does not depend on the other rows. Values lie in [0, 1].
    """
    weighted = log_component_densities(x, means, variances) + np.log(weights)[..., None, :]
    log_norm = log_sum_exp_pair(weighted[..., 0], weighted[..., 1])
    return np.exp(weighted[..., component] - log_norm)
