"""threshold_router: the share of strong-model calls, ties, streaming thresholds, errors."""

from __future__ import annotations

import numpy as np
import pytest

from computealloc.evaluation.routing import threshold_router


def test_threshold_router_hits_the_share_with_ties():
    scores = np.array([0.1, 0.5, 0.5, 0.5, 0.9])
    shares = [threshold_router(scores, 0.4, random_state=s)[0].mean() for s in range(3000)]
    assert abs(np.mean(shares) - 0.4) < 0.01
    strong, thr = threshold_router(scores, 0.2)
    assert thr == 0.9 and strong.tolist() == [False, False, False, False, True]
    assert not threshold_router(scores, 0.0)[0].any()
    assert threshold_router(scores, 1.0)[0].all()


def test_threshold_router_streams_with_calibration_scores():
    rng = np.random.default_rng(17)
    strong, thr = threshold_router(rng.random(4000), 0.3, calibration_scores=rng.random(4000))
    assert abs(strong.mean() - 0.3) < 0.03 and 0.65 < thr < 0.75


def test_validation_messages():
    with pytest.raises(ValueError, match=r"'share' parameter of threshold_router must be a"):
        threshold_router([0.1], 1.5)
    with pytest.raises(ValueError, match="must be non-empty and finite"):
        threshold_router([np.nan], 0.5)
