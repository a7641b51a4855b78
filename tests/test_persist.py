"""Tests of computealloc.fitting.persist: JSON round trips, tamper detection, mismatch errors.

Policies (``save_policy`` / ``load_policy``) first, then sequential stopping rules
(``save_stopping`` / ``load_stopping``).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from computealloc.estimation.table import OutcomeTable
from computealloc.fitting.persist import (
    PolicyFileError,
    _digest,
    load_policy,
    load_stopping,
    save_policy,
    save_stopping,
)
from computealloc.fitting.policies import Imitation, LengthHeuristic, Random, Uniform, Value
from computealloc.fitting.sequential import (
    AnswerPools,
    BetaRule,
    CalibratedStopping,
    DirichletRule,
    EntropyRule,
    LagrangianStopping,
    MajorityShareRule,
    WindowRule,
    calibrate_stopping,
    evaluate_stopping,
    replay,
)
from conftest import needs_data

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
    assert not hasattr(loaded, "probe_m_")
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


def test_probe_m_round_trips_as_int(data, tmp_path):
    X, table, X_new = data
    policy = Value(n_estimators=5).fit(X, table).calibrate(X_new, 3.0)
    policy.probe_m_ = 3
    save_policy(policy, tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text())["payload"]["fitted"]["probe_m_"] == 3
    loaded = load_policy(tmp_path / "p.json")
    assert loaded.probe_m_ == 3 and type(loaded.probe_m_) is int


def test_indented_file_without_probe_m_loads(data, tmp_path):
    X, table, X_new = data
    policy = Value(n_estimators=5).fit(X, table).calibrate(X_new, 3.0)
    save_policy(policy, tmp_path / "p.json")
    document = json.loads((tmp_path / "p.json").read_text())
    assert "probe_m_" not in document["payload"]["fitted"]
    (tmp_path / "p.json").write_text(json.dumps(document, indent=1))  # the first layout
    loaded = load_policy(tmp_path / "p.json")
    assert not hasattr(loaded, "probe_m_")
    _assert_same_policy(policy, loaded, X_new)


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
    with pytest.raises(
        PolicyFileError, match=r"Policy file .*p.json, field sha256: checksum mismatch"
    ):
        load_policy(saved)


def _resign(document):
    document["sha256"] = _digest(document["payload"])


def test_unknown_class_is_refused(saved):
    def change(d):
        d["payload"]["class"] = "Pipeline"
        _resign(d)

    _edit(saved, change)
    with pytest.raises(
        PolicyFileError, match=r"p.json, field payload.class: 'Pipeline' is not one of \["
    ):
        load_policy(saved)


def test_invalid_payload(saved):
    def change(d):
        del d["payload"]["fitted"]["costs_"]
        _resign(d)

    _edit(saved, change)
    with pytest.raises(
        PolicyFileError, match=r"p.json, field payload.fitted.costs_: Field required"
    ):
        load_policy(saved)


def test_not_json(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b"\x80\x04pickle")
    with pytest.raises(PolicyFileError, match=r"p.json: is not UTF-8 text \(byte 0\)"):
        load_policy(path)


def test_foreign_json(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"format": "something"}')
    with pytest.raises(
        PolicyFileError, match="field format: is not a computealloc policy: expected 'computealloc"
    ):
        load_policy(path)


def test_other_version(saved):
    _edit(saved, lambda d: d.__setitem__("version", 2))
    with pytest.raises(
        PolicyFileError, match=r"p.json, field version: format version 2; this computealloc reads"
    ):
        load_policy(saved)


def test_missing_file(tmp_path):
    with pytest.raises(PolicyFileError, match=r"absent.json: cannot be read: No such file"):
        load_policy(tmp_path / "absent.json")


def test_action_mismatch(saved):
    with pytest.raises(
        PolicyFileError,
        match=r"field payload.fitted.actions_: the policy was fitted with actions .* but the",
    ):
        load_policy(saved, actions=["majority@1", "majority@4"])


def test_feature_mismatch(saved):
    with pytest.raises(
        PolicyFileError,
        match=r"field payload.fitted.feature_names_in_: the policy was fitted with features .* but",
    ):
        load_policy(saved, feature_names=["x0", "x2", "n_chars"])


def test_feature_names_required_when_expected(data, tmp_path):
    X, table, _ = data
    save_policy(Uniform().fit(X.to_numpy(), table), tmp_path / "p.json")
    with pytest.raises(PolicyFileError, match="the policy was fitted with features None"):
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
    from computealloc.data import datasets
    from computealloc.estimation.estimate import estimate
    from computealloc.estimation.features import build_features

    log = datasets.load("mot_cascade:llama-2-13b/gsm/pot2")
    X = build_features(log, probe_m=2).X
    table = estimate(log, ["majority@1", "majority@2", "majority@4", "majority@8"])
    train, new = np.arange(300), np.arange(300, 400)
    for policy in (Imitation(budget=4.0, random_state=0), Value(random_state=0)):
        policy.fit(X.iloc[train], table.subset(train)).calibrate(X.iloc[new], 4.0)
        save_policy(policy, tmp_path / "p.json")
        loaded = load_policy(tmp_path / "p.json", actions=table.actions, feature_names=X.columns)
        _assert_same_policy(policy, loaded, X.iloc[new])


# --------------------------------------------------------------------------- stopping rules


def _pools(n: int, seed: int) -> tuple[AnswerPools, np.ndarray]:
    """Pools of 12 samples whose agreement follows feature 0, and the features (n, 3)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3))
    size = 12
    gold = rng.binomial(size, 0.15 + 0.8 * x[:, 0])
    abstain = rng.binomial(size - gold, 0.1)
    rest = size - gold - abstain
    others = rng.multinomial(rest, [0.6, 0.3, 0.1])
    qids = tuple(f"{seed}-{i}" for i in range(n))
    return AnswerPools(gold, others.astype(np.int64), abstain, qids), x


