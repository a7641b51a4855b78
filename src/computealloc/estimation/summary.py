"""Per-model figures of a sample log: the table ``computealloc inspect`` prints.

The definitions are those of the data READMEs under ``../shared/data``, so the figures of every
public source can be checked against its README table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from computealloc.data.samples import SampleLog
from computealloc.estimation.estimate import cluster_samples, majority_accuracy, query_golds

__all__ = ["summarize"]

_QUERY = "_query"
_PER_QUERY = ("dataset", "chars")


def _grouped_samples(log: SampleLog) -> tuple[pd.DataFrame, list[str]]:
    """Sorted samples with a query code, and the keys: model, plus dataset when known.

    ``dataset`` and ``chars`` are taken from the query table where the log keeps them there
    (it does when they are constant per query).
    """
    queries = log.queries.set_index("query_id")
    moved = [c for c in _PER_QUERY if c not in log.samples.columns and c in queries.columns]
    samples = log.samples.assign(**{c: log.samples["query_id"].map(queries[c]) for c in moved})
    keys = ["model", "dataset"] if "dataset" in samples.columns else ["model"]
    samples = samples.sort_values([*keys, "query_id", "sample_idx"], kind="stable")
    qid = samples.groupby([*keys, "query_id"], sort=False, dropna=False).ngroup()
    return samples.assign(**{_QUERY: qid.to_numpy()}).reset_index(drop=True), keys


def _plurality_correct(samples: pd.DataFrame) -> pd.Series:
    """Per query with an answer: the label of its most common answer, ties to the first seen.

    Returns a float Series (1.0, 0.0, or NaN when that answer carries no label) indexed by the
    query code.
    """
    answered = samples.loc[samples["answer"].notna(), [_QUERY, "answer", "sample_idx", "correct"]]
    votes = answered.groupby([_QUERY, "answer"], sort=False).agg(
        n=("sample_idx", "size"), first=("sample_idx", "min"), correct=("correct", "first")
    )
    votes = votes.reset_index().sort_values(
        [_QUERY, "n", "first"], ascending=[True, False, True], kind="stable"
    )
    top = votes.drop_duplicates(_QUERY).set_index(_QUERY)["correct"]
    return top.astype("Float64").astype("float64")


def _per_query(samples: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per query: its group keys, sample count, accuracy, answer agreement, majority."""
    correct = samples["correct"].astype("Float64").astype("float64")
    q = (
        samples.assign(correct=correct)
        .groupby(_QUERY, sort=True)
        .agg(
            **{k: (k, "first") for k in keys},
            n=("sample_idx", "size"),
            acc=("correct", "mean"),
            first_correct=("correct", "first"),
            answered=("answer", "count"),
            distinct=("answer", "nunique"),
        )
    )
    group_answered = q.groupby(keys, sort=False, dropna=False)["answered"].transform("sum") > 0
    no_vote = np.where(q["n"] == 1, q["first_correct"], np.where(group_answered, 0.0, np.nan))
    plurality = _plurality_correct(samples).reindex(q.index)
    q["majority"] = plurality.where(q["answered"] > 0, no_vote)
    agree = ((q["answered"] == q["n"]) & (q["distinct"] == 1)).astype("float64")
    q["agree"] = agree.where(group_answered)
    return q


def _vote_accuracy(log: SampleLog, samples: pd.DataFrame) -> pd.Series:
    """Per query code: the exact majority@n of :func:`computealloc.estimation.estimate.estimate`.

    The vote of all ``n`` samples of the query, over the estimator's answer clusters
    (answer equivalence), ties split uniformly at random.
    """
    n_queries = int(samples[_QUERY].to_numpy().max(initial=-1)) + 1
    out = pd.Series(np.nan, index=pd.RangeIndex(n_queries))
    for model, part in samples.groupby("model", sort=False):
        codes = part.groupby("query_id", sort=True)[_QUERY].first()
        qids = codes.index.to_numpy(dtype=object)
        try:
            pools = cluster_samples(part, str(model), qids, golds=query_golds(log, qids))
        except ValueError:  # unlabelled answers: the vote's correctness is unknown
            continue
        ks = np.unique(pools.n)
        acc = majority_accuracy(
            pools.gold, pools.others, pools.abstain, ks, others_correct=pools.others_correct
        )
        out[codes.to_numpy()] = acc[np.arange(len(qids)), np.searchsorted(ks, pools.n)]
    return out


