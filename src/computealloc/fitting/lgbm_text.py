"""A static check of LightGBM's model text format, before LightGBM's own parser reads it.

LightGBM's C++ loader (``LGBM_BoosterLoadModelFromString``) trusts its input: a model text cut
short, or one whose ``tree_sizes`` point past the text, makes it read memory it does not own and
can abort the process; a child index or a split feature out of range is read without a bounds
check at prediction time. :func:`check_model_text` reads the text the way the loader does and
refuses anything the loader or the prediction would not survive, with the line at fault.

The layout (what ``Booster.model_to_string`` writes)::

    tree
    version=v4
    num_class=1
    num_tree_per_iteration=1
    label_index=0
    max_feature_idx=2
    objective=regression
    feature_names=Column_0 Column_1 Column_2
    feature_infos=[0:1] [0:1] [0:1]
    tree_sizes=471 488

    Tree=0
    num_leaves=4
    num_cat=0
    split_feature=0 0 0          (num_leaves - 1 values each: the internal nodes)
    split_gain=...  threshold=...  decision_type=...  left_child=...  right_child=...
    leaf_value=...               (num_leaves values each: the leaves)
    leaf_weight=...  leaf_count=...
    internal_value=...  internal_weight=...  internal_count=...
    is_linear=0
    shrinkage=1

    Tree=1
    ...
    end of trees

    feature_importances: ...
    parameters: ... end of parameters

    pandas_categorical:null

``tree_sizes`` holds the length in characters of each ``Tree=`` block, which the loader uses to
cut the text into trees; every block, and the ``end of trees`` line after the last one, must
therefore sit exactly where the sizes say.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["ModelInfo", "ModelTextError", "check_model_text"]

#: The largest number of leaves LightGBM grows in one tree.
MAX_LEAVES = 131072
_HEADER_KEYS = (
    "version",
    "num_class",
    "num_tree_per_iteration",
    "label_index",
    "max_feature_idx",
    "objective",
    "feature_names",
    "feature_infos",
    "tree_sizes",
)
_OPTIONAL_HEADER_KEYS = ("average_output", "monotone_constraints", "linear")
_VERSIONS = ("v2", "v3", "v4")
_OBJECTIVES = (
    "regression",
    "regression_l1",
    "huber",
    "fair",
    "poisson",
    "quantile",
    "mape",
    "gamma",
    "tweedie",
    "binary",
    "multiclass",
    "multiclassova",
    "cross_entropy",
    "cross_entropy_lambda",
    "lambdarank",
    "rank_xendcg",
    "custom",
)
_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FLOATS = re.compile(rf"(?:{_NUMBER}(?: {_NUMBER})*)?")
_INTS = re.compile(r"(?:-?\d+(?: -?\d+)*)?")
#: Per-node arrays of a tree: (key, per internal node (n - 1) or per leaf (n), integer).
_NODE_ARRAYS = (
    ("split_feature", False, True),
    ("split_gain", False, False),
    ("threshold", False, False),
    ("decision_type", False, True),
    ("left_child", False, True),
    ("right_child", False, True),
    ("leaf_value", True, False),
    ("leaf_weight", True, False),
    ("leaf_count", True, True),
    ("internal_value", False, False),
    ("internal_weight", False, False),
    ("internal_count", False, True),
)
_TREE_KEYS = ("num_leaves", "num_cat", "shrinkage", "is_linear", *(k for k, _, _ in _NODE_ARRAYS))
#: The arrays whose values are checked (the others: their count and number format only).
_READ = ("split_feature", "threshold", "decision_type", "left_child", "right_child", "leaf_value")
_CATEGORICAL = 1  # decision_type bit: categorical split
_MISSING_SHIFT = 2  # decision_type bits 2-3: missing type 0 (none), 1 (zero), 2 (NaN)


class ModelTextError(ValueError):
    """A LightGBM model text that is incomplete or inconsistent; the message names the line."""


class ModelInfo(NamedTuple):
    """What a checked model text declares.

    Attributes
    ----------
    n_trees : int
        ``Tree=`` blocks.
    num_class : int
        Classes (1 for a regressor or a binary classifier).
    num_tree_per_iteration : int
        Trees per boosting round (the number of model outputs).
    n_features : int
        Features the model reads, ``max_feature_idx + 1``.
    objective : str
        The objective line, e.g. ``"regression"`` or ``"multiclass num_class:3"``.
    """

    n_trees: int
    num_class: int
    num_tree_per_iteration: int
    n_features: int
    objective: str


class _Lines:
    """The text's lines with their 1-based numbers and character offsets."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        lengths = np.fromiter((len(x) + 1 for x in self.lines), dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))

    def line_at(self, offset: int) -> int:
        """Index of the line that starts at character ``offset`` (-1 when none does)."""
        i = int(np.searchsorted(self.starts, offset))
        return i if i < len(self.starts) and self.starts[i] == offset else -1


