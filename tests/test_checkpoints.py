"""Checkpoint logs, thinking actions and early exit along the thought (issue 16)."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from computealloc import estimate, solve
from computealloc.cli import app
from computealloc.data.checkpoint_synthetic import synthetic, synthetic_frame
from computealloc.data.checkpoints import (
    CheckpointLog,
    arm_outcomes,
    checkpoint_summary,
    default_arms,
    parse_arm,
    read_checkpoints,
    read_log,
    thinking_log,
)
from computealloc.data.samples import SampleLog, SampleLogError
from computealloc.data.splits import split_samples
from computealloc.evaluation.thinking import calibrate_knob, evaluate_thinking, thinking_verdict

runner = CliRunner()
HEADER = "query_id,sample_idx,think_tokens,answer,correct,confidence,final\n"


def _csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "ckpt.csv"
    path.write_text(header + body)
    return path


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "line", "field", "match"),
    [
        ("q,0,0,3,false,0.2,false\nq,0,256,4,true,0.5,false\nq,0,256,4,true,0.9,true\n", 4,
         "think_tokens", "strictly increasing in think_tokens; expected more than 256, found 256"),
        ("q,0,512,3,false,0.2,false\nq,0,256,4,true,0.5,false\n", 3, "think_tokens",
         "expected more than 512, found 256"),
        ("q,0,0,3,false,0.2,true\nq,0,256,4,true,0.5,false\n", 2, "final",
         "must be its last checkpoint"),
        ("q,0,0,3,false,0.2,true\nq,0,256,4,true,0.5,true\n", 2, "final",
         "must be its last checkpoint"),
        ("q,0,-5,3,false,0.2,false\n", 2, "think_tokens", "expected an integer >= 0, found -5"),
        ("q,0,1.5,3,false,0.2,false\n", 2, "think_tokens", "expected an integer >= 0, found 1.5"),
        ("q,0,,3,false,0.2,false\n", 2, "think_tokens", "expected an integer >= 0, found null"),
        ("q,0,0,3,false,0.2,false\nq,1,0,3,false,1.5,false\n", 3, "confidence",
         "expected a number in \\[0, 1\\] or null, found 1.5"),
        ("q,0,0,3,false,0.2,maybe\n", 2, "final", "expected true, false, 1, 0 or null"),
        ("q,0,0,3,perhaps,0.2,false\n", 2, "correct", "expected true, false, 1, 0 or null"),
    ],
)  # fmt: skip
def test_validation_errors_name_file_line_and_field(
    tmp_path: Path, body: str, line: int, field: str, match: str
) -> None:
    path = _csv(tmp_path, body)
    with pytest.raises(SampleLogError, match=match) as info:
        read_checkpoints(path)
    assert info.value.path == str(path)
    assert info.value.line == line
    assert info.value.field == field
    assert f"ckpt.csv, line {line}, field '{field}'" in str(info.value)


def test_missing_think_tokens_is_named(tmp_path: Path) -> None:
    path = _csv(tmp_path, "q,0,3,false\n", header="query_id,sample_idx,answer,correct\n")
    with pytest.raises(SampleLogError, match=r"field 'think_tokens'.*missing required column"):
        read_checkpoints(path)


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.jsonl"
    rows = [
        {"query_id": "q", "sample_idx": 0, "think_tokens": 0, "answer": "1", "correct": False},
        {"query_id": "q", "sample_idx": 0, "think_tokens": 9, "answer": "2", "correct": True},
        {"query_id": "q", "sample_idx": 0, "think_tokens": 4, "answer": "2", "correct": True},
    ]
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    with pytest.raises(SampleLogError, match=r"ckpt.jsonl, line 3, field 'think_tokens'"):
        read_checkpoints(path)


def test_read_log_tells_checkpoint_logs_from_sample_logs(tmp_path: Path) -> None:
    ckpt = _csv(tmp_path, "q,0,0,3,false,0.2,false\nq,0,100,4,true,0.9,true\n")
    assert isinstance(read_log(ckpt), CheckpointLog)
    plain = tmp_path / "plain.csv"
    plain.write_text("query_id,sample_idx,answer,correct\nq,0,3,false\n")
    assert isinstance(read_log(plain), SampleLog)


def test_save_reads_back(tmp_path: Path) -> None:
    log = synthetic(6, 3, seed=1)
    for name in ("a.csv", "a.jsonl", "a.parquet"):
        log.save(tmp_path / name)
        back = read_checkpoints(tmp_path / name)
        pd.testing.assert_frame_equal(
            back.rows[["query_id", "sample_idx", "think_tokens", "final", "correct"]],
            log.rows[["query_id", "sample_idx", "think_tokens", "final", "correct"]],
            check_dtype=False,
        )


def test_gold_grades_null_correct() -> None:
    frame = pd.DataFrame(
        {"query_id": "q", "sample_idx": 0, "think_tokens": [0, 50], "answer": ["3", "4"],
         "gold": "4"}
    )  # fmt: skip
    log = read_checkpoints(frame)
    assert log.rows["correct"].tolist() == [False, True]


# --------------------------------------------------------------------------- arms


def test_parse_arm_rejects_malformed_specs() -> None:
    assert parse_arm("cap@256") == ("cap", 256.0)
    assert parse_arm("conf@0.95") == ("conf", 0.95)
    for bad in ("cap@", "cap@-1", "stable@0", "conf@1.5", "majority@4", "full@3"):
        with pytest.raises(ValueError, match="must be one of cap@T"):
            parse_arm(bad)


def _one_trace() -> CheckpointLog:
    return read_checkpoints(
        pd.DataFrame(
            {
                "query_id": "q",
                "sample_idx": 0,
                "think_tokens": [0, 100, 200, 300, 350],
                "answer": ["1", "2", "2", "2", "3"],
                "correct": [False, True, True, True, False],
                "confidence": [0.3, 0.6, 0.8, 0.95, 0.9],
                "final": [False, False, False, False, True],
                "answer_tokens": [5, 5, 5, 5, 7],
            }
        )
    )


def test_arms_stop_where_their_rule_says_and_charge_every_probe() -> None:
    traces = _one_trace().traces()
    expect = {
        "cap@0": (0, False, 0 + 5),
        "cap@250": (2, True, 200 + 5),
        "cap@10000": (4, False, 350 + 7),
        "full": (4, False, 357),
        "stable@1": (0, False, 0 + 5),
        "stable@2": (2, True, 200 + 15),
        "stable@3": (3, True, 300 + 20),
        "stable@4": (4, False, 350 + 27),
        "conf@0.7": (2, True, 200 + 15),
        "conf@0.99": (4, False, 350 + 27),
    }
    for spec, (stop, correct, tokens) in expect.items():
        out = arm_outcomes(traces, spec)
        assert (int(out.stop[0]), bool(out.correct[0]), float(out.tokens[0])) == (
            stop,
            correct,
            tokens,
        ), spec


def test_cap_below_the_first_checkpoint_abstains() -> None:
    frame = pd.DataFrame(
        {"query_id": "q", "sample_idx": 0, "think_tokens": [100, 300], "answer": ["2", "2"],
         "correct": [True, True]}
    )  # fmt: skip
    out = arm_outcomes(read_checkpoints(frame).traces(), "cap@50")
    assert out.stop.tolist() == [-1] and not out.correct[0] and out.tokens[0] == 50


def test_conf_arm_needs_confidences() -> None:
    frame = pd.DataFrame(
        {"query_id": "q", "sample_idx": 0, "think_tokens": [0, 1], "answer": ["2", "2"],
         "correct": [True, True]}
    )  # fmt: skip
    with pytest.raises(ValueError, match="needs a `confidence`"):
        arm_outcomes(read_checkpoints(frame).traces(), "conf@0.5")


def _random_log(seed: int) -> CheckpointLog:
    """Small ragged log: 3 queries x 5 traces, 1-5 checkpoints each, null answers, ties."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(3):
        for s in range(5):
            n_ckpt = int(rng.integers(1, 6))
            think = np.sort(rng.choice(np.arange(0, 1000, 50), n_ckpt, replace=False))
            final = bool(rng.random() < 0.7)
            for j, t in enumerate(think):
                answer = rng.choice(["1", "2", "3", None], p=[0.4, 0.3, 0.2, 0.1])
                rows.append(
                    {
                        "query_id": f"q{q}",
                        "sample_idx": s,
                        "think_tokens": int(t),
                        "answer": answer,
                        "correct": answer == "1",
                        "confidence": float(np.round(rng.random(), 2)),
                        "final": final and j == n_ckpt - 1,
                        "answer_tokens": int(rng.integers(0, 20)),
                    }
                )
    return read_checkpoints(pd.DataFrame(rows), grade=False)