@pytest.fixture(scope="module")
def pools() -> dict[str, tuple[AnswerPools, np.ndarray]]:
    return {"train": _pools(150, 10), "cal": _pools(80, 11), "test": _pools(80, 12)}


ANSWERS = [
    ["a"],
    ["a", "a"],
    ["a", None, "b"],
    ["a", "b", "a", "a"],
    ["a", "a", "a", "a", "a"],
    ["a", "b", "c", "a", "b", "a", "a"],
    ["x"] * 9 + ["y"] * 2,
]


def _assert_same_rule(a, b, traj, prior):
    assert type(a) is type(b) and a.get_params() == b.get_params()
    np.testing.assert_array_equal(a.stopping_times(traj, prior), b.stopping_times(traj, prior))
    p = [None] * len(ANSWERS) if prior is None else prior[: len(ANSWERS)]
    assert [a.should_stop(x, q) for x, q in zip(ANSWERS, p, strict=True)] == [
        b.should_stop(x, q) for x, q in zip(ANSWERS, p, strict=True)
    ]


def _assert_same_stopping(a: CalibratedStopping, b: CalibratedStopping, test, prior):
    for name in ("mix", "budget", "samples", "accuracy"):
        x, y = getattr(a, name), getattr(b, name)
        assert x == y or (np.isnan(x) and np.isnan(y)), name
    traj = replay(test, n_orders=8, random_state=5)
    _assert_same_rule(a.low, b.low, traj, prior)
    _assert_same_rule(a.high, b.high, traj, prior)
    x = evaluate_stopping(a, test, prior=prior, n_orders=8)
    y = evaluate_stopping(b, test, prior=prior, n_orders=8)
    assert (x.accuracy, x.mean_samples) == (y.accuracy, y.mean_samples)


