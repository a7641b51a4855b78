"""summarize: definitions on small logs, a loop-based reference, and every data README table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from computealloc.data import datasets
from computealloc.data.samples import SampleLog
from computealloc.estimation.summary import summarize
from conftest import needs_data


def _log(rows: list[tuple], **extra: list) -> SampleLog:
    """A log from (query_id, sample_idx, answer, correct) rows, model 'm' unless given."""
    df = pd.DataFrame(rows, columns=["query_id", "sample_idx", "answer", "correct"])
    df = df.assign(answer=df["answer"].astype("str"), correct=df["correct"].astype("boolean"))
    return SampleLog.from_frame(df.assign(**extra), grade=False)


def _row(log: SampleLog) -> pd.Series:
    table = summarize(log)
    assert len(table) == 1
    return table.iloc[0]


def test_majority_tie_goes_to_answer_seen_first():
    # q0: 'b' (idx 0, wrong) and 'a' (idx 1, right) tie 2-2; 'b' was seen first.
    # q1: 'a' wins 2-1 despite 'b' at idx 0.
    log = _log([("q0", 0, "b", False), ("q0", 1, "a", True), ("q0", 2, "a", True),
                ("q0", 3, "b", False), ("q1", 0, "b", False), ("q1", 1, "a", True),
                ("q1", 2, "a", True)])  # fmt: skip
    assert _row(log)["majority_acc"] == 0.5


def test_single_acc_is_mean_of_per_query_means():
    log = _log([("q0", 0, "1", True), ("q1", 0, "1", False), ("q1", 1, "1", False),
                ("q1", 2, "1", False), ("q1", 3, "1", False)])  # fmt: skip
    row = _row(log)
    assert row["single_acc"] == 0.5
    assert row["samples_per_q"] == 2.5
    assert row["questions"] == 2


def test_missing_answer_breaks_agreement_and_is_not_a_vote():
    log = _log([("q0", 0, "7", True), ("q0", 1, None, False),
                ("q1", 0, None, False), ("q1", 1, None, False),
                ("q2", 0, "3", False), ("q2", 1, "3", False)])  # fmt: skip
    row = _row(log)
    assert row["all_agree"] == pytest.approx(1 / 3)
    assert row["majority_acc"] == pytest.approx(1 / 3)  # q0 by '7'; q1 has no vote: wrong
    assert row["no_answer"] == pytest.approx(3 / 6)


def test_single_sample_without_answer_keeps_its_own_label():
    # RouteLLM-like: answers not recorded, one labelled sample per query: majority of one.
    log = _log([("q0", 0, None, True), ("q1", 0, None, False), ("q2", 0, None, True)])
    row = _row(log)
    assert row["majority_acc"] == row["single_acc"] == pytest.approx(2 / 3)
    assert np.isnan(row["all_agree"])
    assert np.isnan(row["no_answer"])


def test_answerless_multi_sample_majority_is_not_estimable():
    # RouterDC-like: success rates expanded to samples without answers.
    log = _log([("q0", 0, None, True), ("q0", 1, None, False), ("q1", 0, None, False),
                ("q1", 1, None, False)])  # fmt: skip
    row = _row(log)
    assert row["single_acc"] == 0.25
    assert np.isnan(row["majority_acc"])
    assert np.isnan(row["all_agree"])


def test_unlabelled_scores_give_mean_score_not_accuracy():
    log = _log([("q0", 0, None, None), ("q1", 0, None, None)], score=[0.2, 0.6])
    row = _row(log)
    assert np.isnan(row["single_acc"])
    assert row["mean_score"] == pytest.approx(0.4)


def test_dataset_splits_rows_and_optional_columns_appear():
    log = _log([("a0", 0, "1", True), ("b0", 0, "1", False), ("b1", 0, "2", True)],
               dataset=["x", "y", "y"], chars=[10.0, 20.0, 40.0])  # fmt: skip
    table = summarize(log)
    assert table["dataset"].tolist() == ["x", "y"]
    assert table["questions"].tolist() == [1, 2]
    assert table["mean_chars"].tolist() == [10.0, 30.0]
    assert "mean_score" not in table.columns
    assert table["mean_tokens"].isna().all()


def test_rejects_a_frame():
    with pytest.raises(TypeError, match="The 'log' parameter of summarize must be a SampleLog"):
        summarize(pd.DataFrame({"query_id": ["q"], "sample_idx": [0]}))  # type: ignore[arg-type]


def _reference(samples: pd.DataFrame) -> dict[str, float]:
    """The README definitions written as a plain loop over queries (one model, answers known)."""
    accs, majs, agrees, sizes = [], [], [], []
    for _, q in samples.sort_values("sample_idx").groupby("query_id"):
        answers, labels = q["answer"].tolist(), q["correct"].tolist()
        accs.append(np.mean(labels))
        sizes.append(len(q))
        present = [a for a in answers if not pd.isna(a)]
        agrees.append(len(present) == len(answers) and len(set(present)) == 1)
        if not present:
            majs.append(labels[0] if len(q) == 1 else False)
            continue
        counts = Counter(present)
        best = max(counts.values())
        winner = next(a for a in present if counts[a] == best)
        majs.append(labels[answers.index(winner)])
    return {
        "questions": len(sizes),
        "samples_per_q": float(np.mean(sizes)),
        "single_acc": float(np.mean(accs)),
        "majority_acc": float(np.mean(majs)),
        "all_agree": float(np.mean(agrees)),
    }


@pytest.mark.parametrize("seed", range(5))
def test_matches_loop_reference_on_random_logs(seed):
    rng = np.random.default_rng(seed)
    n = 400
    query = rng.integers(0, 60, n)
    answer = rng.choice(np.array(["1", "2", "3", None], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1])
    gold = rng.choice(["1", "2"], 60)[query]
    df = pd.DataFrame(
        {
            "query_id": [f"q{i:02d}" for i in query],
            "sample_idx": pd.Series(query).groupby(query).cumcount().to_numpy(),
            "answer": pd.Series(answer, dtype="str"),
            "correct": pd.Series(answer == gold, dtype="boolean"),
        }
    )
    got = summarize(SampleLog.from_frame(df, grade=False)).iloc[0]
    for key, want in _reference(df).items():
        assert got[key] == pytest.approx(want, abs=1e-12), key


# ---------------------------------------------------------------------------------------------
# The README table of every source under the data root, compared row by row.


def _readme_table(root: Path, source: str) -> pd.DataFrame:
    """The markdown table under '## Stats' of a source README, as text cells."""
    text = (root / source / "README.md").read_text(encoding="utf-8")
    lines = [ln for ln in text[text.index("## Stats") :].splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return pd.DataFrame(cells[2:], columns=cells[0])


def _assert_printed(got: float, printed: str, decimals: int, what: str) -> None:
    """``got`` rounds to the README's ``printed`` figure at ``decimals`` decimals."""
    want = float(printed)
    if np.isnan(want):
        assert np.isnan(got), what
    else:
        assert abs(got - want) <= 0.5 * 10.0**-decimals + 1e-9, f"{what}: {got} vs {printed}"