def _arm_by_hand(trace: pd.DataFrame, spec: str) -> tuple[str | None, bool, float]:
    """An independent, row-by-row reading of the arm rules."""
    kind, value = parse_arm(spec)
    rows = list(trace.itertuples(index=False))
    if kind == "cap":
        within = [r for r in rows if r.think_tokens <= value]
        if not within:
            return None, False, float(min(value, rows[-1].think_tokens))
        r = within[-1]
        return _answer(r), bool(r.correct), float(r.think_tokens + r.answer_tokens)
    if kind == "full":
        r = rows[-1]
        return _answer(r), bool(r.correct), float(r.think_tokens + r.answer_tokens)
    probes = 0.0
    for j, r in enumerate(rows):
        probes += r.answer_tokens
        if kind == "stable":
            last = [_answer(x) for x in rows[max(0, j - int(value) + 1) : j + 1]]
            done = len(last) == value and last[0] is not None and len(set(last)) == 1
        else:
            done = _answer(r) is not None and r.confidence >= value
        if done or j == len(rows) - 1:
            return _answer(r), bool(r.correct), float(r.think_tokens + probes)
    raise AssertionError


def _answer(row: object) -> str | None:
    value = row.answer  # type: ignore[attr-defined]
    return None if pd.isna(value) else str(value)


