"""IBPO target selection: exactness against brute force, constraints, export, sweep."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from computealloc.data.samples import read_samples
from computealloc.estimation.table import OutcomeTable
from computealloc.training.ibpo import (
    export_sft,
    ibpo_allocation_sweep,
    ibpo_select,
    response_utility,
)
from conftest import needs_data

# --------------------------------------------------------------------------- references


def brute_force(u, prompt, group, caps=None, cost=None, total=None):
    """Best objective over all 2^n accept vectors (caps: {group: max count})."""
    u, prompt, group = np.asarray(u), np.asarray(prompt), np.asarray(group)
    best = 0.0
    for bits in itertools.product((0, 1), repeat=len(u)):
        w = np.array(bits, dtype=float)
        if np.bincount(prompt, weights=w).max(initial=0) > 1:
            continue
        if caps and any(w[group == g].sum() > k for g, k in caps.items()):
            continue
        if cost is not None and cost @ w > total + 1e-9:
            continue
        best = max(best, float(u @ w))
    return best


def caps_of(max_share, n_prompts):
    return {g: math.floor(q * n_prompts + 1e-9) for g, q in max_share.items()}


def random_batch(rng, max_prompts=4, max_per_prompt=3, n_groups=2):
    """A tiny batch: utilities with negatives and ties, prompts, groups (<= 10 responses)."""
    n_prompts = int(rng.integers(1, max_prompts + 1))
    per = rng.integers(1, max_per_prompt + 1, size=n_prompts)
    prompt = np.repeat(np.arange(n_prompts), per)[:10]
    n = prompt.size
    u = np.round(rng.uniform(-0.5, 1.0, size=n), 1)
    group = np.array(["short", "long", "mid"])[rng.integers(0, n_groups, size=n)]
    return u, prompt, group


def assert_feasible(sel, prompt, group, caps=None, cost=None, total=None):
    w = sel.weights
    assert ((w >= -1e-12) & (w <= 1 + 1e-12)).all()
    assert np.bincount(prompt, weights=w).max() <= 1 + 1e-9
    for g, k in (caps or {}).items():
        assert w[group == g].sum() <= k + 1e-9
    if cost is not None:
        assert cost @ w <= total + 1e-7


def make_log(n_prompts=12, k_short=2, k_long=2, seed=0, **extra):
    """A synthetic log: each prompt has short and long responses with texts."""
    rng = np.random.default_rng(seed)
    k = k_short + k_long
    qid = np.repeat([f"q{i:02d}" for i in range(n_prompts)], k)
    mode = np.tile(["short"] * k_short + ["long"] * k_long, n_prompts)
    ease = np.repeat(rng.random(n_prompts), k)
    correct = rng.random(qid.size) < np.where(mode == "long", np.sqrt(ease), ease)
    frame = pd.DataFrame(
        {
            "query_id": qid,
            "sample_idx": np.tile(np.arange(k), n_prompts),
            "answer": np.where(correct, "right", "wrong"),
            "correct": correct,
            "prompt": [f"Question {q}?" for q in qid],
            "response": [f"{m} answer {i}" for i, m in enumerate(mode)],
            "mode": mode,
            "tokens": np.where(mode == "long", 400.0, 100.0) + np.arange(qid.size) % 7,
            **extra,
        }
    )
    return read_samples(frame)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# --------------------------------------------------------------------------- ibpo_select


@pytest.mark.parametrize("n_groups", [2, 3])
def test_milp_matches_brute_force_with_share_caps(n_groups):
    rng = np.random.default_rng(n_groups)
    for _ in range(25):
        u, prompt, group = random_batch(rng, n_groups=n_groups)
        n_prompts = prompt.max() + 1
        max_share = {str(g): float(rng.choice([0.0, 0.25, 0.34, 0.5, 1.0])) for g in set(group)}
        max_share.pop(str(group[0]))  # one group stays uncapped
        if not max_share:
            max_share = {str(group[0]): 0.5}
        sel = ibpo_select(u, prompt, group, max_share=max_share)
        caps = caps_of(max_share, n_prompts)
        assert sel.objective == pytest.approx(brute_force(u, prompt, group, caps), abs=1e-9)
        assert_feasible(sel, prompt, group, caps)
        assert set(np.unique(sel.weights)) <= {0.0, 1.0}
        assert sel.objective == pytest.approx(u @ sel.weights)


def test_milp_matches_brute_force_with_cost_budget():
    rng = np.random.default_rng(7)
    for _ in range(25):
        u, prompt, group = random_batch(rng)
        n_prompts = prompt.max() + 1
        cost = rng.integers(1, 9, size=u.size).astype(float)
        budget = float(rng.integers(1, 6)) + 0.37
        total = budget * n_prompts
        sel = ibpo_select(u, prompt, group, cost=cost, budget=budget)
        ref = brute_force(u, prompt, group, cost=cost, total=total)
        assert sel.objective == pytest.approx(ref, abs=1e-9)
        assert_feasible(sel, prompt, group, cost=cost, total=total)
        assert sel.mean_cost == pytest.approx(cost @ sel.weights / n_prompts)


def test_milp_matches_brute_force_with_share_and_budget():
    rng = np.random.default_rng(11)
    for _ in range(20):
        u, prompt, group = random_batch(rng)
        n_prompts = prompt.max() + 1
        cost = np.where(group == "long", 5.0, 1.0) + rng.integers(0, 2, size=u.size)
        max_share = {"long": 0.5} if "long" in group else {"short": 0.5}
        sel = ibpo_select(u, prompt, group, max_share=max_share, cost=cost, budget=2.5)
        caps = caps_of(max_share, n_prompts)
        ref = brute_force(u, prompt, group, caps, cost, 2.5 * n_prompts)
        assert sel.objective == pytest.approx(ref, abs=1e-9)
        assert_feasible(sel, prompt, group, caps, cost, 2.5 * n_prompts)


def test_share_cap_is_floor_of_share_times_prompts():
    # 0.29 * 100 = 28.999999999999996 in float64: 29 long targets are allowed.
    prompt = np.repeat(np.arange(100), 2)
    group = np.tile(["short", "long"], 100)
    u = np.tile([0.1, 1.0], 100)
    sel = ibpo_select(u, prompt, group, max_share={"long": 0.29})
    assert sel.capacity == {"long": 29}
    assert sel.counts == {"long": 29.0, "short": 71.0}
    assert sel.share["long"] == pytest.approx(0.29)


def test_relaxation_is_integral_with_share_caps_only():
    rng = np.random.default_rng(3)
    for _ in range(20):
        u, prompt, group = random_batch(rng, n_groups=3)
        max_share = {str(group[0]): 0.5}
        milp = ibpo_select(u, prompt, group, max_share=max_share)
        lp = ibpo_select(u, prompt, group, max_share=max_share, relax=True)
        assert lp.objective == pytest.approx(milp.objective, abs=1e-9)
        assert milp.prices is None and set(lp.prices) == {str(group[0])}


def test_relaxation_bounds_the_integer_optimum_with_a_budget():
    rng = np.random.default_rng(5)
    for _ in range(20):
        u, prompt, group = random_batch(rng)
        cost = rng.uniform(0.5, 6.0, size=u.size)
        total = 2.0 * (prompt.max() + 1)
        milp = ibpo_select(u, prompt, group, cost=cost, budget=2.0)
        lp = ibpo_select(u, prompt, group, cost=cost, budget=2.0, relax=True)
        assert lp.objective >= milp.objective - 1e-9
        assert_feasible(lp, prompt, group, cost=cost, total=total)
        assert lp.prices["budget"] >= 0.0


def test_share_price_is_a_subgradient_of_the_optimum():
    """The dual price of a cap k lies between the right and left slopes of V(k)."""
    rng = np.random.default_rng(17)
    for _ in range(20):
        n_prompts = 5
        prompt = np.repeat(np.arange(n_prompts), 2)
        group = np.tile(["short", "long"], n_prompts)
        u = np.round(rng.uniform(-0.2, 1.0, size=2 * n_prompts), 2)
        k = int(rng.integers(1, n_prompts))
        value = [brute_force(u, prompt, group, {"long": j}) for j in (k - 1, k, k + 1)]
        lp = ibpo_select(u, prompt, group, max_share={"long": k / n_prompts}, relax=True)
        assert lp.objective == pytest.approx(value[1], abs=1e-9)
        assert value[2] - value[1] - 1e-9 <= lp.prices["long"] <= value[1] - value[0] + 1e-9


def test_budget_price_is_a_subgradient_of_the_relaxed_optimum():
    rng = np.random.default_rng(19)
    delta = 1e-4
    for _ in range(20):
        u, prompt, group = random_batch(rng)
        n_prompts = prompt.max() + 1
        cost = rng.uniform(0.5, 4.0, size=u.size)

        def value(b, u=u, prompt=prompt, group=group, cost=cost):
            return ibpo_select(u, prompt, group, cost=cost, budget=b, relax=True)

        at = value(1.5)
        right = (value(1.5 + delta).objective - at.objective) / (delta * n_prompts)
        left = (at.objective - value(1.5 - delta).objective) / (delta * n_prompts)
        assert right - 1e-6 <= at.prices["budget"] <= left + 1e-6


def test_nonpositive_utility_is_never_accepted():
    sel = ibpo_select([0.0, -1.0, 0.3, 0.0], [0, 0, 1, 1], ["s", "l", "s", "l"], max_share={"l": 1})
    assert sel.weights.tolist() == [0.0, 0.0, 1.0, 0.0]
    none = ibpo_select([-1.0, 0.0], [0, 1], ["s", "l"], max_share={"l": 1}, relax=True)
    assert none.weights.tolist() == [0.0, 0.0] and none.prices == {"l": 0.0}


def test_permutation_invariance_of_the_optimum():
    rng = np.random.default_rng(23)
    prompt = np.repeat(np.arange(64), 8)
    group = np.tile(np.repeat(["short", "long"], 4), 64)
    u = rng.normal(size=prompt.size)
    perm = rng.permutation(prompt.size)
    a = ibpo_select(u, prompt, group, max_share={"long": 0.3})
    b = ibpo_select(u[perm], prompt[perm], group[perm], max_share={"long": 0.3})
    assert a.objective == pytest.approx(b.objective, abs=1e-9)
    assert a.counts == b.counts


def test_labels_of_any_type():
    sel = ibpo_select([1.0, 2.0], [10, 20], [0, 1], max_share={"1": 0.5})
    assert sel.n_prompts == 2 and sel.counts == {"0": 1.0, "1": 1.0}


# --------------------------------------------------------------------------- response_utility


def test_margin_matches_a_plain_loop():
    rng = np.random.default_rng(29)
    prompt = rng.integers(0, 6, size=60)
    group = rng.choice(["a", "b", "c"], size=60)
    reward = rng.integers(0, 2, size=60).astype(float)
    for p in range(6):  # every prompt gets two groups
        prompt[[2 * p, 2 * p + 1]] = p
        group[[2 * p, 2 * p + 1]] = ["a", "b"]
    expected = [
        reward[j]
        - np.mean([reward[k] for k in range(60) if prompt[k] == prompt[j] and group[k] != group[j]])
        for j in range(60)
    ]
    np.testing.assert_allclose(response_utility(reward, prompt, group), expected, atol=1e-12)
    np.testing.assert_array_equal(response_utility(reward, prompt, group, "reward"), reward)


def test_margin_needs_two_groups_per_prompt():
    with pytest.raises(ValueError, match="prompt 'y' has one group only"):
        response_utility([1, 0, 1], ["x", "x", "y"], ["s", "l", "s"])


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "ibpo_select needs a constraint"),
        ({"max_share": {"xl": 0.5}}, ValueError, "names group 'xl', which is not in the data"),
        ({"max_share": {"l": 1.5}}, ValueError, r"share of group 'l'.*\[0, 1\]\. Got 1.5"),
        ({"max_share": {"l": -0.1}}, ValueError, r"must be a float in \[0, 1\]\. Got -0.1"),
        ({"max_share": {"l": True}}, ValueError, r"must be a float in \[0, 1\]\. Got True"),
        ({"max_share": [0.5]}, TypeError, "'max_share' parameter of ibpo_select must be a dict"),
        ({"cost": [1.0, 1.0]}, ValueError, "'cost' and 'budget' parameters of ibpo_select go"),
        ({"budget": 1.0}, ValueError, "'cost' and 'budget' parameters of ibpo_select go"),
        ({"cost": [1.0], "budget": 1.0}, ValueError, r"must hold 2 floats >= 0.*shape \(1,\)"),
        ({"cost": [1.0, -1.0], "budget": 1.0}, ValueError, "minimum -1 instead"),
        ({"cost": [1.0, 1.0], "budget": 0.0}, ValueError, r"'budget'.*\(0, inf\)\. Got 0.0"),
        ({"max_share": {"l": 0.5}, "relax": 1}, TypeError, "'relax' parameter .* a bool"),
    ],
)
def test_ibpo_select_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ibpo_select([1.0, 0.5], ["a", "a"], ["s", "l"], **kwargs)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1.0, np.nan], ["a", "a"], ["s", "l"]), "'utility'.*finite floats. Got shape \\(2,\\)"),
        (([], [], []), r"'utility'.*non-empty 1-D array.*Got shape \(0,\)"),
        (([1.0, 2.0], ["a"], ["s", "l"]), r"'prompt'.*shape \(2,\).*Got shape \(1,\)"),
        (([1.0, 2.0], ["a", "b"], ["s"]), r"'group'.*shape \(2,\).*Got shape \(1,\)"),
    ],
)
def test_ibpo_select_array_errors(args, match):
    with pytest.raises(ValueError, match=match):
        ibpo_select(*args, max_share={"s": 0.5})


def test_response_utility_kind_error():
    with pytest.raises(ValueError, match="'kind' parameter of response_utility must be one of"):
        response_utility([1.0], ["a"], ["s"], kind="advantage")


# --------------------------------------------------------------------------- export_sft


def batch_optimum(records, max_share):
    """Best total utility of one batch over every choice of at most one target per prompt."""
    by_prompt: dict[str, list[dict]] = {}
    for r in records:
        by_prompt.setdefault(r["query_id"], []).append(r)
    caps = caps_of(max_share, len(by_prompt))
    best = 0.0
    for choice in itertools.product(*[[None, *rs] for rs in by_prompt.values()]):
        picked = [r for r in choice if r is not None]
        if all(sum(r["group"] == g for r in picked) <= k for g, k in caps.items()):
            best = max(best, sum(r["utility"] for r in picked))
    return best


def test_export_holds_the_share_in_every_batch_and_is_optimal(tmp_path):
    log = make_log(n_prompts=14, seed=1)
    out = tmp_path / "sft.jsonl"
    summary = export_sft(
        log,
        group_col="mode",
        max_share={"long": 0.5},
        batch_size=4,
        out_path=out,
        keep_rejected=True,
    )
    records = read_jsonl(out)
    assert len(records) == summary.n_written == summary.n_responses == 14 * 4
    frame = pd.DataFrame(records)
    utility = response_utility(frame["reward"], frame["query_id"], frame["group"])
    for rec, u in zip(records, utility, strict=True):
        rec["utility"] = u
    for b, batch in frame.groupby("batch"):
        n_prompts = batch["query_id"].nunique()
        assert n_prompts == (4 if b < 3 else 2)
        chosen = batch[batch["weight"] == 1.0]
        assert (chosen["group"] == "long").sum() <= math.floor(0.5 * n_prompts)
        assert chosen["query_id"].is_unique
        in_batch = [r for r in records if r["batch"] == b]
        got = sum(r["utility"] * r["weight"] for r in in_batch)
        assert got == pytest.approx(batch_optimum(in_batch, {"long": 0.5}), abs=1e-9)
    assert summary.max_batch_share["long"] <= 0.5
    assert summary.n_selected == int((frame["weight"] == 1).sum())
    assert summary.share["long"] == pytest.approx(
        ((frame["weight"] == 1) & (frame["group"] == "long")).sum() / 14
    )
    chosen = frame[frame["weight"] == 1]
    assert summary.selected_reward == pytest.approx(chosen["reward"].mean())


def test_export_records_trace_back_to_the_log(tmp_path):
    log = make_log(n_prompts=10, seed=2)
    out = tmp_path / "sft.jsonl"
    summary = export_sft(log, group_col="mode", max_share={"long": 0.25}, out_path=out)
    records = read_jsonl(out)
    assert len(records) == summary.n_selected == summary.n_written
    samples = log.to_frame().set_index(["query_id", "sample_idx"])
    for r in records:
        row = samples.loc[(r["query_id"], r["sample_idx"])]
        assert r["completion"] == row["response"] and r["prompt"] == row["prompt"]
        assert r["group"] == row["mode"] and r["weight"] == 1.0
        assert r["reward"] == float(row["correct"]) and r["model"] == "default"
    assert set(records[0]) == {
        "prompt",
        "completion",
        "weight",
        "group",
        "reward",
        "query_id",
        "model",
        "sample_idx",
        "batch",
    }


def test_export_selection_does_not_depend_on_keep_rejected(tmp_path):
    log = make_log(n_prompts=20, seed=3)
    kwargs = {"group_col": "mode", "max_share": {"long": 0.3}, "batch_size": 8}
    export_sft(log, out_path=tmp_path / "a.jsonl", **kwargs)
    export_sft(log, out_path=tmp_path / "b.jsonl", keep_rejected=True, **kwargs)
    selected = read_jsonl(tmp_path / "a.jsonl")
    everything = read_jsonl(tmp_path / "b.jsonl")
    assert selected == [r for r in everything if r["weight"] == 1.0]
    assert {r["weight"] for r in everything} == {0.0, 1.0}


def test_export_is_seeded(tmp_path):
    log = make_log(n_prompts=30, seed=4)
    kwargs = {"group_col": "mode", "max_share": {"long": 0.5}, "batch_size": 8}
    export_sft(log, out_path=tmp_path / "a.jsonl", seed=5, **kwargs)
    export_sft(log, out_path=tmp_path / "b.jsonl", seed=5, **kwargs)
    export_sft(log, out_path=tmp_path / "c.jsonl", seed=6, **kwargs, keep_rejected=True)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    batches_5 = {r["query_id"]: r["batch"] for r in read_jsonl(tmp_path / "a.jsonl")}
    batches_6 = {r["query_id"]: r["batch"] for r in read_jsonl(tmp_path / "c.jsonl")}
    assert any(batches_6[q] != b for q, b in batches_5.items())


def test_export_with_a_cost_budget_holds_it_in_every_batch(tmp_path):
    log = make_log(n_prompts=16, seed=5)
    out = tmp_path / "sft.jsonl"
    summary = export_sft(
        log,
        group_col="mode",
        budget=150.0,
        cost_col="tokens",
        batch_size=5,
        out_path=out,
        utility="reward",
    )
    frame = pd.DataFrame(read_jsonl(out))
    tokens = log.samples.set_index(["query_id", "sample_idx"])["tokens"]
    keys = list(zip(frame["query_id"], frame["sample_idx"], strict=True))
    frame["cost"] = tokens.loc[keys].to_numpy()
    sizes = {0: 5, 1: 5, 2: 5, 3: 1}
    for b, batch in frame.groupby("batch"):
        assert batch["cost"].sum() <= 150.0 * sizes[b] + 1e-9
    assert summary.max_batch_cost <= 150.0 + 1e-9
    assert summary.mean_cost == pytest.approx(frame["cost"].sum() / 16)
    assert summary.max_share == {}


def test_export_reports_progress(tmp_path):
    calls = []
    export_sft(
        make_log(n_prompts=10),
        group_col="mode",
        max_share={"long": 0.5},
        batch_size=3,
        out_path=tmp_path / "sft.jsonl",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_export_group_column_may_live_in_the_query_table(tmp_path):
    frame = make_log(n_prompts=8).to_frame()
    frame["level"] = np.repeat(["easy", "hard"], 16)  # constant per query: moves to queries
    log = read_samples(frame)
    assert "level" in log.queries.columns
    summary = export_sft(
        log,
        group_col="level",
        max_share={"hard": 0.5},
        utility="reward",
        out_path=tmp_path / "sft.jsonl",
    )
    assert summary.groups == ("easy", "hard")


def test_summary_to_frame(tmp_path):
    summary = export_sft(
        make_log(), group_col="mode", max_share={"long": 0.5}, out_path=tmp_path / "sft.jsonl"
    )
    frame = summary.to_frame()
    assert frame["group"].tolist() == ["long", "short"]
    assert frame["max_share"].iloc[0] == 0.5 and np.isnan(frame["max_share"].iloc[1])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"group_col": "mood"},
            ValueError,
            r"'group_col' parameter of export_sft must name a "
            r"column of the sample log. Got 'mood'; the log has columns: 'query_id'",
        ),
        (
            {"max_share": {"xl": 0.5}},
            ValueError,
            "names group 'xl', which is not in the data. Groups: 'long', 'short'",
        ),
        ({"max_share": {"long": 2}}, ValueError, r"share of group 'long'.*Got 2 instead"),
        ({"max_share": None}, ValueError, "export_sft needs a constraint"),
        ({"budget": 100.0}, ValueError, "'budget' and 'cost_col' parameters of export_sft go"),
        ({"cost_col": "tokens"}, ValueError, "'budget' and 'cost_col' parameters of export_sft"),
        ({"budget": 1.0, "cost_col": "price"}, ValueError, "'cost_col' parameter of export_sft"),
        ({"budget": -1.0, "cost_col": "tokens"}, ValueError, r"'budget'.*\(0, inf\)"),
        ({"utility": "advantage"}, ValueError, "'utility' parameter of export_sft must be one"),
        (
            {"batch_size": 0},
            ValueError,
            r"'batch_size' parameter of export_sft must be an int "
            r"in \[1, inf\). Got 0",
        ),
        ({"seed": -1}, ValueError, r"'seed' parameter of export_sft must be an int in \[0, inf\)"),
        ({"keep_rejected": "yes"}, TypeError, "'keep_rejected' parameter of export_sft"),
    ],
)
def test_export_errors(tmp_path, kwargs, error, match):
    args = {"group_col": "mode", "max_share": {"long": 0.5}, **kwargs}
    out = tmp_path / "sft.jsonl"
    with pytest.raises(error, match=match):
        export_sft(make_log(), out_path=out, **args)
    assert not out.exists()


@pytest.mark.parametrize(
    ("column", "match"),
    [
        (
            "response",
            r"needs the `response` text for every sample; 1 samples have none "
            r"\(first: query 'q00', sample 1\)",
        ),
        ("prompt", "needs the `prompt` for every sample"),
        ("mode", "needs a group in 'mode' for every sample"),
    ],
)
def test_export_errors_on_missing_values(tmp_path, column, match):
    frame = make_log().to_frame()
    frame[column] = frame[column].astype(object)
    rows = frame["query_id"] == "q00" if column == "prompt" else frame.index == 1
    frame.loc[rows, column] = None
    with pytest.raises(ValueError, match=match):
        export_sft(
            read_samples(frame),
            group_col="mode",
            max_share={"long": 0.5},
            out_path=tmp_path / "o.jsonl",
        )


def test_export_errors_on_unknown_correctness(tmp_path):
    frame = make_log().to_frame().drop(columns="gold")
    frame["correct"] = frame["correct"].astype("boolean")
    frame.loc[2, "correct"] = pd.NA
    with pytest.raises(ValueError, match="needs `correct` for every sample; 1 samples"):
        export_sft(
            read_samples(frame),
            group_col="mode",
            max_share={"long": 0.5},
            out_path=tmp_path / "o.jsonl",
        )


def test_export_errors_on_bad_costs(tmp_path):
    frame = make_log().to_frame()
    frame["price"] = -1.0
    with pytest.raises(ValueError, match="cost column 'price' of export_sft must hold finite"):
        export_sft(
            read_samples(frame),
            group_col="mode",
            budget=1.0,
            cost_col="price",
            out_path=tmp_path / "o.jsonl",
        )


def test_export_needs_a_sample_log(tmp_path):
    with pytest.raises(TypeError, match="'log' parameter of export_sft must be a SampleLog"):
        export_sft("log.jsonl", group_col="mode", max_share={}, out_path=tmp_path / "o.jsonl")


def test_export_margin_needs_both_groups_per_prompt(tmp_path):
    frame = make_log().to_frame()
    frame = frame[~((frame["query_id"] == "q03") & (frame["mode"] == "long"))]
    with pytest.raises(ValueError, match="prompt 'q03' has one group only"):
        export_sft(
            read_samples(frame),
            group_col="mode",
            max_share={"long": 0.5},
            out_path=tmp_path / "o.jsonl",
        )


# --------------------------------------------------------------------------- allocation sweep


def two_mode_table(n=150, seed=0):
    rng = np.random.default_rng(seed)
    p_short = rng.random(n)
    p_long = np.clip(p_short + rng.normal(0.05, 0.2, n), 0, 1)
    return OutcomeTable(
        np.column_stack([p_short, p_long]), [[1.0, 8.0]] * n, ["majority@1", "majority@8"]
    )


def test_sweep_in_batch_selection_matches_top_margins_per_batch():
    table = two_mode_table()
    frame = ibpo_allocation_sweep(table, shares=(0.0, 0.2, 0.5), batch_size=32, seed=3)
    rank = np.empty(150, dtype=int)
    rank[np.random.default_rng(3).permutation(150)] = np.arange(150)
    margin = table.P[:, 1] - table.P[:, 0]
    for q in (0.0, 0.2, 0.5):
        gain = 0.0
        for b in range(5):
            m = np.sort(margin[rank // 32 == b])[::-1]
            cap = math.floor(q * m.size + 1e-9)
            gain += m[:cap][m[:cap] > 0].sum()
        row = frame[(frame["max_share"] == q) & (frame["method"] == "ibpo_in_batch")].iloc[0]
        assert row["accuracy"] == pytest.approx(table.P[:, 0].mean() + gain / 150, abs=1e-12)
        assert row["max_batch_long_share"] <= q + 1e-12


def test_sweep_orders_uniform_ibpo_oracle():
    table = two_mode_table(seed=1)
    frame = ibpo_allocation_sweep(table, shares=(0.1, 0.3, 0.6, 1.0), batch_size=16)
    wide = frame.pivot(index="max_share", columns="method", values="accuracy")
    assert (wide["ibpo_in_batch"] <= wide["oracle"] + 1e-12).all()
    assert (wide["uniform_mix"] <= wide["ibpo_in_batch"] + 1e-12).all()
    cost = frame.pivot(index="max_share", columns="method", values="mean_cost")
    np.testing.assert_allclose(cost["oracle"], cost["ibpo_in_batch"], atol=1e-12)
    np.testing.assert_allclose(cost["uniform_mix"], cost["ibpo_in_batch"], atol=1e-12)
    assert dict(zip(frame["method"], frame["sees_outcomes"], strict=False)) == {
        "ibpo_in_batch": True,
        "uniform_mix": False,
        "oracle": True,
    }


def test_sweep_uniform_mix_formula():
    table = two_mode_table(seed=2)
    frame = ibpo_allocation_sweep(table, shares=[0.4], batch_size=50)
    uniform = frame[frame["method"] == "uniform_mix"].iloc[0]
    q = uniform["long_share"]
    mean = table.P.mean(axis=0)
    assert uniform["accuracy"] == pytest.approx((1 - q) * mean[0] + q * mean[1])
    assert uniform["mean_cost"] == pytest.approx(1 + 7 * q)


def test_sweep_from_a_log_estimates_the_two_modes():
    frame = make_log(n_prompts=40, k_short=4, k_long=4, seed=8).to_frame()
    log = read_samples(frame.drop(columns="mode"))
    out = ibpo_allocation_sweep(log, shares=[0.5], short="majority@1", long="majority@4")
    assert out["cost_unit"].iloc[0] == "samples" and out["n_queries"].iloc[0] == 40
    assert set(out["method"]) == {"ibpo_in_batch", "uniform_mix", "oracle"}


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (
            (),
            {"long": "majority@16"},
            ValueError,
            r"'long' parameter of ibpo_allocation_sweep "
            r"must name an action of the table. Got 'majority@16'",
        ),
        ((), {"short": "majority@8"}, ValueError, "'short' and 'long' parameters .* must differ"),
        (([0.5, 1.2],), {}, ValueError, r"'shares' parameter .* float in \[0, 1\]. Got 1.2"),
        (([],), {}, ValueError, "'shares' parameter of ibpo_allocation_sweep must be a non-empty"),
        ((), {"batch_size": 1.5}, ValueError, "'batch_size' parameter of ibpo_allocation_sweep"),
    ],
)
def test_sweep_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        ibpo_allocation_sweep(two_mode_table(n=10), *args, **kwargs)


def test_sweep_needs_a_table_or_log():
    with pytest.raises(TypeError, match=r"must be an OutcomeTable or a SampleLog\. Got dict"):
        ibpo_allocation_sweep({"P": [[0.1, 0.2]]})


@needs_data
def test_sweep_on_llama_gsm_pot2(shared_data):
    from computealloc.data.datasets import load

    log = load("mot_cascade:llama-2-13b/gsm/pot2", root=shared_data)
    frame = ibpo_allocation_sweep(log, shares=(0.25, 0.5))
    wide = frame.pivot(index="max_share", columns="method", values="accuracy")
    assert (wide["uniform_mix"] < wide["ibpo_in_batch"]).all()
    assert (wide["ibpo_in_batch"] <= wide["oracle"] + 1e-12).all()
    ibpo = frame[frame["method"] == "ibpo_in_batch"].set_index("max_share")
    assert (ibpo["max_batch_long_share"] <= ibpo.index + 1e-12).all()
    assert ibpo.loc[0.25, "accuracy"] == pytest.approx(0.4246, abs=5e-5)
    assert ibpo.loc[0.25, "mean_cost"] == pytest.approx(2.75)