@pytest.fixture(scope="module")
def summaries(shared_data: Path) -> dict[str, pd.DataFrame]:
    return {
        s.name: summarize(datasets.load(s.name, root=shared_data, repeats="keep")).set_index(
            ["model", "dataset"]
        )
        for s in datasets.sources()
    }


def _mot_label(row: pd.Series) -> str:
    variant = row["variant"].replace("=", "").lower()
    suffix = (f"-{variant}" if variant else "") + ("-greedy" if row["greedy"] == "True" else "")
    return f"{row['model']}/{row['task']}/{row['prompt']}{suffix}"


@needs_data
def test_mot_cascade_matches_readme(shared_data, summaries):
    readme = _readme_table(shared_data, "mot_cascade")
    table = summaries["mot_cascade"]
    assert len(readme) == len(table) == 69
    for _, want in readme.iterrows():
        label = _mot_label(want)
        got = table.loc[(label, want["task"])]
        assert got["questions"] == int(want["questions"]), label
        _assert_printed(got["samples_per_q"], want["samples_per_q"], 2, label)
        for col in ("single_acc", "majority_acc", "all_agree"):
            _assert_printed(got[col], want[col], 4, f"{label} {col}")
        _assert_printed(got["mean_chars"], want["mean_gen_chars"], 1, label)


@needs_data
def test_qwen25math_rm_maj_matches_readme(shared_data, summaries):
    want = _readme_table(shared_data, "qwen25math_rm_maj").iloc[0]
    got = summaries["qwen25math_rm_maj"].loc[(want["model"], want["dataset"])]
    assert got["questions"] == int(want["questions"])
    for col, decimals in [("samples_per_q", 0), ("single_acc", 4), ("majority_acc", 4),
                          ("all_agree", 4), ("mean_tokens", 1), ("mean_chars", 1)]:  # fmt: skip
        _assert_printed(got[col], want[col], decimals, col)
    samples = datasets.load("qwen25math_rm_maj", root=shared_data).samples
    best = samples.sort_values(["query_id", "score", "sample_idx"], ascending=[True, False, True])
    best_of_8 = best.drop_duplicates("query_id")["correct"].mean()
    _assert_printed(best_of_8, want["rm_best_of_8_acc"], 4, "rm_best_of_8_acc")
    _assert_printed(samples.groupby("query_id")["correct"].any().mean(), want["pass@8"], 4, "pass")