def _brute_force(log: CheckpointLog, spec: str, k: int) -> tuple[list[float], list[float]]:
    """Plurality of k traces over every k-subset (ties split evenly; no answer abstains)."""
    acc, cost = [], []
    for _, query in log.rows.groupby("query_id", sort=True):
        per_trace = [_arm_by_hand(t, spec) for _, t in query.groupby("sample_idx", sort=True)]
        total_acc, total_cost, subsets = Fraction(0), 0.0, 0
        for subset in itertools.combinations(per_trace, k):
            votes: dict[str, int] = {}
            right: dict[str, bool] = {}
            for answer, correct, _ in subset:
                if answer is not None:
                    votes[answer] = votes.get(answer, 0) + 1
                    right[answer] = correct
            if votes:
                top = max(votes.values())
                winners = [a for a, v in votes.items() if v == top]
                total_acc += Fraction(sum(right[a] for a in winners), len(winners))
            total_cost += sum(c for _, _, c in subset)
            subsets += 1
        acc.append(float(total_acc / subsets))
        cost.append(total_cost / subsets)
    return acc, cost


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_estimates_match_brute_force(seed: int) -> None:
    log = _random_log(seed)
    arms = ["cap@0", "cap@300", "cap@700", "full", "stable@2", "conf@0.6"]
    sample_log = thinking_log(log, arms)
    actions = [f"{a}/majority@{k}" for a in arms for k in range(1, 6)]
    table = estimate(sample_log, actions, cost="tokens")
    for j, action in enumerate(actions):
        arm, k = action.split("/majority@")
        acc, cost = _brute_force(log, arm, int(k))
        np.testing.assert_allclose(table.P[:, j], acc, atol=1e-12, err_msg=action)
        np.testing.assert_allclose(table.C[:, j], cost, rtol=1e-12, err_msg=action)


