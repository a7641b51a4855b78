"""Tests of computealloc.persist: JSON round trips, tamper detection, mismatch errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from computealloc.persist import PolicyFileError, _digest, load_policy, save_policy
from computealloc.policies import Imitation, LengthHeuristic, Random, Uniform, Value
from computealloc.table import OutcomeTable

KS = np.array([1.0, 2.0, 4.0, 8.0])
ACTIONS = ("majority@1", "majority@2", "majority@4", "majority@8")


def _problem(n: int, seed: int) -> tuple[pd.DataFrame, OutcomeTable]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3))
    p = np.clip(x[:, :1] + 0.8 * (x[:, :1] - 0.5) * (1 - 1 / np.sqrt(KS)), 0, 1)
    X = pd.DataFrame({"x0": x[:, 0], "n_chars": 100 * x[:, 1], "x2": x[:, 2]})
    return X, OutcomeTable(p, np.tile(KS, (n, 1)), ACTIONS)


POLICIES = [
    Uniform(random_state=0),
    Random(random_state=1),
    LengthHeuristic(random_state=2),
    Imitation(budget=3.0, n_estimators=15, random_state=3),
    Value(n_estimators=15, random_state=4),
    Value(target="gain", n_estimators=15, random_state=4),
]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, OutcomeTable, pd.DataFrame]:
    X, table = _problem(400, 0)
    return X, table, _problem(300, 1)[0]


def _assert_same_policy(a, b, X):
    assert type(a) is type(b) and a.get_params() == b.get_params()
    assert a.actions_ == b.actions_ and a.cost_unit_ == b.cost_unit_
    np.testing.assert_array_equal(a.costs_, b.costs_)
    np.testing.assert_array_equal(a.scores(X), b.scores(X))
    np.testing.assert_array_equal(a.predict(X, random_state=9), b.predict(X, random_state=9))
    x, y = a.allocate(X, 2.5), b.allocate(X, 2.5)
    np.testing.assert_array_equal(x.actions, y.actions)
    assert x.mix == y.mix
    for name in ("lam_", "mix_", "budget_"):
        assert getattr(a, name, None) == getattr(b, name, None)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: repr(p))
def test_round_trip_predicts_exactly(policy, data, tmp_path):
    X, table, X_new = data
    fitted = policy.fit(X, table).calibrate(X_new, 3.0)
    path = tmp_path / "policy.json"
    save_policy(fitted, path)
    loaded = load_policy(path, actions=ACTIONS, feature_names=list(X.columns))
    _assert_same_policy(fitted, loaded, X_new)
    assert list(tmp_path.iterdir()) == [path]


def test_round_trip_uncalibrated(data, tmp_path):
    X, table, X_new = data
    policy = Value(n_estimators=5).fit(X.to_numpy(), table)
    save_policy(policy, tmp_path / "p.json")
    loaded = load_policy(tmp_path / "p.json")
    assert not hasattr(loaded, "budget_") and not hasattr(loaded, "feature_names_in_")
    np.testing.assert_array_equal(policy.scores(X_new.to_numpy()), loaded.scores(X_new.to_numpy()))
    with pytest.raises(NotFittedError, match="not calibrated yet"):
        loaded.predict(X_new.to_numpy())


def test_file_is_plain_json_with_booster_text(data, tmp_path):
    X, table, _ = data
    save_policy(Imitation(budget=3.0, n_estimators=5).fit(X, table), tmp_path / "p.json")
    document = json.loads((tmp_path / "p.json").read_text())
    assert document["format"] == "computealloc.policy" and document["version"] == 1
    assert document["payload"]["class"] == "Imitation"
    assert document["payload"]["state"]["booster_"].startswith("tree\n")
    assert document["sha256"] == _digest(document["payload"])


@pytest.fixture()
def saved(data, tmp_path):
    X, table, X_new = data
    path = tmp_path / "p.json"
    save_policy(Value(n_estimators=5).fit(X, table).calibrate(X_new, 3.0), path)
    return path


def _edit(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["payload"]["fitted"].__setitem__("lam_", 0.0),
        lambda d: d["payload"]["state"]["boosters_"].__setitem__(
            0, d["payload"]["state"]["boosters_"][0].replace("leaf_value=", "leaf_value=1", 1)
        ),
        lambda d: d["payload"].__setitem__("class", "Uniform"),
        lambda d: d.__setitem__("sha256", "0" * 64),
    ],
    ids=["lam", "booster", "class", "digest"],
)
def test_tampering_is_detected(saved, change):
    _edit(saved, change)
    with pytest.raises(PolicyFileError, match=r"Policy file .*p.json is corrupted: checksum"):
        load_policy(saved)


def _resign(document):
    document["sha256"] = _digest(document["payload"])


def test_unknown_class_is_refused(saved):
    def change(d):
        d["payload"]["class"] = "Pipeline"
        _resign(d)

    _edit(saved, change)
    with pytest.raises(PolicyFileError, match="holds class 'Pipeline', which is not one of"):
        load_policy(saved)


def test_invalid_payload(saved):
    def change(d):
        del d["payload"]["fitted"]["costs_"]
        _resign(d)

    _edit(saved, change)
    with pytest.raises(PolicyFileError, match="has an invalid payload: KeyError"):
        load_policy(saved)


def test_not_json(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b"\x80\x04pickle")
    with pytest.raises(PolicyFileError, match="is not readable JSON"):
        load_policy(path)


def test_foreign_json(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"format": "something"}')
    with pytest.raises(PolicyFileError, match="is not a computealloc policy"):
        load_policy(path)


def test_other_version(saved):
    _edit(saved, lambda d: d.__setitem__("version", 2))
    with pytest.raises(PolicyFileError, match="has format version 2; this computealloc reads"):
        load_policy(saved)


def test_missing_file(tmp_path):
    with pytest.raises(PolicyFileError, match="is not readable JSON"):
        load_policy(tmp_path / "absent.json")


def test_action_mismatch(saved):
    with pytest.raises(PolicyFileError, match=r"was fitted with actions .* but the caller expects"):
        load_policy(saved, actions=["majority@1", "majority@4"])


def test_feature_mismatch(saved):
    with pytest.raises(PolicyFileError, match=r"was fitted with features .* but the caller"):
        load_policy(saved, feature_names=["x0", "x2", "n_chars"])


def test_feature_names_required_when_expected(data, tmp_path):
    X, table, _ = data
    save_policy(Uniform().fit(X.to_numpy(), table), tmp_path / "p.json")
    with pytest.raises(PolicyFileError, match="was fitted with features None"):
        load_policy(tmp_path / "p.json", feature_names=list(X.columns))


def test_save_unfitted(tmp_path):
    with pytest.raises(NotFittedError, match="This Value instance is not fitted yet"):
        save_policy(Value(), tmp_path / "p.json")


def test_save_foreign_class(data, tmp_path):
    class MyValue(Value):
        pass

    X, table, _ = data
    with pytest.raises(TypeError, match="save_policy supports the policies"):
        save_policy(MyValue(n_estimators=2).fit(X, table), tmp_path / "p.json")


def test_save_generator_seed(data, tmp_path):
    X, table, _ = data
    policy = Uniform(random_state=np.random.default_rng(0)).fit(X, table)
    with pytest.raises(ValueError, match="random_state is an int or None can be saved"):
        save_policy(policy, tmp_path / "p.json")


@pytest.mark.usefixtures("shared_data")
def test_real_features_round_trip(tmp_path):
    from computealloc import datasets
    from computealloc.estimate import estimate
    from computealloc.features import build_features

    log = datasets.load("mot_cascade:llama-2-13b/gsm/pot2")
    X = build_features(log, probe_m=2).X
    table = estimate(log, ["majority@1", "majority@2", "majority@4", "majority@8"])
    train, new = np.arange(300), np.arange(300, 400)
    for policy in (Imitation(budget=4.0, random_state=0), Value(random_state=0)):
        policy.fit(X.iloc[train], table.subset(train)).calibrate(X.iloc[new], 4.0)
        save_policy(policy, tmp_path / "p.json")
        loaded = load_policy(tmp_path / "p.json", actions=table.actions, feature_names=X.columns)
        _assert_same_policy(policy, loaded, X.iloc[new])
