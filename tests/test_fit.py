"""fit_policy: fitted on train, calibrated on calibration, checked on unseen test queries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from computealloc.data.samples import SampleLog
from computealloc.fitting.fit import fit_policy
from computealloc.fitting.persist import load_policy, save_policy


def _log(n_queries: int = 300, n_samples: int = 8, seed: int = 0) -> SampleLog:
    """Queries whose difficulty grows with prompt length (the length heuristic's signal)."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        p = 0.9 - 0.8 * q / n_queries
        words = " ".join(["word"] * (5 + q // 3))
        for s in range(n_samples):
            ok = rng.random() < p
            rows.append(
                {
                    "query_id": f"q{q:04d}",
                    "sample_idx": s,
                    "prompt": f"Compute {q}: {words}?",
                    "answer": "A" if ok else str(rng.integers(0, 2)),
                    "correct": bool(ok),
                }
            )
    return SampleLog.from_frame(pd.DataFrame(rows))


LARGE = _log(1500)


@pytest.mark.parametrize("method", ["value", "imitation", "length", "uniform"])
def test_calibrated_cost_near_budget_on_unseen_queries(method: str) -> None:
    result = fit_policy(LARGE, budget=3.0, method=method, seed=1)
    assert result.n_train + result.n_calibration + result.n_test == 1500
    assert result.test_cost == pytest.approx(3.0, rel=0.05)
    assert 0.0 <= result.test_accuracy <= 1.0


def test_probe_policy_charges_probes_once() -> None:
    result = fit_policy(_log(), budget=4.0, method="value", probe_m=2, seed=0)
    assert result.probe_m == 2
    assert result.test_cost >= 2.0  # every query pays at least its two probes
    assert "probe_entropy" in list(result.policy.feature_names_in_)


def test_a_saved_probe_policy_tells_the_runtime_its_probes(tmp_path) -> None:
    from computealloc.data.backends import ReplayBackend
    from computealloc.serving.runtime import Runtime

    log = _log()
    result = fit_policy(log, budget=4.0, method="value", probe_m=2, seed=0)
    save_policy(result.policy, tmp_path / "p.json")
    runtime = Runtime(load_policy(tmp_path / "p.json"), ReplayBackend(log), budget=4.0)
    assert runtime.probe_m == 2
    answer = runtime.run_stream(log.queries["prompt"].tolist()[:1])[0]
    assert answer.cost >= 2.0


def test_saved_policy_predicts_the_same(tmp_path) -> None:
    log = _log()
    result = fit_policy(log, budget=2.0, method="value", seed=0)
    save_policy(result.policy, tmp_path / "p.json")
    loaded = load_policy(tmp_path / "p.json")
    from computealloc.estimation.features import build_features

    X = build_features(log).X
    np.testing.assert_array_equal(
        loaded.predict(X, random_state=0), result.policy.predict(X, random_state=0)
    )


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="The 'method' parameter of fit_policy must be one of"):
        fit_policy(_log(30), budget=2.0, method="magic")  # type: ignore[arg-type]