def test_estimates_match_monte_carlo_on_the_synthetic_log() -> None:
    log = synthetic(5, 12, seed=3)
    table = estimate(thinking_log(log, ["cap@1024", "stable@2"]), "cap@1024/majority@5,"
                     "stable@2/majority@5", cost="tokens")  # fmt: skip
    rng = np.random.default_rng(0)
    for j, arm in enumerate(["cap@1024", "stable@2"]):
        out = arm_outcomes(log.traces(), arm)
        traces = log.traces()
        for i in range(log.n_queries):
            mine = np.flatnonzero(traces.row == i)
            hits, spent = 0.0, 0.0
            draws = 2000
            for _ in range(draws):
                pick = rng.choice(mine, 5, replace=False)
                keys = traces.key[pick, out.stop[pick]]
                ok = out.correct[pick]
                counts = {c: int((keys == c).sum()) for c in set(keys.tolist()) if c >= 0}
                top = max(counts.values())
                winners = [c for c, v in counts.items() if v == top]
                hits += np.mean([ok[keys == c][0] for c in winners])
                spent += out.tokens[pick].sum()
            assert abs(hits / draws - table.P[i, j]) < 0.05  # 4.5 standard errors
            assert abs(spent / draws - table.C[i, j]) < 0.03 * table.C[i, j]


def test_held_out_halves_keep_a_trace_in_one_half_for_every_arm() -> None:
    log = synthetic(10, 5, seed=2)
    samples = thinking_log(log).samples
    half = split_samples(samples, seed=4)
    by_trace = pd.Series(half).groupby([samples["query_id"], samples["sample_idx"]]).nunique()
    assert (by_trace == 1).all()
    per_arm = pd.Series(half).groupby([samples["model"], samples["query_id"]]).sum()
    assert set(per_arm.unique()) == {2}  # floor(5 / 2) traces of each query in half A


def test_oracle_reads_the_thinking_table() -> None:
    table = estimate(thinking_log(synthetic(30, 4, seed=0)), cost="tokens")
    alloc = solve(table, budget=1000.0)
    assert abs(alloc.cost - 1000.0) < 1e-6
    assert table.cost_unit == "tokens"
    assert "cap@0/majority@1" in table.actions and "full/majority@4" in table.actions


# --------------------------------------------------------------------------- synthetic log


def test_synthetic_traces_settle_as_thinking_goes_on() -> None:
    log = synthetic(150, 4, seed=0)
    summary = checkpoint_summary(log).set_index("action")
    caps = [a for a in default_arms(log) if a.startswith("cap@")]
    same = summary.loc[caps, "same_as_full"].to_numpy()
    conf = summary.loc[caps, "mean_confidence"].to_numpy()
    assert (np.diff(same) >= 0).all() and same[0] < 0.6
    # confidence rises with thinking; past 10k tokens only a few long traces still change (and
    # they end wrong more often, less confidently), so the last steps may dip by noise
    assert (np.diff(conf) >= -0.005).all() and conf[-1] - conf[0] > 0.3
    frame = synthetic_frame(150, 4, seed=0)
    ends = frame[frame["final"]]
    assert (
        ends.loc[~ends["correct"], "think_tokens"].mean()
        > ends.loc[ends["correct"], "think_tokens"].mean()
    )
    pd.testing.assert_frame_equal(frame, synthetic_frame(150, 4, seed=0))


# --------------------------------------------------------------------------- early exit