@needs_data
def test_routellm_matches_readme(shared_data, summaries):
    readme = _readme_table(shared_data, "routellm")
    table = summaries["routellm"]
    frame = datasets.load("routellm", root=shared_data).to_frame()
    for _, want in readme.iterrows():
        run = want["task"].split()[0]
        if want["model"].startswith("oracle"):
            wide = frame[frame["dataset"] == run].pivot(
                index="query_id", columns="model", values="correct"
            )
            _assert_printed(wide.any(axis=1).mean(), want["single_acc"], 4, f"oracle {run}")
            continue
        got = table.loc[(want["model"], run)]
        assert got["questions"] == int(want["questions"])
        assert got["samples_per_q"] == float(want["samples_per_q"])
        _assert_printed(got["single_acc"], want["single_acc"], 4, want["model"])
        assert got["majority_acc"] == got["single_acc"]  # README: '= single'
        chars = "nan" if want["mean_response_chars"] == "n/a" else want["mean_response_chars"]
        _assert_printed(got["mean_chars"], chars, 1, want["model"])


@needs_data
def test_routerdc_matches_readme(shared_data, summaries):
    readme = _readme_table(shared_data, "routerdc")
    table = summaries["routerdc"]
    samples = datasets.load("routerdc", root=shared_data).to_frame()
    per_pair = (
        samples.assign(
            p=samples["correct"].astype("Float64").fillna(samples["score"]).astype("float64")
        )
        .groupby(["dataset", "query_id", "model"])["p"]
        .mean()
    )
    for _, want in readme.iterrows():
        run = want["file"]
        rows = table.xs(run, level="dataset")
        # Soft-score files carry no label: their accuracy is the mean soft score.
        acc = rows["single_acc"].fillna(rows["mean_score"])
        short = {m.split("/")[-1]: a for m, a in acc.items()}
        for pair in want["model_means"].split("; "):
            model, mean = pair.split("=")
            _assert_printed(short[model], mean, 3, f"{run} {model}")
        assert (rows["questions"] == int(want["questions"])).all()
        assert len(rows) == int(want["models"])
        _assert_printed(acc.mean(), want["mean_acc"], 4, f"{run} mean_acc")
        _assert_printed(acc.max(), want["best_single_model"], 4, f"{run} best")
        oracle = per_pair.loc[run].groupby(level="query_id").max().mean()
        _assert_printed(oracle, want["oracle_best_model_per_q"], 4, f"{run} oracle")


def _assert_zeroeval_rows(readme: pd.DataFrame, table: pd.DataFrame) -> None:
    """Questions, accuracy and no-answer share of every model row (1 greedy sample each)."""
    assert sorted(readme["model"]) == sorted(table.index)
    for _, want in readme.iterrows():
        got = table.loc[want["model"]]
        assert got["questions"] == int(want["questions"]), want["model"]
        _assert_printed(got["single_acc"], want["acc"], 4, want["model"])
        _assert_printed(got["no_answer"], want["no_answer"], 4, want["model"])


@needs_data
def test_zeroeval_gsm8k_matches_readme(shared_data, summaries):
    readme = _readme_table(shared_data, "zeroeval_gsm8k")
    table = summaries["zeroeval_gsm8k"].droplevel("dataset")
    _assert_zeroeval_rows(readme, table)
    for _, want in readme.iterrows():
        got = table.loc[want["model"]]
        # Printed to 6 significant digits (302.021). For 4 of the 42 models the README mean is
        # one character, over all responses, away from the mean of output_chars, so the
        # tolerance adds 1 / questions to the printed precision.
        printed = want["mean_output_chars"]
        tol = 0.5 * 10.0 ** -(6 - len(printed.split(".")[0])) + 1 / got["questions"]
        assert abs(got["mean_chars"] - float(printed)) <= tol, want["model"]


@needs_data
def test_zeroeval_math_l5_matches_readme(shared_data, summaries):
    readme = _readme_table(shared_data, "zeroeval_math_l5")
    table = summaries["zeroeval_math_l5"].droplevel("dataset")
    _assert_zeroeval_rows(readme, table)
    for _, want in readme.iterrows():
        _assert_printed(table.loc[want["model"], "mean_chars"], want["mean_chars"], 1, "chars")


def test_vote_acc_is_the_estimators_majority_at_n_with_several_correct_answers():
    from computealloc.estimation.estimate import estimate

    # q0: {A, A, B, C}, B and C correct (two valid expressions): A wins the vote of all four.
    # q1: {B, C, C, D}: C correct wins. The estimator and inspect must agree (0.5).
    rows = [("q0", i, a, a in "BC") for i, a in enumerate("AABC")]
    rows += [("q1", i, a, a == "C") for i, a in enumerate("BCCD")]
    log = _log(rows)
    assert _row(log)["vote_acc"] == pytest.approx(0.5)
    assert _row(log)["vote_acc"] == pytest.approx(estimate(log, "majority@4").P.mean())