def check_model_text(text: str) -> ModelInfo:
    """Check that a LightGBM model text is complete and self-consistent.

    Parameters
    ----------
    text : str
        A model in LightGBM's text format (``Booster.model_to_string()``).

    Returns
    -------
    ModelInfo
        The number of trees, classes, outputs and features the model declares.

    Raises
    ------
    ModelTextError
        "line N: what is wrong" for the first problem found: a missing or malformed header
        field, a ``Tree=`` block not where ``tree_sizes`` puts it, a tree array whose length
        is not what ``num_leaves`` says, a child or split feature index out of range, a
        non-finite leaf value or threshold, a missing ``end of trees``, or a text cut short.
    """
    if not isinstance(text, str):
        raise ModelTextError(f"line 1: a model text must be a str. Got {type(text).__name__}.")
    if not text.endswith("\n"):
        raise ModelTextError(
            f"line {text.count(chr(10)) + 1}: the text does not end with a newline (cut short)."
        )
    lines = _Lines(text)
    if lines.lines[0] != "tree":
        raise ModelTextError(f"line 1: expected 'tree'. Got {lines.lines[0]!r:.80}.")
    header, first_tree = _header(lines.lines)
    info, sizes = _check_header(header)
    offset = int(lines.starts[first_tree]) if first_tree < len(lines.lines) else len(text)
    trees: list[dict[str, tuple[str, int]]] = []
    for index, size in enumerate(sizes):
        first = lines.line_at(offset)
        if first < 0 or lines.lines[first] != f"Tree={index}":
            raise ModelTextError(
                f"line {header['tree_sizes'][1]}: tree_sizes puts Tree={index} at character "
                f"{offset}, but the text has no 'Tree={index}' line there (cut short or edited)."
            )
        end = lines.line_at(offset + size)
        if end < 0:
            raise ModelTextError(
                f"line {first + 1}: Tree={index} does not end where tree_sizes says "
                f"({size} characters; cut short or edited)."
            )
        trees.append(_tree_fields(lines.lines, first, end, index))
        offset += size
    _check_tail(lines, lines.line_at(offset))
    _check_trees(trees, info.n_features)
    return info


def _header(lines: list[str]) -> tuple[dict[str, tuple[str, int]], int]:
    """``key -> (value, line number)`` of the header, and the index of its first tree line."""
    header: dict[str, tuple[str, int]] = {}
    i = 1
    while i < len(lines) and lines[i] != "":
        key, sep, value = lines[i].partition("=")
        if not sep or key in header:
            what = "a repeated key" if sep else "not key=value"
            raise ModelTextError(f"line {i + 1}: {what} in the header: {lines[i]!r:.80}.")
        header[key] = (value, i + 1)
        i += 1
    while i < len(lines) and lines[i] == "":
        i += 1
    missing = [k for k in _HEADER_KEYS if k not in header]
    if missing:
        raise ModelTextError(f"line {i + 1}: the header lacks {', '.join(missing)}.")
    unknown = [k for k in header if k not in _HEADER_KEYS and k not in _OPTIONAL_HEADER_KEYS]
    if unknown:
        raise ModelTextError(f"line {header[unknown[0]][1]}: unknown header key {unknown[0]!r}.")
    return header, i


def _int(header: dict[str, tuple[str, int]], key: str, low: int, high: int) -> int:
    value, line = header[key]
    if not re.fullmatch(r"-?\d{1,9}", value) or not low <= int(value) <= high:
        raise ModelTextError(
            f"line {line}: {key} must be an int in [{low}, {high}]. Got {value!r:.40}."
        )
    return int(value)


