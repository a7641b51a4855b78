"""Tests of computealloc.fitting.lgbm_text: real LightGBM model texts pass, cut or corrupted ones
fail
with the line at fault, and nothing that passes can take LightGBM down."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from computealloc.fitting.lgbm_text import ModelTextError, check_model_text


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 4))
    return x, x[:, 0] + 0.3 * x[:, 1] ** 2 + 0.05 * rng.random(n)


def _models() -> dict[str, lgb.Booster]:
    x, y = _data()
    with_nan = x.copy()
    with_nan[::7, 1] = np.nan
    frame = pd.DataFrame(x, columns=list("abcd"))
    frame["cat"] = pd.Categorical(np.random.default_rng(1).integers(0, 6, len(x)))
    y_cat = y + (frame["cat"].cat.codes.to_numpy() % 2)
    quiet = {"verbose": -1, "n_jobs": 1}
    return {
        "regression": lgb.LGBMRegressor(n_estimators=40, num_leaves=8, **quiet).fit(x, y),
        "deep": lgb.LGBMRegressor(n_estimators=5, num_leaves=31, min_child_samples=2, **quiet).fit(
            x, y
        ),
        "constant": lgb.LGBMRegressor(n_estimators=3, **quiet).fit(x, np.zeros(len(x))),
        "cross_entropy": lgb.LGBMRegressor(objective="cross_entropy", n_estimators=10, **quiet).fit(
            x, (y - y.min()) / np.ptp(y)
        ),
        "binary": lgb.LGBMClassifier(n_estimators=10, **quiet).fit(x, y > np.median(y)),
        "multiclass": lgb.LGBMClassifier(n_estimators=10, **quiet).fit(
            x, np.digitize(y, [0.4, 0.8])
        ),
        "missing": lgb.LGBMRegressor(n_estimators=10, **quiet).fit(with_nan, y),
        "categorical": lgb.LGBMRegressor(
            n_estimators=10, min_data_per_group=5, cat_smooth=1, **quiet
        ).fit(frame, y_cat),
    }


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {name: model.booster_.model_to_string() for name, model in _models().items()}


def test_real_models_pass_and_report_their_shape(texts):
    for name, text in texts.items():
        booster = lgb.Booster(model_str=text)
        info = check_model_text(text)
        assert info.n_trees == booster.num_trees(), name
        assert info.n_features == booster.num_feature(), name
        assert info.num_tree_per_iteration == booster.num_model_per_iteration(), name
    assert re.search(r"\nnum_cat=[1-9]", texts["categorical"])  # categorical splits checked
    assert "\nnum_leaves=1\n" in texts["constant"]
    assert check_model_text(texts["multiclass"]).num_class == 3


def _cut_points(text: str) -> list[int]:
    """Every 97th offset, every offset around each tree boundary and in the last 300."""
    points = set(range(0, len(text) - 1, 97)) | set(range(max(0, len(text) - 300), len(text)))
    for match in re.finditer(r"Tree=\d+|end of trees|tree_sizes=|end of parameters", text):
        points |= set(range(max(0, match.start() - 3), min(len(text), match.end() + 3)))
    return sorted(points)


@pytest.mark.parametrize("name", ["regression", "binary", "multiclass", "categorical", "constant"])
def test_every_truncation_fails_cleanly_with_a_line(texts, name):
    text = texts[name]
    n_lines = text.count("\n") + 1
    for cut in _cut_points(text):
        with pytest.raises(ModelTextError, match=r"^line (\d+): ") as caught:
            check_model_text(text[:cut])
        line = int(re.match(r"line (\d+)", str(caught.value)).group(1))
        assert 1 <= line <= n_lines, (cut, str(caught.value))


def _edit_line(text: str, key: str, value: str, occurrence: int = 0) -> str:
    starts = [m.start() + 1 for m in re.finditer(rf"\n{key}=", text)]
    start = starts[occurrence]
    end = text.index("\n", start)
    return text[:start] + f"{key}={value}" + text[end:]


def _resized(text: str) -> str:
    body = text[text.index("\nTree=0\n") + 1 : text.index("end of trees")]
    starts = [m.start() for m in re.finditer(r"(?m)^Tree=\d+$", body)]
    sizes = np.diff([*starts, len(body)])
    return _edit_line(text, "tree_sizes", " ".join(map(str, sizes)))


CORRUPTIONS = [
    (lambda t: t.replace("version=v4", "version=v9"), r"version must be one of"),
    (lambda t: t.replace("num_class=1\n", ""), r"the header lacks num_class"),
    (
        lambda t: t.replace("max_feature_idx=3", "max_feature_idx=3\nmax_feature_idx=3"),
        "repeated key",
    ),
    (
        lambda t: t.replace("max_feature_idx=3", "max_feature_idx=-1"),
        r"max_feature_idx must be an int",
    ),
    (lambda t: t.replace("max_feature_idx=3", "max_feature_idx=5"), "feature_names has 4 entries"),
    (lambda t: t.replace("objective=regression", "objective=regression\nlinear=1"), "linear trees"),
    (lambda t: t.replace("tree_sizes=", "tree_sizes=-"), "tree_sizes must be positive ints"),
    (
        lambda t: t.replace("tree_sizes=", "tree_sizes=5 "),
        "Tree=0 does not end where tree_sizes says",
    ),
    (lambda t: t.replace("\nTree=1\n", "\nTree=7\n"), "no 'Tree=1' line there"),
    (lambda t: _resized(_edit_line(t, "leaf_value", "0.1 0.2")), "leaf_value has 2 values, but"),
    (lambda t: _resized(_edit_line(t, "left_child", "1 -1 -2 -3 -4 -5 -6")), "do not form a tree"),
    (lambda t: _resized(_edit_line(t, "left_child", "-1 -1 -2 -3 -4 -5 -6")), "two parents"),
    (lambda t: _resized(_edit_line(t, "right_child", "1 1 1 1 1 1 1")), "do not form a tree"),
    (
        lambda t: _resized(_edit_line(t, "split_feature", "-1 0 0 0 0 0 0")),
        r"split_feature must be in",
    ),
    (
        lambda t: _resized(_edit_line(t, "split_feature", "4 0 0 0 0 0 0")),
        r"split_feature must be in",
    ),
    (lambda t: _resized(_edit_line(t, "decision_type", "16 2 2 2 2 2 2")), "unknown decision"),
    (
        lambda t: _resized(_edit_line(t, "decision_type", "3 2 2 2 2 2 2")),
        "categorical splits than num_cat",
    ),
    (
        lambda t: _resized(_edit_line(t, "threshold", "1e999 0 0 0 0 0 0")),
        "threshold must be finite",
    ),
    (lambda t: _resized(_edit_line(t, "shrinkage", "nan")), "shrinkage must be numbers"),
    (lambda t: _resized(_edit_line(t, "num_leaves", "9")), "has 7 values, but num_leaves says 8"),
    (lambda t: _resized(_edit_line(t, "num_leaves", "0")), r"num_leaves must be an int in \[1"),
    (lambda t: _resized(_edit_line(t, "is_linear", "1")), "linear trees are not supported"),
    (
        lambda t: _resized(_edit_line(t, "left_child", "1 x -2 -3 -4 -5 -6")),
        "left_child must be ints",
    ),
    (lambda t: _resized(t.replace("\nnum_cat=0\n", "\n", 1)), "Tree=0 lacks num_cat"),
    (lambda t: t.replace("end of trees", "end of tree"), "expected 'end of trees'"),
    (lambda t: t.replace("\nend of parameters\n", "\n"), "never ended"),
    (lambda t: t.replace("pandas_categorical:null", "pandas_categorical:[[1,"), "not JSON"),
    (
        lambda t: t.replace("pandas_categorical:null", "pandas_categorical:" + "[" * 100_000),
        "not JSON",
    ),
    (lambda t: t.replace("tree\n", "forest\n", 1), "expected 'tree'"),
    (lambda t: t.replace("num_class=1", "num_class=3"), "does not match num_class=3"),
    (lambda t: t.replace("objective=regression", "objective=bananas"), "unknown objective"),
    (lambda t: t.replace("objective=regression", "objective=regression alpha:-1"), "key:value > 0"),
    (
        lambda t: t.replace("objective=regression", "objective=regression\nmonotone_constraints=1"),
        "monotone_constraints must hold 4",
    ),
    (lambda t: t.rstrip("\n"), "does not end with a newline"),
]


@pytest.mark.parametrize(("change", "message"), CORRUPTIONS)
def test_corruption_is_refused_with_its_line(texts, change, message):
    text = change(texts["regression"])
    with pytest.raises(ModelTextError, match=rf"^line \d+: .*{message}"):
        check_model_text(text)


def test_not_a_str():
    with pytest.raises(ModelTextError, match=r"a model text must be a str. Got bytes"):
        check_model_text(b"tree\n")  # type: ignore[arg-type]


def test_nothing_that_passes_takes_lightgbm_down(texts, tmp_path):
    """Seeded fuzz: single-token edits of a real text, tree_sizes recomputed; every text the
    checker passes is loaded and used by LightGBM in a child process, which must exit 0 with
    one finite prediction per row (an abort, a crash or values read from memory the model does
    not own are a text the checker should have refused)."""
    rng = np.random.default_rng(0)
    text = texts["regression"]
    tokens = [m for m in re.finditer(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]
    junk = ["-1", "0", "1", "99", "-99", "1e300", "2147483648", "-2147483649", "0.5"]
    passed = []
    for _ in range(300):
        token = tokens[rng.integers(len(tokens))]
        edited = text[: token.start()] + junk[rng.integers(len(junk))] + text[token.end() :]
        try:
            edited = _resized(edited)
            check_model_text(edited)
        except (ModelTextError, ValueError, IndexError):
            continue
        passed.append(edited)
    assert 20 < len(passed) < 300  # edits of values that keep the model valid
    for i, edited in enumerate(passed):
        (tmp_path / f"{i}.txt").write_text(edited)
    code = (
        "import sys, glob\nimport numpy as np, lightgbm as lgb\n"
        "x = np.random.default_rng(0).random((64, 4))\n"
        "x[::5, 1] = np.nan\n"
        f"for path in sorted(glob.glob({str(tmp_path)!r} + '/*.txt')):\n"
        "    booster = lgb.Booster(model_str=open(path).read())\n"
        "    pred = booster.predict(x, num_threads=1)\n"
        "    assert pred.shape == (64,) and np.isfinite(pred).all(), (path, pred[:3])\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