def _assert_same_fit(a: LagrangianStopping, b: LagrangianStopping, x_test):
    assert a.horizon_ == b.horizon_
    for name in ("visits_", "correct_", "moves_", "group_edges_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).dtype == getattr(b, name).dtype
    np.testing.assert_array_equal(a.predict_prior(x_test), b.predict_prior(x_test))
    for lam in (-1.0, -0.01, 0.0, 0.003, 0.02, 0.1, 1.0, a.lam):
        np.testing.assert_array_equal(a.decision_table(lam), b.decision_table(lam))


@pytest.fixture(scope="module", params=[1, 3], ids=["pooled", "prior"])
def lagrangian(request, pools) -> tuple[LagrangianStopping, CalibratedStopping]:
    (train, x_train), (cal, x_cal) = pools["train"], pools["cal"]
    rule = LagrangianStopping(n_groups=request.param, n_orders=16, random_state=3)
    rule.fit(train, x_train)
    prior = rule.predict_prior(x_cal) if request.param > 1 else None
    return rule, calibrate_stopping(rule, cal, 5.0, prior=prior, n_orders=16)


def test_lagrangian_round_trip_decides_exactly(lagrangian, pools, tmp_path):
    rule, calibrated = lagrangian
    test, x_test = pools["test"]
    assert 0.0 < calibrated.mix < 1.0 and calibrated.low.lam != calibrated.high.lam
    save_stopping(calibrated, tmp_path / "s.json")
    loaded = load_stopping(tmp_path / "s.json")
    assert list(tmp_path.iterdir()) == [tmp_path / "s.json"]
    assert loaded.high.visits_ is loaded.low.visits_  # one shared fitted state
    assert loaded.low._cache == {}
    assert (loaded.low.prior_model_ is None) == (rule.n_groups == 1)
    prior = rule.predict_prior(x_test) if rule.n_groups > 1 else None
    _assert_same_stopping(calibrated, loaded, test, prior)
    _assert_same_fit(rule, loaded.low, x_test)
    assert loaded.describe() == calibrated.describe()


def test_bare_lagrangian_round_trip(lagrangian, pools, tmp_path):
    rule, _ = lagrangian
    test, x_test = pools["test"]
    save_stopping(rule, tmp_path / "s.json")
    loaded = load_stopping(tmp_path / "s.json")
    assert loaded.mix == 0.0 and np.isnan([loaded.budget, loaded.samples, loaded.accuracy]).all()
    prior = rule.predict_prior(x_test) if rule.n_groups > 1 else None
    traj = replay(test, n_orders=8, random_state=5)
    _assert_same_rule(rule, loaded.low, traj, prior)
    _assert_same_rule(rule, loaded.high, traj, prior)
    _assert_same_fit(rule, loaded.low, x_test)


def test_stopping_file_is_sparse_json(lagrangian, tmp_path):
    rule, calibrated = lagrangian
    save_stopping(calibrated, tmp_path / "s.json")
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["format"] == "computealloc.stopping" and document["version"] == 1
    assert document["sha256"] == _digest(document["payload"])
    payload = document["payload"]
    assert payload["class"] == "LagrangianStopping"
    assert payload["params"]["low"]["lam"] == calibrated.low.lam
    assert payload["params"]["high"]["lam"] == calibrated.high.lam
    assert (payload["mix"], payload["budget"]) == (calibrated.mix, 5.0)
    visits = payload["state"]["visits_"]
    assert visits["shape"] == list(rule.visits_.shape)
    assert len(visits["gaps"]) == len(visits["values"]) == np.count_nonzero(rule.visits_)
    assert np.count_nonzero(rule.visits_) < rule.visits_.size / 4
    assert all(type(v) is int for v in visits["values"])  # counts are written as integers
    model = payload["state"]["prior_model_"]
    assert model is None if rule.n_groups == 1 else model.startswith("tree\n")


PUBLISHED = [
    BetaRule(max_samples=10),
    DirichletRule(top_k=3),
    EntropyRule(min_samples=3),
    MajorityShareRule(),
    WindowRule(window=3),
]


@pytest.mark.parametrize("rule", PUBLISHED, ids=lambda r: type(r).__name__)
def test_published_rule_round_trip(rule, pools, tmp_path):
    calibrated = calibrate_stopping(rule, pools["cal"][0], 4.0, n_orders=16)
    save_stopping(calibrated, tmp_path / "s.json")
    loaded = load_stopping(tmp_path / "s.json")
    _assert_same_stopping(calibrated, loaded, pools["test"][0], None)
    assert json.loads((tmp_path / "s.json").read_text())["payload"]["state"] == {}


def test_bare_published_rule_round_trip(pools, tmp_path):
    rule = WindowRule(window=4, max_samples=9)
    save_stopping(rule, tmp_path / "s.json")
    payload = json.loads((tmp_path / "s.json").read_text())["payload"]
    assert payload["budget"] is None and payload["samples"] is None and payload["mix"] == 0.0
    loaded = load_stopping(tmp_path / "s.json")
    bare = CalibratedStopping(rule, rule, 0.0, np.nan, np.nan, np.nan)
    _assert_same_stopping(bare, loaded, pools["test"][0], None)
    assert loaded.low.window == 4 and type(loaded.low.window) is int


@pytest.fixture()
def saved_stopping(lagrangian, tmp_path):
    path = tmp_path / "s.json"
    save_stopping(lagrangian[1], path)
    return path


def test_load_policy_on_stopping_file(saved_stopping):
    with pytest.raises(
        PolicyFileError,
        match=r"Policy file .*s.json, field format: the file is a computealloc stopping rule "
        r"\(format 'computealloc.stopping'\), not a computealloc policy; load it with "
        r"load_stopping",
    ):
        load_policy(saved_stopping)


def test_load_stopping_on_policy_file(saved):
    with pytest.raises(
        PolicyFileError,
        match=r"Stopping file .*p.json, field format: the file is a computealloc policy \(format "
        r"'computealloc.policy'\), not a computealloc stopping rule; load it with load_policy",
    ):
        load_stopping(saved)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["payload"].__setitem__("mix", 0.5),
        lambda d: d["payload"]["params"]["high"].__setitem__("lam", 0.5),
        lambda d: d["payload"]["state"]["visits_"]["values"].__setitem__(0, 10**6),
        lambda d: d["payload"].__setitem__("class", "BetaRule"),
        lambda d: d.__setitem__("sha256", "0" * 64),
    ],
    ids=["mix", "lam", "visits", "class", "digest"],
)
def test_stopping_tampering_is_detected(saved_stopping, change):
    _edit(saved_stopping, change)
    with pytest.raises(
        PolicyFileError, match=r"Stopping file .*s.json, field sha256: checksum mismatch"
    ):
        load_stopping(saved_stopping)