def _check_header(header: dict[str, tuple[str, int]]) -> tuple[ModelInfo, list[int]]:
    version, line = header["version"]
    if version not in _VERSIONS:
        raise ModelTextError(f"line {line}: version must be one of {_VERSIONS}. Got {version!r}.")
    if header.get("linear", ("0", 0))[0] != "0":
        raise ModelTextError(f"line {header['linear'][1]}: linear trees are not supported.")
    num_class = _int(header, "num_class", 1, 1 << 16)
    per_round = _int(header, "num_tree_per_iteration", 1, 1 << 16)
    n_features = _int(header, "max_feature_idx", 0, 1 << 24) + 1
    _int(header, "label_index", 0, 1 << 24)
    for key in ("feature_names", "feature_infos"):
        value, line = header[key]
        found = len(value.split(" ")) if value else 0
        if found != n_features:
            raise ModelTextError(
                f"line {line}: {key} has {found} entries, but max_feature_idx says {n_features}."
            )
    value, line = header["tree_sizes"]
    if not _INTS.fullmatch(value) or value.startswith("-") or " -" in value:
        raise ModelTextError(f"line {line}: tree_sizes must be positive ints. Got {value!r:.80}.")
    sizes = [int(v) for v in value.split(" ")] if value else []
    if any(s <= 0 for s in sizes) or len(sizes) % per_round:
        raise ModelTextError(
            f"line {line}: tree_sizes must hold a positive size per tree, a multiple of "
            f"num_tree_per_iteration={per_round} trees. Got {len(sizes)}."
        )
    objective = _check_objective(header, num_class)
    if per_round != num_class:
        raise ModelTextError(
            f"line {header['num_tree_per_iteration'][1]}: num_tree_per_iteration must equal "
            f"num_class={num_class} (one tree per class and round). Got {per_round}."
        )
    if "monotone_constraints" in header:
        value, line = header["monotone_constraints"]
        signs = value.split(" ") if value else []
        if len(signs) != n_features or any(v not in ("-1", "0", "1") for v in signs):
            raise ModelTextError(
                f"line {line}: monotone_constraints must hold {n_features} values in -1, 0, 1."
            )
    return ModelInfo(len(sizes), num_class, per_round, n_features, objective), sizes


def _check_objective(header: dict[str, tuple[str, int]], num_class: int) -> str:
    """The objective line: a known objective, its ``key:value`` arguments positive numbers,
    ``num_class`` as the header says (LightGBM trusts both when it predicts)."""
    value, line = header["objective"]
    name, *args = value.split(" ")
    if name not in _OBJECTIVES:
        raise ModelTextError(f"line {line}: unknown objective {name!r:.40}.")
    for arg in args:
        key, _, number = arg.partition(":")
        if arg != "sqrt" and not (re.fullmatch(_NUMBER, number) and float(number) > 0):
            raise ModelTextError(
                f"line {line}: objective argument {arg!r:.40} is not key:value > 0."
            )
        if key == "num_class" and float(number) != num_class:
            raise ModelTextError(
                f"line {line}: the objective's num_class:{number} is not num_class={num_class}."
            )
    multiclass = name in ("multiclass", "multiclassova")
    if multiclass != (num_class > 1) or (multiclass and f"num_class:{num_class}" not in args):
        raise ModelTextError(
            f"line {line}: objective {name} does not match num_class={num_class} (multiclass "
            "objectives need num_class > 1 and name it; the others need 1)."
        )
    return value


def _tree_fields(lines: list[str], first: int, end: int, index: int) -> dict[str, tuple[str, int]]:
    """``key -> (value, line number)`` of the ``Tree=`` block on lines ``first`` to ``end``."""
    fields: dict[str, tuple[str, int]] = {"Tree": (str(index), first + 1)}
    for i in range(first + 1, end):
        if lines[i] == "":
            continue
        key, sep, value = lines[i].partition("=")
        if key == "Tree":
            raise ModelTextError(
                f"line {i + 1}: Tree={index} runs into {lines[i]!r:.20}: tree_sizes does not "
                "match the trees (cut short or edited)."
            )
        if not sep or key in fields:
            what = "a repeated key" if sep else "not key=value"
            raise ModelTextError(f"line {i + 1}: {what} in Tree={index}: {lines[i]!r:.80}.")
        fields[key] = (value, i + 1)
    missing = [k for k in _TREE_KEYS if k not in fields]
    if missing:
        raise ModelTextError(f"line {first + 1}: Tree={index} lacks {', '.join(missing)}.")
    if fields["is_linear"][0] != "0":
        raise ModelTextError(f"line {fields['is_linear'][1]}: linear trees are not supported.")
    return fields