def summarize(log: SampleLog) -> pd.DataFrame:
    """Per-model figures of a sample log.

    Parameters
    ----------
    log : SampleLog
        Any sample log; a ``dataset`` column (in the samples or the query table) splits each
        model's row per dataset.

    Returns
    -------
    DataFrame
        One row per model (per model and dataset when the log has a dataset column), sorted,
        with columns:

        - ``questions``: number of queries;
        - ``samples_per_q``: mean samples per query (samples without an answer count);
        - ``single_acc``: single-sample accuracy, the mean over queries of each query's share
          of correct samples (NaN where no sample carries a label);
        - ``majority_acc``: share of queries whose majority answer is correct: the most common
          non-null answer, ties to the answer seen first by ``sample_idx``, correct if that
          answer's label is. A query without any answer counts as wrong, unless it has a
          single sample, whose own label then counts (majority of one). NaN where the log
          records no answers and queries have several samples (not estimable). This is the
          data READMEs' figure; the estimators split ties uniformly at random instead;
        - ``vote_acc``: the exact majority@n of :func:`computealloc.estimation.estimate.estimate`
        (the
          vote of all of a query's samples over answer clusters by equivalence, ties split
          uniformly), averaged over queries; NaN where ``majority_acc`` is;
        - ``all_agree``: share of queries whose samples all have the same non-null answer (a
          sample without an answer breaks agreement); NaN where no answers are recorded;
        - ``no_answer``: share of samples without an answer (NaN where none are recorded);
        - ``mean_tokens``: mean ``tokens`` per sample (NaN when unknown);
        - ``mean_chars``: mean ``chars`` per sample, when the log has that column;
        - ``mean_score``: mean ``score`` per sample, when any sample has one (e.g. the soft
          correctness of routerdc's likelihood-scored tasks, or reward-model scores).

    Examples
    --------
    >>> from computealloc.data import datasets
    >>> summarize(datasets.load("mot_cascade:llama-2-13b/gsm/pot2"))  # doctest: +SKIP
                      model dataset  questions  samples_per_q  single_acc  majority_acc ...
    0  llama-2-13b/gsm/pot2     gsm        400           24.0      0.3288        0.4175 ...
    """
    if not isinstance(log, SampleLog):
        raise TypeError(
            "The 'log' parameter of summarize must be a SampleLog (see read_samples). "
            f"Got {type(log).__name__} instead."
        )
    samples, keys = _grouped_samples(log)
    per_query = _per_query(samples, keys)
    vote = _vote_accuracy(log, samples).reindex(per_query.index)
    per_query["vote"] = vote.where(per_query["majority"].notna() | (per_query["n"] == 1))
    by_query = per_query.groupby(keys, sort=True, dropna=False)
    table = by_query.agg(
        questions=("n", "size"),
        samples_per_q=("n", "mean"),
        single_acc=("acc", "mean"),
        majority_acc=("majority", "mean"),
        vote_acc=("vote", "mean"),
        all_agree=("agree", "mean"),
    )
    answered = by_query["answered"].sum() > 0
    by_sample = samples.assign(_no_answer=samples["answer"].isna()).groupby(
        keys, sort=True, dropna=False
    )
    table["no_answer"] = by_sample["_no_answer"].mean().where(answered)
    table["mean_tokens"] = by_sample["tokens"].mean()
    if "chars" in samples.columns:
        table["mean_chars"] = by_sample["chars"].mean()
    if samples["score"].notna().any():
        table["mean_score"] = by_sample["score"].mean()
    return table.reset_index()