def test_calibrate_knob_hits_the_budget() -> None:
    costs = np.array([100.0, 400.0, 250.0, 900.0])
    c = calibrate_knob(costs, 300.0)
    assert c is not None and (c.low, c.high) == (2, 1)
    assert (1 - c.mix) * costs[c.low] + c.mix * costs[c.high] == pytest.approx(300.0)
    assert calibrate_knob(costs, 50.0) is None
    top = calibrate_knob(costs, 5000.0)
    assert top is not None and (top.low, top.high, top.mix) == (3, 3, 0.0)


def test_evaluate_thinking_on_a_small_synthetic_log() -> None:
    log = synthetic(150, 4, seed=0)
    results = evaluate_thinking(log, [300.0, 800.0, 1500.0], seeds=2)
    assert set(results["method"]) == {"full", "uniform-cap", "stable", "conf", "learned-exit"}
    assert len(results) == 2 * (1 + 4 * 3)
    done = results[results["accuracy"].notna() & results["budget"].notna()]
    assert ((done["accuracy"] >= 0) & (done["accuracy"] <= 1)).all()
    # calibrated on other queries: the realised test mean is near, not at, the budget
    assert float(np.median(abs(done["mean_cost"] / done["budget"] - 1))) < 0.2
    verdict = thinking_verdict(results)
    assert set(verdict["method"]) == {"uniform-cap", "stable", "conf", "learned-exit"}
    with pytest.raises(ValueError, match="'protocol' parameter of evaluate_thinking"):
        evaluate_thinking(log, [300.0], protocol="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'budget' parameter of evaluate_thinking"):
        evaluate_thinking(log, [-1.0])
    with pytest.raises(ValueError, match="needs at least 2 traces per query; query 'q00000' has 1"):
        evaluate_thinking(synthetic(10, 1, seed=0), [300.0])
    with pytest.raises(ValueError, match="'methods' parameter of evaluate_thinking"):
        evaluate_thinking(log, [300.0], methods=["cap"])


def test_thinking_verdict_reads_a_known_frame() -> None:
    rows = [("full", np.nan, 0.70, 1100.0)]
    rows += [("uniform-cap", b, 0.5 + b / 5000, b) for b in (200.0, 400.0, 600.0)]
    rows += [("stable", b, a, b) for b, a in ((200.0, 0.60), (400.0, 0.72), (600.0, 0.74))]
    frame = pd.DataFrame(rows, columns=["method", "budget", "accuracy", "mean_cost"])
    verdict = thinking_verdict(frame).set_index("method")
    assert verdict.loc["stable", "tokens_to_full"] == pytest.approx(200 + 200 * (0.10 / 0.12))
    assert verdict.loc["stable", "share_of_full"] == pytest.approx((200 + 200 * 0.10 / 0.12) / 1100)
    assert bool(verdict.loc["stable", "reaches_full"])
    assert not bool(
        thinking_verdict(frame, share=0.3).set_index("method").loc["stable", "reaches_full"]
    )
    assert verdict.loc["stable", "wins_vs_cap"] == 3
    assert not bool(verdict.loc["uniform-cap", "reaches_full"])


# --------------------------------------------------------------------------- CLI


def test_inspect_shows_accuracy_and_tokens_by_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    synthetic(12, 3, seed=0, grid=(0, 256, 512, 1024, 2048, 4096)).save(path)
    res = runner.invoke(app, ["inspect", str(path)])
    assert res.exit_code == 0, res.output
    assert "cap@1024" in res.output and "mean_tokens" in res.output and "full" in res.output


def test_inspect_names_a_bad_checkpoint_line(tmp_path: Path) -> None:
    path = _csv(tmp_path, "q,0,5,3,false,0.2,false\nq,0,5,3,false,0.2,false\n")
    res = runner.invoke(app, ["inspect", str(path)])
    assert res.exit_code == 2
    assert "line 3" in res.output and "think_tokens" in res.output