def test_stopping_unknown_class_is_refused(saved_stopping):
    def change(d):
        d["payload"]["class"] = "Pipeline"
        _resign(d)

    _edit(saved_stopping, change)
    with pytest.raises(
        PolicyFileError, match=r"s.json, field payload.class: 'Pipeline' is not one of \["
    ):
        load_stopping(saved_stopping)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["params"].pop("high"), r"payload.params.high: Field required"),
        (
            lambda p: p["params"]["low"].__setitem__("alpha", 1.0),
            r"payload.params.low.alpha: Extra inputs are not permitted",
        ),
        (
            lambda p: p["state"]["moves_"]["gaps"].__setitem__(0, -1),
            r"payload.state.moves_.gaps\[0\]: Input should be greater than or equal to 0",
        ),
        (
            lambda p: (
                p["state"]["moves_"]["gaps"].append(10**6),
                p["state"]["moves_"]["values"].append(1),
            ),
            r"payload.state.moves_.gaps: reach index \d+, past the \d+ entries",
        ),
        (
            lambda p: p["state"]["correct_"]["values"].pop(),
            r"payload.state.correct_.values: has \d+ values for \d+ gaps",
        ),
    ],
    ids=["params", "unknown-param", "negative-index", "index-past-end", "values"],
)
def test_stopping_invalid_payload(saved_stopping, change, message):
    def edit(d):
        change(d["payload"])
        _resign(d)

    _edit(saved_stopping, edit)
    with pytest.raises(PolicyFileError, match=rf"Stopping file .*s.json, field {message}"):
        load_stopping(saved_stopping)


