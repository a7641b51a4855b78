"""Tampered policy and stopping files: each is refused with a PolicyFileError naming the file
and the field, before anything is built from it; a file that loads answers queries.

Real policies of every kind :mod:`computealloc.fitting.persist` saves are fitted on a small
synthetic problem, saved, then edited; the edits are re-signed (the checksum recomputed), as an
attacker or a buggy writer would, so that only the schema stands between the file and the process.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from computealloc.estimation.table import OutcomeTable
from computealloc.fitting.persist import (
    PolicyFileError,
    _digest,
    load_file,
    load_policy,
    load_stopping,
    save_policy,
    save_stopping,
)
from computealloc.fitting.persist_schema import MAX_DEPTH, json_depth
from computealloc.fitting.policies import Imitation, LengthHeuristic, Random, Uniform, Value
from computealloc.fitting.sequential import (
    AnswerPools,
    BetaRule,
    LagrangianStopping,
    WindowRule,
    calibrate_stopping,
)

KS = np.array([1.0, 2.0, 4.0, 8.0])
ACTIONS = ("majority@1", "majority@2", "majority@4", "majority@8")


def _problem(n: int, seed: int) -> tuple[pd.DataFrame, OutcomeTable]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3))
    p = np.clip(x[:, :1] + 0.8 * (x[:, :1] - 0.5) * (1 - 1 / np.sqrt(KS)), 0, 1)
    X = pd.DataFrame({"x0": x[:, 0], "n_chars": 100 * x[:, 1], "x2": x[:, 2]})
    return X, OutcomeTable(p, np.tile(KS, (n, 1)), ACTIONS)


def _pools(n: int, seed: int) -> tuple[AnswerPools, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3))
    gold = rng.binomial(12, 0.15 + 0.8 * x[:, 0])
    abstain = rng.binomial(12 - gold, 0.1)
    others = rng.multinomial(12 - gold - abstain, [0.6, 0.3, 0.1])
    qids = tuple(f"{seed}-{i}" for i in range(n))
    return AnswerPools(gold, others.astype(np.int64), abstain, qids), x


POLICIES = {
    "uniform": Uniform(random_state=0),
    "random": Random(random_state=1),
    "length": LengthHeuristic(random_state=2),
    "imitation": Imitation(budget=3.0, n_estimators=10, random_state=3),
    "value": Value(n_estimators=10, random_state=4),
    "gain": Value(target="gain", n_estimators=10, random_state=4),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One saved file per kind: the policies above, a Lagrangian rule with a prior, a Beta
    rule and a bare window rule."""
    folder = tmp_path_factory.mktemp("files")
    X, table = _problem(300, 0)
    X_cal = _problem(200, 1)[0]
    out = {}
    for name, policy in POLICIES.items():
        save_policy(policy.fit(X, table).calibrate(X_cal, 3.0), folder / f"{name}.json")
        out[name] = folder / f"{name}.json"
    (train, x_train), (cal, x_cal) = _pools(150, 10), _pools(80, 11)
    rule = LagrangianStopping(n_groups=3, n_orders=8, random_state=3).fit(train, x_train)
    calibrated = calibrate_stopping(rule, cal, 5.0, prior=rule.predict_prior(x_cal), n_orders=8)
    save_stopping(calibrated, folder / "lagrangian.json")
    save_stopping(
        calibrate_stopping(BetaRule(max_samples=12), cal, 4.0, n_orders=8), folder / "beta.json"
    )
    save_stopping(WindowRule(window=3, max_samples=9), folder / "window.json")
    out.update(
        lagrangian=folder / "lagrangian.json",
        beta=folder / "beta.json",
        window=folder / "window.json",
    )
    return out