def _check_trees(trees: list[dict[str, tuple[str, int]]], n_features: int) -> None:
    """Check every tree's arrays at once: lengths, numbers, indices, structure."""
    n = np.array([_int(t, "num_leaves", 1, MAX_LEAVES) for t in trees], dtype=np.int64)
    num_cat = np.array([_int(t, "num_cat", 0, MAX_LEAVES) for t in trees], dtype=np.int64)
    shrinkage = _batch(trees, "shrinkage", [1] * len(trees), False)
    _where_bad(~np.isfinite(shrinkage), np.arange(len(trees)), trees, "shrinkage", "must be finite")
    inner = np.repeat(np.arange(len(trees)), n - 1)  # tree of each internal node
    leaf = np.repeat(np.arange(len(trees)), n)  # tree of each leaf
    arrays = {}
    for key, per_leaf, integer in _NODE_ARRAYS:
        sizes = [_length(key, per_leaf, int(k), t) for k, t in zip(n, trees, strict=True)]
        arrays[key] = _batch(trees, key, sizes, integer, convert=key in _READ)
    _where_bad(~np.isfinite(arrays["leaf_value"]), leaf, trees, "leaf_value", "must be finite")
    _where_bad(~np.isfinite(arrays["threshold"]), inner, trees, "threshold", "must be finite")
    feature = arrays["split_feature"]
    _where_bad(
        (feature < 0) | (feature >= n_features),
        inner,
        trees,
        "split_feature",
        f"must be in [0, {n_features}) (max_feature_idx + 1)",
    )
    _check_children(arrays["left_child"], arrays["right_child"], n, inner, trees)
    decision = arrays["decision_type"]
    _where_bad(
        (decision < 0) | (decision > 15) | ((decision >> _MISSING_SHIFT) > 2),
        inner,
        trees,
        "decision_type",
        "holds an unknown decision",
    )
    categorical = (decision & _CATEGORICAL).astype(bool)
    found = np.bincount(inner[categorical], minlength=len(trees))
    _where_bad(
        found != num_cat,
        np.arange(len(trees)),
        trees,
        "decision_type",
        "has another number of categorical splits than num_cat says",
    )
    starts = np.concatenate(([0], np.cumsum(n - 1)))
    for i in np.flatnonzero(num_cat):
        part = slice(int(starts[i]), int(starts[i + 1]))
        _check_categorical(arrays["threshold"][part], categorical[part], int(num_cat[i]), trees[i])


def _batch(
    trees: list[dict[str, tuple[str, int]]],
    key: str,
    sizes: list[int],
    integer: bool,
    *,
    convert: bool = True,
) -> NDArray[Any]:
    """The array ``key`` of every tree, concatenated, each checked to hold ``sizes[i]``
    numbers (not converted, an empty array, unless ``convert``)."""
    values = [t[key][0] for t in trees]
    joined = " ".join(v for v in values if v)
    pattern = _INTS if integer else _FLOATS
    counts = [v.count(" ") + 1 if v else 0 for v in values]
    too_long = integer and re.search(r"\d{13}", joined) is not None
    if not pattern.fullmatch(joined) or counts != sizes or too_long:
        for t, size in zip(trees, sizes, strict=True):
            _array(t, key, size, integer)  # raises for the first tree at fault
    if not joined or not convert:
        return np.zeros(0, dtype=np.int64 if integer else np.float64)
    return np.array(joined.split(" "), dtype=np.int64 if integer else np.float64)


def _array(fields: dict[str, tuple[str, int]], key: str, size: int, integer: bool) -> NDArray[Any]:
    """The array ``key`` of one tree, checked to hold ``size`` numbers."""
    value, line = fields[key]
    pattern = _INTS if integer else _FLOATS
    if not pattern.fullmatch(value):
        kind = "ints" if integer else "numbers"
        raise ModelTextError(f"line {line}: {key} must be {kind}. Got {value!r:.80}.")
    tokens = value.split(" ") if value else []
    if len(tokens) != size:
        raise ModelTextError(
            f"line {line}: {key} has {len(tokens)} values, but num_leaves says {size}."
        )
    if integer:
        if any(len(t) > 12 for t in tokens):
            raise ModelTextError(f"line {line}: {key} holds an int out of range.")
        return np.array(tokens, dtype=np.int64)
    return np.array(tokens, dtype=np.float64)


def _where_bad(
    bad: NDArray[np.bool_],
    tree: NDArray[np.int64],
    trees: list[dict[str, tuple[str, int]]],
    key: str,
    message: str,
) -> None:
    """Raise for the first ``bad`` entry, naming the line of ``key`` in its tree."""
    if bad.any():
        i = int(tree[int(np.argmax(bad))])
        raise ModelTextError(f"line {trees[i][key][1]}: {key} {message} (Tree={i}).")