def test_stopping_invalid_prior_model(lagrangian, tmp_path):
    rule, _ = lagrangian
    path = tmp_path / "s.json"
    save_stopping(rule, path)

    def change(d):
        d["payload"]["state"]["prior_model_"] = "not a model"
        _resign(d)

    _edit(path, change)
    with pytest.raises(
        PolicyFileError,
        match=r"field payload.state.prior_model_: LightGBM model text, line 1: the text does "
        r"not end with a newline",
    ):
        load_stopping(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x80\x04pickle", "Stopping file .*s.json: is not UTF-8 text"),
        (b'{"format": "something"}', r"field format: is not a computealloc stopping rule"),
        (b"[1, 2]", "s.json: is not a computealloc stopping rule: a JSON list, not an object"),
        (
            b'{"format": "computealloc.stopping", "version": 2}',
            "field version: format version 2; this computealloc reads version 1",
        ),
    ],
    ids=["pickle", "foreign", "list", "version"],
)
def test_foreign_stopping_files(tmp_path, content, message):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    with pytest.raises(PolicyFileError, match=message):
        load_stopping(path)


def test_missing_stopping_file(tmp_path):
    with pytest.raises(PolicyFileError, match=r"Stopping file .*absent.json: cannot be read"):
        load_stopping(tmp_path / "absent.json")


def test_save_unfitted_lagrangian(tmp_path):
    with pytest.raises(ValueError, match="This LagrangianStopping instance is not fitted yet"):
        save_stopping(LagrangianStopping(), tmp_path / "s.json")
    assert not list(tmp_path.iterdir())


def test_save_foreign_rule(tmp_path):
    class MyBeta(BetaRule):
        pass

    with pytest.raises(TypeError, match=r"stopping rules \[.*\] .* Got MyBeta instead"):
        save_stopping(MyBeta(), tmp_path / "s.json")
    mixed = CalibratedStopping(BetaRule(), MyBeta(), 0.5, 2.0, 2.0, 0.5)
    with pytest.raises(TypeError, match="Got CalibratedStopping of BetaRule and MyBeta instead"):
        save_stopping(mixed, tmp_path / "s.json")
    with pytest.raises(TypeError, match="Got Uniform instead"):
        save_stopping(Uniform(), tmp_path / "s.json")


def test_save_settings_of_different_rules(lagrangian, pools, tmp_path):
    rule, _ = lagrangian
    other = copy.copy(rule).fit(pools["cal"][0], pools["cal"][1])  # another fitted state
    message = "share one class and one fitted state"
    for low, high in ((BetaRule(), WindowRule()), (rule, other)):
        with pytest.raises(ValueError, match=message):
            save_stopping(CalibratedStopping(low, high, 0.5, 2.0, 2.0, 0.5), tmp_path / "s.json")


@pytest.mark.parametrize(
    ("rule", "shown"),
    [
        (LagrangianStopping(random_state=np.random.default_rng(0)), "random_state=Generator"),
        (BetaRule(threshold=float("nan")), "threshold=nan in BetaRule"),
        (WindowRule(window=np.int64(3)), "window=np.int64"),
    ],
    ids=["generator", "nan", "numpy-int"],
)
def test_save_unserialisable_params(rule, shown, tmp_path):
    with pytest.raises(
        ValueError, match=rf"parameters are None, int, finite float or str. Got {shown}"
    ):
        save_stopping(rule, tmp_path / "s.json")


@needs_data
def test_real_lagrangian_round_trip(tmp_path):
    from computealloc.data import datasets
    from computealloc.estimation.features import build_features
    from computealloc.fitting.sequential import answer_pools

    log = datasets.load("mot_cascade:gpt-3.5-turbo/date/cot1-40")
    pools = answer_pools(log)
    x = build_features(log).X.loc[list(pools.query_ids)].to_numpy(dtype=np.float64)
    train, cal, test = np.arange(200), np.arange(200, 280), np.arange(280, pools.n_queries)
    rule = LagrangianStopping(n_groups=4, n_orders=16, random_state=0)
    rule.fit(pools.subset(train), x[train])
    calibrated = calibrate_stopping(
        rule, pools.subset(cal), 4.0, prior=rule.predict_prior(x[cal]), n_orders=16
    )
    path = tmp_path / "s.json"
    save_stopping(calibrated, path)
    dense_bytes = 8 * (rule.visits_.size + rule.correct_.size + rule.moves_.size)
    assert path.stat().st_size < dense_bytes / 10
    loaded = load_stopping(path)
    prior = rule.predict_prior(x[test])
    _assert_same_stopping(calibrated, loaded, pools.subset(test), prior)
    _assert_same_fit(rule, loaded.low, x[test])