def _tampered(source: Path, target: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    """``source`` with ``change`` applied to its document, the checksum recomputed."""
    document = json.loads(source.read_text())
    change(document)
    if isinstance(document.get("payload"), dict) and document.get("sha256") != "keep":
        document["sha256"] = _digest(document["payload"], allow_nan=True)
    target.write_text(json.dumps(document))
    return target


def _cut_model(text: str) -> str:
    """A LightGBM model text cut in the middle of a tree, its header untouched."""
    return text[: text.index("Tree=3") + 40]


def _set_tree_sizes(text: str) -> str:
    head, _, rest = text.partition("tree_sizes=")
    sizes, _, tail = rest.partition("\n")
    bigger = " ".join(str(int(s) + 7) for s in sizes.split(" "))
    return f"{head}tree_sizes={bigger}\n{tail}"


def _edit_line(text: str, key: str, value: str) -> str:
    """``text`` with the first line ``key=...`` of a tree replaced by ``key=value``."""
    start = text.index(f"\n{key}=") + 1
    end = text.index("\n", start)
    return text[:start] + f"{key}={value}" + text[end:]


def _resized(text: str) -> str:
    """``text`` with ``tree_sizes`` recomputed from its ``Tree=`` blocks (a careful forger)."""
    body = text[text.index("\nTree=0\n") + 1 : text.index("end of trees")]
    starts = [m.start() for m in re.finditer(r"(?m)^Tree=\d+$", body)]
    sizes = np.diff([*starts, len(body)])
    head, _, rest = text.partition("tree_sizes=")
    return f"{head}tree_sizes={' '.join(map(str, sizes))}\n{rest.partition(chr(10))[2]}"


def _booster(
    change: Callable[[str], str], index: int = 0, *, resize: bool = True
) -> Callable[[dict[str, Any]], Any]:
    def edit(d: dict[str, Any]) -> None:
        boosters = d["payload"]["state"]["boosters_"]
        boosters[index] = change(boosters[index])
        if resize:
            boosters[index] = _resized(boosters[index])

    return edit


def _fitted(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["payload"]["fitted"].__setitem__(name, value)


def _state(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["payload"]["state"].__setitem__(name, value)


def _params(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["payload"]["params"].__setitem__(name, value)


def _both(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(d: dict[str, Any]) -> None:
        for setting in ("low", "high"):
            d["payload"]["params"][setting][name] = value

    return edit


def _sparse(name: str, key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["payload"]["state"][name].__setitem__(key, value)


def _second_names(d: dict[str, Any]) -> None:
    d["payload"]["fitted"]["feature_names_in_"] = ["x0", "x0", "x2"]


def _add_feature(d: dict[str, Any]) -> None:
    d["payload"]["fitted"]["n_features_in_"] = 4
    d["payload"]["fitted"]["feature_names_in_"].append("x3")


def _correct_above_visits(d: dict[str, Any]) -> None:
    sparse = d["payload"]["state"]["correct_"]
    sparse["values"][0] = 1e9


def _unseal(d: dict[str, Any]) -> None:
    d["payload"]["fitted"]["lam_"] = 0.0
    d["sha256"] = "keep"  # the digest of the original payload: not re-signed


#: (file, change, field named, what the message says).
TAMPERS = [
    ("value", _booster(_cut_model, resize=False), r"payload.state.boosters_\[0\]", r"line \d+: "),
    (
        "value",
        _booster(_set_tree_sizes, resize=False),
        r"payload.state.boosters_\[0\]",
        "tree_sizes does not match",
    ),
    (
        "value",
        _booster(lambda t: t[: t.index("Tree=3")] + t[t.index("Tree=4") :]),
        r"payload.state.boosters_\[0\]",
        "the text has no 'Tree=3' line there",
    ),
    (
        "value",
        _booster(lambda t: t.replace("end of trees", "end of tree"), resize=False),
        r"payload.state.boosters_\[0\]",
        "expected 'end of trees'",
    ),
    (
        "value",
        _booster(lambda t: _edit_line(t, "split_feature", "0 9 0 0 0 0 0")),
        r"payload.state.boosters_\[0\]",
        r"split_feature must be in \[0, 3\)",
    ),
    (
        "value",
        _booster(lambda t: _edit_line(t, "left_child", "0 0 0 0 0 0 0")),
        r"payload.state.boosters_\[0\]",
        "left_child and right_child do not form a tree",
    ),
    (
        "value",
        _booster(lambda t: t.replace("leaf_value=", "leaf_value=nan ", 1)),
        r"payload.state.boosters_\[0\]",
        "leaf_value must be numbers",
    ),
    (
        "value",
        _booster(lambda t: re.sub(r"leaf_value=[^ ]+", "leaf_value=1e999", t, count=1)),
        r"payload.state.boosters_\[0\]",
        "leaf_value must be finite",
    ),
    (
        "value",
        _booster(lambda t: t.replace("max_feature_idx=2", "max_feature_idx=1000")),
        r"payload.state.boosters_\[0\]",
        "feature_names has 3 entries",
    ),
    (
        "value",
        _booster(lambda t: t.replace("num_tree_per_iteration=1", "num_tree_per_iteration=3")),
        r"payload.state.boosters_\[0\]",
        "multiple of num_tree_per_iteration=3",
    ),
    ("value", _fitted("costs_", [1.0, 2.0, 4.0]), "payload.fitted.costs_", "has 3 values, but"),
    (
        "value",
        _fitted("costs_", [1.0, math.nan, 4.0, 8.0]),
        r"payload.fitted.costs_\[1\]",
        "finite",
    ),
    (
        "value",
        _fitted("costs_", [1.0, -2.0, 4.0, 8.0]),
        r"payload.fitted.costs_\[1\]",
        "greater than or equal to 0",
    ),
    (
        "value",
        _fitted("costs_", [1.0, 2.0, math.inf, 8.0]),
        r"payload.fitted.costs_\[2\]",
        "finite",
    ),
    ("value", _fitted("mix_", 2), "payload.fitted.mix_", "less than or equal to 1"),
    ("value", _fitted("lam_", 1e308), "payload.fitted.lam_", "less than or equal to 10{12}"),
    ("value", _fitted("costs_", [1.0, 2.0, 4.0, 1e300]), r"payload.fitted.costs_\[3\]", "less"),
    ("value", _fitted("lam_", -5.0), "payload.fitted.lam_", "must be >= 0"),
    ("value", _fitted("lam_", "0.1"), "payload.fitted.lam_", "valid number"),
    ("value", _fitted("budget_", None), "payload.fitted.budget_", "is missing, but lam_, mix_"),
    ("value", _fitted("n_features_in_", 3.0), "payload.fitted.n_features_in_", "valid integer"),
    (
        "value",
        _add_feature,
        r"payload.state.boosters_\[0\]",
        "reads 3 features.*n_features_in_ is 4",
    ),
    ("value", _second_names, "payload.fitted.feature_names_in_", "3 distinct names"),
    (
        "value",
        lambda d: d["payload"]["state"]["boosters_"].pop(),
        "payload.state.boosters_",
        "has 3 models, but actions_ has 4",
    ),
    ("value", _state("base_", 2), "payload.state.base_", "must be the cheapest action, 0"),
    ("value", _state("base_", -1), "payload.state.base_", "greater than or equal to 0"),
    ("value", _params("n_estimators", True), "payload.params.n_estimators", "valid integer"),
    ("value", _params("target", "valeu"), "payload.params.target", "'accuracy' or 'gain'"),
    ("value", _params("random_state", -1), "payload.params.random_state", ">= 0|greater than"),
    ("value", _params("learning_rate", math.nan), "payload.params.learning_rate", "finite"),
    (
        "value",
        lambda d: d["payload"]["fitted"].pop("actions_"),
        "payload.fitted.actions_",
        "required",
    ),
    (
        "value",
        _fitted("actions_", ["majority@1", "majority@0", "a", "b"]),
        "payload.fitted.actions_",
        "",
    ),
    ("value", _fitted("cost_unit_", "bananas"), "payload.fitted.cost_unit_", "bananas"),
    ("value", _fitted("backdoor_", 1), "payload.fitted.backdoor_", "Extra inputs"),
    (
        "value",
        lambda d: d["payload"].__setitem__("class", "Pipeline"),
        "payload.class",
        "not one of",
    ),
    ("value", lambda d: d.__setitem__("extra", 1), "extra", "unknown field"),
    ("value", lambda d: d.__setitem__("version", True), "version", "format version True"),
    ("value", _unseal, "sha256", "checksum mismatch"),
    ("value", lambda d: d.__setitem__("payload", []), "payload", "must be an object"),
    ("gain", _state("boosters_", "tree"), "payload.state.boosters_", "valid list"),
    ("imitation", _state("classes_", [0, 1, 2, 9]), "payload.state.classes_", r"in \[0, 4\)"),
    ("imitation", _state("classes_", [0, 1]), "payload.state.booster_", "outputs per row"),
    (
        "imitation",
        lambda d: d["payload"]["state"].__setitem__(
            "booster_", d["payload"]["state"]["booster_"][:-30]
        ),
        "payload.state.booster_",
        "cut short",
    ),
    ("uniform", _state("low_", 7), "payload.state.low_", r"in \[0, 4\)"),
    ("uniform", _state("accuracy_", [0.1, 0.2, 1.5, 0.3]), r"payload.state.accuracy_\[2\]", "1"),
    ("uniform", _fitted("lam_", 0.5), "payload.fitted.lam_", "Uniform has no lam_"),
    ("random", _state("probs_", [0.5, 0.5, 0.5, 0.5]), "payload.state.probs_", "must sum to 1"),
    ("random", _state("probs_", None), "payload.state.probs_", "missing for a calibrated Random"),
    ("length", _state("feature_index_", 3), "payload.state.feature_index_", r"in \[0, 3\)"),
    ("lagrangian", lambda d: d["payload"].__setitem__("mix", 2.0), "payload.mix", "less than"),
    ("lagrangian", _both("lam", -5.0), "payload.params.low.lam", "greater than or equal to -1"),
    (
        "lagrangian",
        lambda d: d["payload"]["params"]["high"].__setitem__("n_orders", 9),
        "payload.params.high.n_orders",
        "differ only in lam",
    ),
    (
        "lagrangian",
        _sparse("visits_", "shape", [10**7, 10**7]),
        "payload.state.visits_.shape",
        "must be",
    ),
    (
        "lagrangian",
        lambda d: (
            _both("n_groups", 1)(d),
            _state("group_edges_", [])(d),
            _state("prior_model_", None)(d),
        ),
        "payload.state.visits_.shape",
        "must be",
    ),
    ("lagrangian", _state("horizon_", 10**9), "payload.state.horizon_", "less than or equal"),
    (
        "lagrangian",
        lambda d: (_both("max_samples", 4000)(d), _state("horizon_", 4000)(d)),
        "payload.state.visits_.shape",
        "must be",
    ),
    ("lagrangian", _state("group_edges_", [0.5]), "payload.state.group_edges_", "2 increasing"),
    ("lagrangian", _state("group_edges_", [0.9, 0.1]), "payload.state.group_edges_", "increasing"),
    ("lagrangian", _state("prior_model_", None), "payload.state.prior_model_", "is null, but"),
    (
        "lagrangian",
        lambda d: d["payload"]["state"].__setitem__(
            "prior_model_", _cut_model(d["payload"]["state"]["prior_model_"])
        ),
        "payload.state.prior_model_",
        "LightGBM model text, line",
    ),
    (
        "lagrangian",
        lambda d: d["payload"]["state"]["visits_"]["values"].__setitem__(0, math.nan),
        r"payload.state.visits_.values\[0\]",
        "finite",
    ),
    (
        "lagrangian",
        lambda d: d["payload"]["state"]["moves_"]["values"].__setitem__(0, -3),
        r"payload.state.moves_.values\[0\]",
        "greater than or equal to 0",
    ),
    ("lagrangian", _correct_above_visits, "payload.state.correct_.values", "exceeds visits_"),
    (
        "lagrangian",
        lambda d: d["payload"]["state"]["moves_"]["gaps"].__setitem__(1, 0),
        "payload.state.moves_.gaps",
        "increasing indices",
    ),
    ("beta", _both("threshold", 3.0), "payload.params.low.threshold", "less than or equal to 1"),
    ("beta", lambda d: d["payload"].__setitem__("budget", None), "payload.budget", "all or none"),
    ("beta", _state("visits_", {}), "payload.state.visits_", "Extra inputs"),
    (
        "beta",
        _both("max_samples", 0),
        "payload.params.low.max_samples",
        "greater than or equal to 1",
    ),
    ("window", _both("window", 2.5), "payload.params.low.window", "valid integer"),
    (
        "window",
        lambda d: d["payload"].__setitem__("class", "Pipeline"),
        "payload.class",
        "not one of",
    ),
]


def _label(path: Path) -> str:
    return "Stopping file" if path.stem in ("lagrangian", "beta", "window") else "Policy file"


@pytest.mark.parametrize(("kind", "change", "field", "message"), TAMPERS)
def test_tampered_file_is_refused_naming_file_and_field(
    files, tmp_path, kind, change, field, message
):
    path = _tampered(files[kind], tmp_path / f"{kind}.json", change)
    load = load_stopping if _label(files[kind]) == "Stopping file" else load_policy
    pattern = rf"^{_label(files[kind])} {path}, field {field}: .*{message}"
    with pytest.raises(PolicyFileError, match=pattern):
        load(path)
    with pytest.raises(PolicyFileError, match=pattern):
        load_file(path)


def test_tamper_table_covers_every_kind(files):
    assert len(TAMPERS) >= 30
    assert {kind for kind, *_ in TAMPERS} == set(files)


def test_deep_json_is_refused_before_parsing(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(
        '{"format": "computealloc.policy", "payload": ' + "[" * 200_000 + "]" * 200_000 + "}"
    )
    with pytest.raises(
        PolicyFileError,
        match=rf"^Policy file {path}: is nested 200001 levels deep \(level {MAX_DEPTH + 1} at line "
        rf"1 column 77\); a policy file has at most {MAX_DEPTH}",
    ):
        load_policy(path)


@pytest.mark.parametrize(
    ("data", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [[1], {"b": []}]}', 4),
        (b'["[[[[", "\\"[[", "\\\\", [[]]]', 3),
        (b'"\\\\\\"[[[" ', 0),
        (b'[{"k\\u005b": "}}}]]]"}]', 2),
    ],
)
def test_json_depth_counts_brackets_outside_strings(data, depth):
    assert json_depth(data) == (depth, -1)
    assert depth == _python_depth(json.loads(data))


def _python_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_python_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_python_depth(v) for v in value.values()), default=0)
    return 0


def test_deep_json_past_the_located_prefix_is_refused_without_a_position(tmp_path, monkeypatch):
    import computealloc.fitting.persist_schema as schema

    monkeypatch.setattr(schema, "_LOCATE_BYTES", 64)
    path = tmp_path / "deep.json"
    path.write_text('{"pad": "' + "x" * 100 + '", "a": ' + "[" * 50 + "]" * 50 + "}")
    with pytest.raises(
        PolicyFileError, match=rf"^Policy file {path}: is nested 51 levels deep; a policy file"
    ):
        load_policy(path)


def test_oversized_file_is_refused_before_reading_it_all(tmp_path, monkeypatch):
    import computealloc.fitting.persist_schema as schema

    monkeypatch.setattr(schema, "MAX_BYTES", 1000)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"format": "computealloc.policy", "pad": "x" * 2000}))
    with pytest.raises(PolicyFileError, match=rf"^Policy file {path}: is larger than 1000 bytes"):
        load_policy(path)


def test_json_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{\n  "format": "computealloc.policy",\n  "version": 1,,\n}')
    with pytest.raises(
        PolicyFileError, match=rf"^Policy file {path}: is not JSON: .* line 3 column 16"
    ):
        load_policy(path)


@pytest.mark.parametrize(
    ("target", "message"),
    [("folder", "cannot be read: Is a directory"), ("/dev/zero", "is not a regular file")],
)
def test_not_a_regular_file(tmp_path, target, message):
    path = tmp_path if target == "folder" else Path(target)
    if not path.exists():
        pytest.skip(f"{target} does not exist here")
    with pytest.raises(PolicyFileError, match=rf"^Policy file {path}: {message}"):
        load_policy(path)


def test_number_too_long_for_json_is_a_file_error(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"format": "computealloc.policy", "version": ' + "9" * 5000 + "}")
    with pytest.raises(
        PolicyFileError, match=rf"^Policy file {path}: is not JSON that can be read"
    ):
        load_policy(path)


def test_truncated_model_does_not_abort_the_process(files, tmp_path):
    """The issue's crash: a cut LightGBM text with a recomputed checksum aborted (exit 134)."""
    path = _tampered(files["value"], tmp_path / "cut.json", _booster(_cut_model, resize=False))
    code = (
        "import sys\n"
        "from computealloc.fitting.persist import PolicyFileError, load_file\n"
        "try:\n"
        f"    load_file({str(path)!r})\n"
        "except PolicyFileError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout.startswith(f"Policy file {path}, field payload.state.boosters_[0]: ")
    assert "Traceback" not in done.stderr


def test_valid_files_load_and_answer(files):
    X = _problem(20, 5)[0]
    for name in POLICIES:
        policy = load_file(files[name])
        actions = policy.predict(X)
        assert actions.shape == (20,) and ((actions >= 0) & (actions < 4)).all()
    for name in ("lagrangian", "beta", "window"):
        rule = load_file(files[name])
        prior = 0.5 if name == "lagrangian" else None
        assert rule.low.should_stop(["a", "a", "a", "a", "a", "a"], prior) in (True, False)


@pytest.mark.parametrize("kind", ["value", "imitation", "lagrangian"])
def test_random_tampers_refuse_or_answer(files, tmp_path, kind):
    """Seeded fuzz: any re-signed edit of one value either fails with a PolicyFileError or
    leaves a file whose policy answers queries (never another exception)."""
    rng = np.random.default_rng(0)
    document = json.loads(files[kind].read_text())
    leaves = list(_leaves(document["payload"], ("payload",)))
    junk = [math.nan, -1, 0, 1, 2, 2**70, 1e308, -0.5, "x", None, True, [], {}, [1, 2]]
    X = _problem(8, 6)[0]
    for trial in range(40):
        loc = leaves[rng.integers(len(leaves))]
        value = junk[rng.integers(len(junk))]
        if isinstance(_get(document, loc), str) and len(_get(document, loc)) > 200:
            text = _get(document, loc)
            value = text[: rng.integers(len(text))]
        path = _tampered(
            files[kind],
            tmp_path / f"{trial}.json",
            lambda d, loc=loc, value=value: _put(d, loc, value),
        )
        try:
            loaded = load_file(path)
        except PolicyFileError as exc:
            assert str(exc).startswith(f"{_label(files[kind])} {path}")
            continue
        if kind == "lagrangian":
            loaded.low.should_stop(["a", "b", "a"], 0.5)
        else:
            names = getattr(loaded, "feature_names_in_", X.columns)
            loaded.predict(pd.DataFrame(X.to_numpy()[:, : loaded.n_features_in_], columns=names))


def _leaves(value: Any, loc: tuple[Any, ...]):
    if isinstance(value, dict):
        for key, v in value.items():
            yield from _leaves(v, (*loc, key))
    elif isinstance(value, list) and value and not isinstance(value[0], (int, float)):
        for i, v in enumerate(value):
            yield from _leaves(v, (*loc, i))
    else:
        yield loc


def _get(document: Any, loc: tuple[Any, ...]) -> Any:
    for key in loc:
        document = document[key]
    return document


def _put(document: Any, loc: tuple[Any, ...], value: Any) -> None:
    _get(document, loc[:-1])[loc[-1]] = value


@pytest.mark.parametrize(
    ("kind", "change", "field"),
    [
        ("value", _booster(_cut_model, resize=False), "payload.state.boosters_[0]"),
        ("value", _fitted("costs_", [1.0, 2.0, 4.0]), "payload.fitted.costs_"),
        ("lagrangian", _sparse("visits_", "shape", [10**7, 10**7]), "payload.state.visits_.shape"),
    ],
    ids=["cut-model", "short-costs", "huge-shape"],
)
def test_serve_shows_the_error_without_a_traceback(files, tmp_path, kind, change, field):
    from typer.testing import CliRunner

    from computealloc.cli import app

    path = _tampered(files[kind], tmp_path / f"{kind}.json", change)
    args = ["serve", "--policy", str(path), "--budget", "4"]
    result = CliRunner().invoke(app, [*args, "--backend", "http://127.0.0.1:9/v1", "--model", "m"])
    shown = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"{_label(files[kind])} {path}, field {field}: " in shown
    assert "Traceback" not in result.output
