"""How much of a question's difficulty its prompt reveals, on the real logs in ``../shared/data``.

For each multi-sample run (at least 300 questions and 8 samples each) and each multi-model
source: the per-question accuracy logit ``log(p / (1 - p))`` with ``p = (correct + 0.5) /
(samples + 1)``, predicted from this project's prompt features
(:func:`computealloc.estimation.features.prompt_features`, signed ``log1p``) by a ridge
regression, 5-fold cross-validated; printed: the Pearson and Spearman correlations of the
out-of-fold predictions with the logit, and R^2. The synthetic checkpoint log's
``prompt_signal`` (0.4) is read off these figures.

Run: ``PYTHONPATH=src python scripts/prompt_signal.py`` (about 20 s; needs ``COMPUTEALLOC_DATA``
or ``../shared/data``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from computealloc.data.datasets import data_root
from computealloc.estimation.features import prompt_features


def measure(name: str, samples: pd.DataFrame) -> None:
    """Print the out-of-fold correlation of predicted and observed accuracy logits."""
    per = samples.groupby("query_id").agg(
        prompt=("prompt", "first"), k=("correct", "sum"), n=("correct", "size")
    )
    p = (per["k"] + 0.5) / (per["n"] + 1)
    y = np.log(p / (1 - p)).to_numpy()
    x = prompt_features(per["prompt"]).to_numpy(np.float64)
    x = np.sign(x) * np.log1p(np.abs(x))
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 20)))
    pred = cross_val_predict(model, x, y, cv=KFold(5, shuffle=True, random_state=0))
    r = float(np.corrcoef(pred, y)[0, 1])
    rho = float(spearmanr(pred, y).statistic)
    r2 = 1 - float(((y - pred) ** 2).mean() / y.var())
    print(
        f"{name}: {len(per)} questions, {per['n'].median():.0f} samples each, "
        f"Pearson {r:.3f}, Spearman {rho:.3f}, R^2 {r2:.3f}"
    )


def main() -> None:
    root = data_root()
    runs = pd.read_csv(root / "mot_cascade" / "samples.csv.gz", low_memory=False)
    keys = ["model", "dataset", "prompt_style", "variant", "greedy"]
    for key, run in runs.groupby(keys, dropna=False):
        if run["greedy"].eq(True).all() or run["query_id"].nunique() < 300:
            continue
        if run.groupby("query_id").size().median() < 8:
            continue
        measure("mot_cascade " + " ".join(str(k) for k in key[:4]), run)
    measure("qwen25math_rm_maj", pd.read_csv(root / "qwen25math_rm_maj" / "samples.csv.gz"))
    measure(
        "zeroeval_math_l5 (40 models)",
        pd.read_csv(root / "zeroeval_math_l5" / "samples.csv.gz"),
    )


if __name__ == "__main__":
    main()