def test_evaluate_runs_end_to_end_on_a_checkpoint_log(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    synthetic(40, 4, seed=0).save(path)
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        ["evaluate", str(path), "--cost", "tokens", "--budgets", "600,1200", "--seeds", "1",
         "--protocol", "held-out", "--methods", "uniform,value,oracle", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = pd.read_csv(out / "results.csv")
    assert set(results["method"]) == {"uniform", "value", "oracle"}
    assert set(results["budget"]) == {600.0, 1200.0}
    uniform = results[results["method"] == "uniform"]
    assert (abs(uniform["mean_cost"] / uniform["budget"] - 1) < 0.25).all()


@pytest.mark.parametrize(
    "name", ["data.checkpoints.log", "data.checkpoints.arms", "data.checkpoint_synthetic"]
)
def test_docstring_examples_run(name: str) -> None:
    import doctest
    import importlib

    module = importlib.import_module(f"computealloc.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_best_of_keeps_the_most_confident_trace() -> None:
    log = read_checkpoints(
        pd.DataFrame(
            {
                "query_id": "q",
                "sample_idx": [0, 0, 1, 1, 2, 2],
                "think_tokens": [0, 100, 0, 100, 0, 100],
                "answer": ["1", "2", "1", "3", "1", "3"],
                "correct": [False, True, False, False, False, False],
                "confidence": [0.1, 0.9, 0.2, 0.4, 0.3, 0.5],
            }
        )
    )
    table = estimate(thinking_log(log, "full"), "best_of@2,majority@3,best_of@3", cost="tokens")
    # best of 2: the confident right trace is in 2 of the 3 pairs; majority of 3: '3' wins
    np.testing.assert_allclose(table.P[0], [2 / 3, 0.0, 1.0])
    np.testing.assert_allclose(table.C[0], [200.0, 300.0, 300.0])


# --------------------------------------------------------------------------- confidence voting


def _scored_log(seed: int) -> SampleLog:
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(4):
        for s in range(6):
            answer = rng.choice(["1", "2", "3", None], p=[0.4, 0.3, 0.2, 0.1])
            rows.append(
                {
                    "query_id": f"q{q}",
                    "sample_idx": s,
                    "answer": answer,
                    "correct": answer == "1",
                    "score": float(rng.random()),
                    "tokens": float(rng.integers(10, 100)),
                }
            )
    return SampleLog.from_frame(pd.DataFrame(rows), grade=False)


def _confidence_by_hand(log: SampleLog, kind: str, k: int) -> list[float]:
    out = []
    for _, pool in log.samples.groupby("query_id", sort=True):
        members = list(pool.sort_values("sample_idx").itertuples(index=False))
        total, draws = 0.0, 0
        for subset in itertools.combinations(members, k):
            if kind == "top_half":
                ranked = sorted(subset, key=lambda r: -r.score)
                voters = [(r, 1.0) for r in ranked[: (k + 1) // 2]]
            else:
                voters = [(r, r.score) for r in subset]
            weight: dict[str, float] = {}
            right: dict[str, bool] = {}
            for r, w in voters:
                if not pd.isna(r.answer):
                    weight[r.answer] = weight.get(r.answer, 0.0) + w
                    right[r.answer] = bool(r.correct)
            if weight:
                top = max(weight.values())
                winners = [a for a, w in weight.items() if w >= top - 1e-12 * abs(top)]
                total += sum(right[a] for a in winners) / len(winners)
            draws += 1
        out.append(total / draws)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confidence_voting_matches_brute_force(seed: int) -> None:
    log = _scored_log(seed)
    actions = [f"{kind}@{k}" for kind in ("weighted", "top_half") for k in range(1, 7)]
    table = estimate(log, actions, cost="tokens")
    for j, action in enumerate(actions):
        kind, k = action.split("@")
        np.testing.assert_allclose(
            table.P[:, j], _confidence_by_hand(log, kind, int(k)), atol=1e-12, err_msg=action
        )
    majority = estimate(log, "majority@3", cost="tokens")
    np.testing.assert_allclose(table.C[:, 2], majority.C[:, 0])


def test_equal_confidences_make_weighted_voting_majority() -> None:
    log = _scored_log(3)
    flat = SampleLog(log.samples.assign(score=0.5), log.queries)
    ks = ",".join(f"{kind}@{k}" for kind in ("weighted", "majority") for k in (1, 2, 3, 5))
    table = estimate(flat, ks)
    np.testing.assert_allclose(table.P[:, :4], table.P[:, 4:], atol=1e-12)


def test_confidence_voting_refuses_pools_too_large_to_enumerate() -> None:
    rows = [
        {"query_id": "q", "sample_idx": s, "answer": str(s % 3), "correct": s % 3 == 0,
         "score": 0.5}
        for s in range(30)
    ]  # fmt: skip
    log = SampleLog.from_frame(pd.DataFrame(rows), grade=False)
    with pytest.raises(ValueError, match=r"C\(30, 15\) = 155117520 exceeds 200000"):
        estimate(log, "weighted@15")


def test_several_models_get_prefixed_arms_and_their_own_split_group() -> None:
    a = synthetic_frame(8, 2, seed=0).assign(model="small")
    b = synthetic_frame(8, 2, seed=1).assign(model="large")
    b["prompt"] = b["query_id"].map(a.groupby("query_id")["prompt"].first())  # same questions
    log = read_checkpoints(pd.concat([a, b], ignore_index=True), grade=False)
    with pytest.raises(ValueError, match="holds 2 models"):
        log.traces()
    samples = thinking_log(log, "cap@512,full").samples
    assert set(samples["model"]) == {"small/cap@512", "small/full", "large/cap@512", "large/full"}
    assert set(samples.groupby("model")["split_group"].first()) == {"small", "large"}
    table = estimate(
        thinking_log(log, "cap@512,full"), "small/cap@512/majority@2,large/full/majority@1"
    )
    assert table.actions == ("small/cap@512/majority@2", "large/full/majority@1")


def test_early_exit_decisions_never_read_test_queries_or_half_b() -> None:
    from computealloc.data.splits import split_queries
    from computealloc.evaluation.thinking import _halves

    log = synthetic(80, 4, seed=5)
    traces = log.traces()
    half_a, _ = _halves(traces, "held-out", 0)
    test_rows = split_queries(traces.qids.size, seed=0).test
    hidden = np.isin(traces.row, test_rows) | ~half_a
    hidden_ids = set(zip(traces.qids[traces.row[hidden]], traces.sample_idx[hidden], strict=True))
    rows = log.rows.copy()
    flip = [(q, s) in hidden_ids for q, s in zip(rows["query_id"], rows["sample_idx"], strict=True)]
    rows.loc[flip, "correct"] = ~rows.loc[flip, "correct"]
    rows.loc[flip, "answer_tokens"] += 500.0  # what the hidden traces cost changes too
    changed = CheckpointLog(rows, log.queries, log.source)
    knobs = ["method", "budget", "knob_low", "knob_high", "mix"]
    before = evaluate_thinking(log, [400.0, 900.0], seeds=1)
    after = evaluate_thinking(changed, [400.0, 900.0], seeds=1)
    pd.testing.assert_frame_equal(before[knobs], after[knobs])
    assert not np.allclose(before["accuracy"], after["accuracy"], equal_nan=True)
    assert not np.allclose(before["mean_cost"], after["mean_cost"], equal_nan=True)


@pytest.mark.parametrize("signal", [0.0, 1.0])
def test_learned_exit_prompt_priors_read_the_difficulty_the_prompt_carries(signal: float) -> None:
    from computealloc.data.checkpoint_synthetic import SyntheticParams
    from computealloc.evaluation.thinking import LearnedExit, prompt_matrix

    log = synthetic(600, 4, seed=3, params=SyntheticParams(prompt_signal=signal))
    traces = log.traces()
    prompts = prompt_matrix(log, traces)
    train = traces.row < 400
    rule = LearnedExit(random_state=0).fit(traces.subset(train), prompts)
    prior = rule.prior_.predict(prompts[400:])[:, 0]  # predicted share of correct final answers
    at = np.arange(traces.n_traces)
    final = traces.correct[at, traces.n_ckpt - 1].astype(float)
    truth = np.bincount(traces.row, weights=final)[400:] / np.bincount(traces.row)[400:]
    r = np.corrcoef(prior, truth)[0, 1] if prior.std() > 0 else 0.0
    if signal == 1.0:  # the prompt's length reads the difficulty exactly (up to rounding)
        assert r > 0.5
    else:  # nothing to read: the prior is near-constant and uncorrelated on new queries
        assert abs(r) < 0.2
    with pytest.raises(ValueError, match="fitted with prompts"):
        rule.gain(traces)
    assert np.isfinite(rule.gain(traces, prompts)[traces.valid]).all()


def test_issue_16_bar_on_a_synthetic_log() -> None:
    """The bar of issue 16 on a synthetic log (5,000 queries x 8 traces, held-out, 3 seeds).

    Some method reaches full thinking's accuracy with at most 35% of its mean tokens and beats
    the uniform cap at equal realised tokens at >= 3 budgets. Measured on synthetic seed 0; on
    seeds 0-4 at this size learned-exit meets it on 3 of 5 (shares 0.334 to 0.380) and
    learned-exit or stable on 4 of 5 (docs/thinking.md, section 4): the bar sits at the edge
    of what early exit reaches on this generator, and this test guards against a regression.
    """
    log = synthetic(5000, 8, seed=0)
    summary = checkpoint_summary(log)
    full = float(summary.loc[summary["action"] == "full", "mean_tokens"].iloc[0])
    shares = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.5, 0.75)
    results = evaluate_thinking(log, [round(s * full, 1) for s in shares], seeds=3)
    verdict = thinking_verdict(results).set_index("method")
    learned = verdict.loc["learned-exit"]
    assert learned["reaches_full"] and learned["share_of_full"] <= 0.35
    assert learned["wins_vs_cap"] >= 3
    assert not verdict.loc["uniform-cap", "reaches_full"]  # the cap alone does not


def test_fit_reads_the_thinking_arms_its_actions_name(tmp_path: Path) -> None:
    """A calibrated early-exit rule, deployable: uniform over ``stable@W`` arms at a budget."""
    path, out = tmp_path / "log.csv", tmp_path / "stable.json"
    log = synthetic(300, 4, seed=1)
    log.save(path)
    actions = ",".join(f"stable@{w}/majority@1" for w in (1, 2, 3, 4))
    budget = float(checkpoint_summary(log).set_index("action").loc["full", "mean_tokens"]) / 3
    flags = ["--method", "uniform", "--cost", "tokens", "--actions", actions]
    res = runner.invoke(
        app, ["fit", str(path), *flags, "--budget", f"{budget:.1f}", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "uniform: stable@" in res.output  # the calibrated mix, not a crash on lam_
    from computealloc.fitting.persist import load_policy

    policy = load_policy(out)
    assert policy.actions_ == tuple(actions.split(","))
    costs = thinking_log(log, [f"stable@{w}" for w in (1, 2, 3, 4)]).samples
    means = costs.groupby("model")["tokens"].mean()
    low, high = policy.actions_[policy.low_], policy.actions_[policy.high_]
    assert means[low.split("/")[0]] <= budget * 1.1 and means[high.split("/")[0]] >= budget * 0.9
    bad = runner.invoke(
        app, ["estimate", str(path), "--actions", "stable@0/majority@1", "-o", str(tmp_path / "t")]
    )
    assert bad.exit_code != 0 and "stable@0" in bad.output and "Traceback" not in bad.output