def _length(key: str, leaf: bool, n: int, fields: dict[str, tuple[str, int]]) -> int:
    """How many values the array ``key`` of a tree of ``n`` leaves holds.

    A single-leaf tree writes its ``leaf_value`` and ``leaf_count`` and leaves ``leaf_weight``
    empty (LightGBM reads only the leaf value of such a tree).
    """
    if n == 1 and key == "leaf_weight" and not fields[key][0]:
        return 0
    return n if leaf else n - 1


def _check_children(
    left: NDArray[np.int64],
    right: NDArray[np.int64],
    n: NDArray[np.int64],
    inner: NDArray[np.int64],
    trees: list[dict[str, tuple[str, int]]],
) -> None:
    """Every node but the root has one parent, internal children come after their parent.

    Internal node ``i`` has children ``c >= 0`` (internal node ``c``) or ``c < 0`` (leaf
    ``~c``). LightGBM numbers nodes in the order it splits them, so ``c > i``; with one
    parent per node this makes the nodes a tree rooted at 0, which a prediction walks in at
    most ``n - 1`` steps.
    """
    starts = np.concatenate(([0], np.cumsum(n - 1)))
    node = np.arange(inner.size) - starts[inner]
    children = np.concatenate([left, right])
    tree = np.concatenate([inner, inner])
    parent = np.concatenate([node, node])
    leaves = n[tree]
    internal = children >= 0
    bad = np.where(
        internal,
        (children <= parent) | (children >= leaves - 1),
        ~children >= leaves,
    )
    message = "and right_child do not form a tree"
    _where_bad(bad, tree, trees, "left_child", message)
    key = tree * (2 * MAX_LEAVES + 2) + children + MAX_LEAVES + 1
    ordered = np.sort(key)
    repeated = ordered[1:] == ordered[:-1]
    if repeated.any():
        i = int(ordered[int(np.argmax(repeated))] // (2 * MAX_LEAVES + 2))
        raise ModelTextError(
            f"line {trees[i]['left_child'][1]}: left_child {message} (a node with two parents, "
            f"Tree={i})."
        )


def _check_categorical(
    threshold: NDArray[np.float64],
    categorical: NDArray[np.bool_],
    num_cat: int,
    fields: dict[str, tuple[str, int]],
) -> None:
    """A tree's categorical splits index its ``cat_boundaries``, which index ``cat_threshold``."""
    line = fields["decision_type"][1]
    if "cat_boundaries" not in fields or "cat_threshold" not in fields:
        raise ModelTextError(f"line {line}: categorical splits need cat_boundaries, cat_threshold.")
    bounds = _array(fields, "cat_boundaries", num_cat + 1, True)
    if bounds[0] != 0 or (np.diff(bounds) < 0).any() or bounds[-1] > 1 << 24:
        raise ModelTextError(
            f"line {fields['cat_boundaries'][1]}: cat_boundaries must rise from 0."
        )
    _array(fields, "cat_threshold", int(bounds[-1]), True)
    which = threshold[categorical]
    if ((which != np.trunc(which)) | (which < 0) | (which >= num_cat)).any():
        raise ModelTextError(
            f"line {fields['threshold'][1]}: a categorical split's threshold must index "
            f"cat_boundaries (0..{num_cat - 1})."
        )


def _check_tail(lines: _Lines, at: int) -> None:
    """``end of trees`` right after the last tree, then an intact trailer."""
    text = lines.lines
    if at < 0 or text[at] != "end of trees":
        shown = "nothing" if at < 0 else repr(text[at][:40])
        raise ModelTextError(
            f"line {len(text) - 1 if at < 0 else at + 1}: expected 'end of trees' after the "
            f"last tree. Got {shown}."
        )
    rest = text[at + 1 : -1]
    if "parameters:" in rest and "end of parameters" not in rest:
        raise ModelTextError(f"line {len(text) - 1}: 'parameters:' is never ended (cut short).")
    last = rest[-1] if rest else ""
    key, _, value = last.partition(":")
    if key != "pandas_categorical":
        raise ModelTextError(
            f"line {len(text) - 1}: the text must end with the pandas_categorical line "
            f"(cut short). Got {last!r:.40}."
        )
    try:
        json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise ModelTextError(
            f"line {len(text) - 1}: pandas_categorical is not JSON (cut short): {exc}."
        ) from exc
