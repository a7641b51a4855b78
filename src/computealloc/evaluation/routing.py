"""Routing between a weak and a strong model by a score threshold (RouteLLM's router).

RouteLLM (Ong et al. 2024) scores each query (a predicted win rate or accuracy gain of the
strong model over the weak one) and calls the strong model when the score clears the quantile
that gives the target share of strong-model calls; :func:`computealloc.evaluate` runs it as the
``router/threshold`` baseline on two-model logs.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["threshold_router"]

Bool = NDArray[np.bool_]


def threshold_router(
    scores: ArrayLike,
    share: float,
    *,
    calibration_scores: ArrayLike | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[Bool, float]:
    """RouteLLM-style router: call the strong model when a query's score clears a quantile.

    The threshold is the ``1 - share`` quantile of the calibration scores (of ``scores``
    themselves by default), so that a share ``share`` of the queries go to the strong model;
    queries tied at the threshold go to the strong model with the probability that makes the
    expected share exact on the calibration scores.

    Parameters
    ----------
    scores : array-like of shape (n_queries,)
        Per-query router scores, higher meaning the strong model is more worth its cost (a
        predicted win rate or accuracy gain of strong over weak).
    share : float
        Target share of strong-model calls, in [0, 1].
    calibration_scores : array-like of shape (n_calibration,), optional
        Scores of calibration queries that set the threshold (streaming use).
    random_state : int, Generator or None
        Seed of the tie draws.

    Returns
    -------
    strong : ndarray of shape (n_queries,), bool
        Which queries are routed to the strong model.
    threshold : float
        The score threshold.

    Examples
    --------
    >>> strong, thr = threshold_router([0.1, 0.4, 0.3, 0.9], 0.5)
    >>> strong.tolist(), thr
    ([False, True, False, True], 0.4)
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    ref = s if calibration_scores is None else np.asarray(calibration_scores, np.float64).ravel()
    if isinstance(share, bool) or not isinstance(share, Real) or not 0.0 <= share <= 1.0:
        raise ValueError(
            f"The 'share' parameter of threshold_router must be a float in [0, 1]. Got "
            f"{share!r} instead."
        )
    if ref.size == 0 or not np.isfinite(ref).all() or not np.isfinite(s).all():
        raise ValueError("`scores` and `calibration_scores` must be non-empty and finite.")
    ranked = np.sort(ref)[::-1]
    k = share * ref.size
    if k <= 0:
        return np.zeros(s.size, dtype=bool), float(np.inf)
    threshold = float(ranked[min(int(np.ceil(k)), ref.size) - 1])
    above = float((ref > threshold).sum())
    tied = float((ref == threshold).sum())
    p_tie = float(np.clip((k - above) / tied, 0.0, 1.0))
    rng = np.random.default_rng(random_state)
    strong = (s > threshold) | ((s == threshold) & (rng.random(s.size) < p_tie))
    return strong, threshold
