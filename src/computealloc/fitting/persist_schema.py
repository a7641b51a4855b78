"""The schema of policy and stopping files: what :mod:`computealloc.fitting.persist` accepts.

A file is read in bounded steps, each before anything is built from it:

1. :func:`read_document`: at most :data:`MAX_BYTES` of UTF-8, nested at most
   :data:`MAX_DEPTH` deep (checked by a scan of the brackets outside strings before
   ``json.loads`` runs, so a deeply nested file is an error, not a RecursionError);
2. the envelope (``format``, ``version``, ``sha256`` of the payload);
3. the payload, by a pydantic model of its class (:func:`check_policy_payload`,
   :func:`check_stopping_payload`): every field's type and range (finite, non-negative costs,
   probabilities in [0, 1], a price ``lam_ >= 0`` where scores are accuracies, seeds numpy
   accepts, ...), no unknown field, every embedded LightGBM model checked by
   :func:`~computealloc.fitting.lgbm_text.check_model_text`;
4. the fields against each other: one cost per action, one booster per action, each booster
   reading ``n_features_in_`` features, class indices and decision indices within the actions,
   sparse shapes that match the horizon and the groups and fit a memory bound, indices within
   those shapes.

Every failure is a :class:`PolicyFileError` whose message names the file and the field:
"Policy file PATH, field payload.fitted.costs_: has 3 values, but actions_ has 4."
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, Literal, NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from computealloc.estimation.actions import parse_actions
from computealloc.estimation.units import Pricing
from computealloc.fitting.lgbm_text import ModelInfo, ModelTextError, check_model_text
from computealloc.fitting.sequential.pools import MAX_TOP_K
from computealloc.methods import stopping_classes

__all__ = [
    "MAX_BYTES",
    "MAX_DENSE",
    "MAX_DEPTH",
    "CheckedModel",
    "FieldError",
    "PolicyFileError",
    "PolicyPayload",
    "StoppingPayload",
    "check_policy_payload",
    "check_stopping_payload",
    "json_depth",
    "read_document",
]

#: Largest policy or stopping file read, in bytes (a fitted value policy is about 1 MB).
MAX_BYTES = 256 * 1024 * 1024
#: Deepest nesting of JSON arrays and objects accepted (the files computealloc writes: 5).
MAX_DEPTH = 32
#: Most entries of one dense count array of a stopping file (256 MiB as float64).
MAX_DENSE = 1 << 25
_CHUNK = 1 << 20
_LOCATE_BYTES = 16 << 20
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_MARK = bytes(c for c in range(256) if c not in b'"[]{}')
_MAX_ACTIONS = 4096
_MAX_FEATURES = 100_000
_MAX_SAMPLES = 100_000
_PROB_ATOL = 1e-9
#: Bounds that keep ``score - lam * cost`` finite in float64 (a cost of 1e15 tokens or USD,
#: a price of 1e12 accuracy per unit, are far beyond any real policy).
_MAX_COST = 1e15
_MAX_PRICE = 1e12


class PolicyFileError(ValueError):
    """A policy or stopping file that cannot be loaded: damaged, foreign, or not as expected.

    The message names the file and, where one is at fault, the field:
    "Policy file PATH, field LOC: what is wrong".
    """


class FieldError(ValueError):
    """A payload field that is wrong, at ``loc`` (keys and indices from the document root)."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message


def field_name(loc: Sequence[str | int]) -> str:
    """``("payload", "state", "boosters_", 2)`` as ``payload.state.boosters_[2]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def file_error(
    label: str, path: str | os.PathLike[str], message: str, loc: Sequence[Any] = ()
) -> PolicyFileError:
    """The error of ``label`` file ``path`` ("Policy file"), at field ``loc`` when given."""
    where = f", field {field_name(loc)}" if loc else ""
    return PolicyFileError(f"{label} {os.fspath(path)}{where}: {message}")


# --------------------------------------------------------------------------- bounded read


def json_depth(data: bytes, limit: int = MAX_DEPTH) -> tuple[int, int]:
    """Deepest nesting of ``[`` and ``{`` outside JSON strings, without parsing.

    Every escape pair (a backslash and the byte after it) is dropped first, so the quotes left
    open and close strings; of the rest only quotes and brackets are kept, and a vectorised
    scan counts the brackets outside strings. Exact for valid JSON and for the valid prefix
    of invalid JSON (all that ``json.loads`` reads before failing).

    Parameters
    ----------
    data : bytes
        The document.
    limit : int
        Depth allowed; past it, the offset of the first bracket beyond it is found.

    Returns
    -------
    depth : int
        0 for a scalar, 1 for a flat array or object, ...
    offset : int
        Byte offset in ``data`` of the first bracket nested deeper than ``limit`` (-1 if none,
        or if it lies past the first 16 MiB, which is all that is searched for it).
    """
    marks = _ESCAPE.sub(b"", data).translate(None, _NOT_MARK)
    depth, inside, deepest = 0, 0, 0
    for start in range(0, len(marks), _CHUNK):
        levels, inside_end = _levels(marks[start : start + _CHUNK], depth, inside)
        deepest = max(deepest, int(levels.max(initial=depth)))
        depth, inside = int(levels[-1]), inside_end
    return deepest, (_first_beyond(data[:_LOCATE_BYTES], limit) if deepest > limit else -1)


def _levels(marks: bytes, depth: int, inside: int) -> tuple[NDArray[np.int64], int]:
    """Nesting level after each of ``marks`` (quotes and brackets), from ``depth``."""
    b = np.frombuffer(marks, dtype=np.uint8)
    toggles = np.cumsum(b == 0x22) + inside
    outside = toggles % 2 == 0
    step = (b == 0x5B).astype(np.int64) + (b == 0x7B) - (b == 0x5D) - (b == 0x7D)
    return depth + np.cumsum(np.where(outside, step, 0)), int(toggles[-1] % 2)


def _first_beyond(data: bytes, limit: int) -> int:
    """Byte offset of the first bracket nested deeper than ``limit`` (a scan in Python)."""
    depth, inside, escaped = 0, False, False
    for offset, byte in enumerate(data):
        if inside:
            escaped, inside = (False, inside) if escaped else (byte == 0x5C, byte != 0x22)
        elif byte == 0x22:
            inside = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return offset
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return -1


def read_document(path: str | os.PathLike[str], label: str) -> Any:
    """The JSON value of a file, read within :data:`MAX_BYTES` and :data:`MAX_DEPTH`.

    Raises
    ------
    PolicyFileError
        The file cannot be opened, is larger than :data:`MAX_BYTES`, is not UTF-8, is nested
        deeper than :data:`MAX_DEPTH`, or is not JSON (with the line and column).
    """
    try:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise file_error(label, path, "is not a regular file.")
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise file_error(label, path, f"cannot be read: {exc.strerror or exc}.") from exc
    if len(data) > MAX_BYTES:
        raise file_error(
            label, path, f"is larger than {MAX_BYTES} bytes, the most a policy file may hold."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise file_error(label, path, f"is not UTF-8 text (byte {exc.start}).") from exc
    depth, offset = json_depth(data)
    if depth > MAX_DEPTH:
        line = data.count(b"\n", 0, offset) + 1
        column = offset - data.rfind(b"\n", 0, offset)
        where = f" (level {MAX_DEPTH + 1} at line {line} column {column})" if offset >= 0 else ""
        raise file_error(
            label,
            path,
            f"is nested {depth} levels deep{where}; a policy file has at most {MAX_DEPTH}.",
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise file_error(
            label, path, f"is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from exc
    except ValueError as exc:  # a number json cannot convert (over 4300 digits)
        raise file_error(label, path, f"is not JSON that can be read: {exc}.") from exc
    except RecursionError as exc:  # pragma: no cover - the depth scan comes first
        raise file_error(label, path, "is nested too deep to parse.") from exc


# --------------------------------------------------------------------------- field types


class CheckedModel(NamedTuple):
    """A LightGBM model text that passed
    :func:`~computealloc.fitting.lgbm_text.check_model_text`."""

    text: str
    info: ModelInfo


def _model_text(value: object) -> CheckedModel:
    if not isinstance(value, str):
        raise ValueError(f"must be a LightGBM model text (a str). Got {type(value).__name__}.")
    try:
        return CheckedModel(value, check_model_text(value))
    except ModelTextError as exc:
        raise ValueError(f"LightGBM model text, {exc}") from exc


ModelText = Annotated[CheckedModel, PlainValidator(_model_text)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Cost = Annotated[float, Field(ge=0.0, le=_MAX_COST, allow_inf_nan=False)]
Index = Annotated[int, Field(ge=0, le=_MAX_ACTIONS)]
Seed = Annotated[int, Field(ge=0, lt=1 << 63)]
Cap = Annotated[int, Field(ge=1, le=_MAX_SAMPLES)]
_Name = Annotated[str, Field(max_length=1024)]


class _Strict(BaseModel):
    """Strict types (no "3" for 3, no true for 1), no unknown field, read-only."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --------------------------------------------------------------------------- policies


class UniformParams(_Strict):
    random_state: Seed | None = None


class RandomParams(UniformParams):
    pass


class LengthHeuristicParams(UniformParams):
    feature: _Name | Annotated[int, Field(ge=0, le=_MAX_FEATURES)] = "n_chars"


class _BoostingParams(UniformParams):
    n_estimators: Annotated[int, Field(ge=1, le=1_000_000)]
    max_depth: Annotated[int, Field(ge=-1, le=64)]
    learning_rate: Positive
    min_child_samples: Annotated[int, Field(ge=0)]
    n_jobs: int


class ImitationParams(_BoostingParams):
    budget: Positive | None = None


class ValueParams(_BoostingParams):
    target: Literal["accuracy", "gain"] = "accuracy"


class Fitted(_Strict):
    """The attributes every fitted policy has (see
    :class:`~computealloc.fitting.policies.BasePolicy`)."""

    actions_: Annotated[list[_Name], Field(min_length=1, max_length=_MAX_ACTIONS)]
    costs_: Annotated[list[Cost], Field(max_length=_MAX_ACTIONS)]
    cost_unit_: _Name
    prices_: dict[_Name, _Name] = Field(default_factory=dict)
    n_features_in_: Annotated[int, Field(ge=0, le=_MAX_FEATURES)]
    feature_names_in_: Annotated[list[_Name], Field(max_length=_MAX_FEATURES)] | None = None
    lam_: Annotated[float, Field(ge=-_MAX_PRICE, le=_MAX_PRICE, allow_inf_nan=False)] | None = None
    mix_: Unit | None = None
    budget_: Annotated[float, Field(gt=0.0, le=_MAX_COST, allow_inf_nan=False)] | None = None
    probe_m_: Annotated[int, Field(ge=0, le=_MAX_SAMPLES)] | None = None


class UniformState(_Strict):
    accuracy_: Annotated[list[Unit], Field(max_length=_MAX_ACTIONS)]
    low_: Index | None = None
    high_: Index | None = None


class RandomState(_Strict):
    probs_: Annotated[list[Unit], Field(max_length=_MAX_ACTIONS)] | None = None


class LengthHeuristicState(_Strict):
    feature_index_: Annotated[int, Field(ge=0, le=_MAX_FEATURES)]


class ImitationState(_Strict):
    classes_: Annotated[list[Index], Field(min_length=1, max_length=_MAX_ACTIONS)]
    booster_: ModelText


class ValueState(_Strict):
    base_: Index
    boosters_: Annotated[list[ModelText], Field(min_length=1, max_length=_MAX_ACTIONS)]


P = TypeVar("P", bound=BaseModel)
S = TypeVar("S", bound=BaseModel)


class PolicyPayload(_Strict, Generic[P, S]):
    """``{"class", "params", "fitted", "state"}`` of a policy file."""

    class_: str = Field(alias="class")
    params: P
    fitted: Fitted
    state: S


_POLICY_MODELS: dict[str, type[PolicyPayload[Any, Any]]] = {
    "Uniform": PolicyPayload[UniformParams, UniformState],
    "Random": PolicyPayload[RandomParams, RandomState],
    "LengthHeuristic": PolicyPayload[LengthHeuristicParams, LengthHeuristicState],
    "Imitation": PolicyPayload[ImitationParams, ImitationState],
    "Value": PolicyPayload[ValueParams, ValueState],
}
#: Policies whose scores are predicted accuracies: their dual price is never negative.
_ACCURACY_SCORES = ("Value",)
#: Policies calibrated by BasePolicy.calibrate (lam_, mix_ and budget_ together).
_PRICED = ("Value", "Imitation", "LengthHeuristic")


def _at(*loc: str | int) -> tuple[str | int, ...]:
    """A location under the document's payload."""
    return ("payload", *loc)


def _validated(model: type[BaseModel], payload: Any, root: Sequence[str]) -> Any:
    """``payload`` validated by ``model``; the first error as a FieldError."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        shown = error.get("input")
        got = (
            ""
            if isinstance(shown, (dict, list)) or error["type"] in ("missing", "value_error")
            else f" Got {shown!r:.80}."
        )
        raise FieldError(
            (*root, *error["loc"]),
            message[0].upper() + message[1:] + "." * (not message.endswith(".")) + got,
        ) from exc


def check_policy_payload(payload: Any) -> PolicyPayload[Any, Any]:
    """Validate a policy payload: its class's schema, then its fields against each other.

    Parameters
    ----------
    payload : object
        The ``payload`` of a policy document (parsed JSON).

    Returns
    -------
    PolicyPayload
        The validated payload; its LightGBM models are :class:`CheckedModel`.

    Raises
    ------
    FieldError
        The first field at fault, with its location from the document root.
    """
    if not isinstance(payload, dict):
        raise FieldError(("payload",), f"must be an object. Got {type(payload).__name__}.")
    name = payload.get("class")
    model = _POLICY_MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        raise FieldError(
            ("payload", "class"), f"{name!r:.80} is not one of {sorted(_POLICY_MODELS)}."
        )
    checked = _validated(model, payload, ("payload",))
    _check_policy(checked)
    return checked


def _check_policy(p: PolicyPayload[Any, Any]) -> None:
    """The cross-field checks of a validated policy payload."""
    f, name = p.fitted, p.class_
    k = len(f.actions_)
    _check_actions(f.actions_, _at("fitted", "actions_"))
    if len(f.costs_) != k:
        raise FieldError(
            _at("fitted", "costs_"), f"has {len(f.costs_)} values, but actions_ has {k}."
        )
    _check_pricing(f)
    names = f.feature_names_in_
    if names is not None and (len(names) != f.n_features_in_ or len(set(names)) != len(names)):
        raise FieldError(
            _at("fitted", "feature_names_in_"),
            f"must hold {f.n_features_in_} distinct names (n_features_in_). Got {len(names)} "
            f"names, {len(set(names))} distinct.",
        )
    _check_calibration(p)
    _STATE_CHECKS[name](p)


def _check_actions(actions: list[str], loc: tuple[str | int, ...]) -> None:
    try:
        parse_actions(actions)
    except (ValueError, TypeError) as exc:
        raise FieldError(loc, str(exc)) from exc


def _check_pricing(f: Fitted) -> None:
    try:
        Pricing.parse(f.cost_unit_)
    except ValueError as exc:
        raise FieldError(_at("fitted", "cost_unit_"), str(exc)) from exc
    try:
        Pricing.parse(f.cost_unit_, f.prices_, where="prices_", unit_where="cost_unit_")
    except ValueError as exc:
        raise FieldError(_at("fitted", "prices_"), str(exc)) from exc


def _check_calibration(p: PolicyPayload[Any, Any]) -> None:
    """The calibration attributes a policy's class sets, all or none."""
    f, name = p.fitted, p.class_
    own = {"lam_", "mix_", "budget_"} if name in _PRICED else {"mix_", "budget_"}
    if name == "Random":
        own = {"budget_"}
    for attr in ("lam_", "mix_"):
        if attr not in own and getattr(f, attr) is not None:
            raise FieldError(_at("fitted", attr), f"{name} has no {attr}; remove the field.")
    present = {a for a in own if getattr(f, a) is not None}
    if present and present != own:
        missing = sorted(own - present)[0]
        raise FieldError(
            _at("fitted", missing),
            f"is missing, but {', '.join(sorted(present))} are set (a calibrated {name} has "
            f"{', '.join(sorted(own))}).",
        )
    if name in _ACCURACY_SCORES and f.lam_ is not None and f.lam_ < 0:
        raise FieldError(
            _at("fitted", "lam_"),
            f"must be >= 0 ({name}'s scores are accuracies, so a sample is never worth a "
            f"negative price). Got {f.lam_!r}.",
        )


def _check_index(value: int | None, k: int, loc: tuple[str | int, ...]) -> None:
    if value is not None and value >= k:
        raise FieldError(loc, f"must be an action index in [0, {k}). Got {value}.")


def _check_model(
    model: CheckedModel, n_features: int, outputs: int, loc: tuple[str | int, ...]
) -> None:
    info = model.info
    if info.n_features != n_features:
        raise FieldError(
            loc,
            f"The LightGBM model reads {info.n_features} features (max_feature_idx + 1), but "
            f"n_features_in_ is {n_features}.",
        )
    if info.num_tree_per_iteration != outputs:
        raise FieldError(
            loc,
            f"The LightGBM model has {info.num_tree_per_iteration} outputs per row "
            f"(num_tree_per_iteration); {outputs} expected.",
        )


def _uniform_state(p: PolicyPayload[Any, Any]) -> None:
    s, k = p.state, len(p.fitted.actions_)
    if len(s.accuracy_) != k:
        raise FieldError(
            _at("state", "accuracy_"), f"has {len(s.accuracy_)} values, but actions_ has {k}."
        )
    calibrated = p.fitted.budget_ is not None
    for attr in ("low_", "high_"):
        if (getattr(s, attr) is None) == calibrated:
            what = "is missing for a calibrated" if calibrated else "is set for an uncalibrated"
            raise FieldError(_at("state", attr), f"{what} Uniform (budget_).")
        _check_index(getattr(s, attr), k, _at("state", attr))


def _random_state(p: PolicyPayload[Any, Any]) -> None:
    s, k = p.state, len(p.fitted.actions_)
    calibrated = p.fitted.budget_ is not None
    if (s.probs_ is None) == calibrated:
        what = "is missing for a calibrated" if calibrated else "is set for an uncalibrated"
        raise FieldError(_at("state", "probs_"), f"{what} Random (budget_).")
    if s.probs_ is None:
        return
    if len(s.probs_) != k:
        raise FieldError(
            _at("state", "probs_"), f"has {len(s.probs_)} values, but actions_ has {k}."
        )
    if abs(math.fsum(s.probs_) - 1.0) > _PROB_ATOL:
        raise FieldError(_at("state", "probs_"), f"must sum to 1. Got {math.fsum(s.probs_)!r}.")


def _length_state(p: PolicyPayload[Any, Any]) -> None:
    n = p.fitted.n_features_in_
    if p.state.feature_index_ >= n:
        raise FieldError(
            _at("state", "feature_index_"),
            f"must be a feature index in [0, {n}) (n_features_in_). Got {p.state.feature_index_}.",
        )


def _imitation_state(p: PolicyPayload[Any, Any]) -> None:
    classes, k = p.state.classes_, len(p.fitted.actions_)
    if classes != sorted(set(classes)) or classes[-1] >= k:
        raise FieldError(
            _at("state", "classes_"),
            f"must be distinct action indices in [0, {k}), increasing. Got {classes[:10]}.",
        )
    outputs = len(classes) if len(classes) > 2 else 1
    _check_model(p.state.booster_, p.fitted.n_features_in_, outputs, _at("state", "booster_"))


def _value_state(p: PolicyPayload[Any, Any]) -> None:
    s, f = p.state, p.fitted
    k = len(f.actions_)
    if len(s.boosters_) != k:
        raise FieldError(
            _at("state", "boosters_"),
            f"has {len(s.boosters_)} models, but actions_ has {k} (one per action).",
        )
    cheapest = int(np.argmin(f.costs_))
    if s.base_ != cheapest:
        raise FieldError(
            _at("state", "base_"),
            f"must be the cheapest action, {cheapest} (argmin of costs_). Got {s.base_}.",
        )
    for i, model in enumerate(s.boosters_):
        _check_model(model, f.n_features_in_, 1, _at("state", "boosters_", i))


_STATE_CHECKS: dict[str, Callable[[PolicyPayload[Any, Any]], None]] = {
    "Uniform": _uniform_state,
    "Random": _random_state,
    "LengthHeuristic": _length_state,
    "Imitation": _imitation_state,
    "Value": _value_state,
}


# --------------------------------------------------------------------------- stopping rules


class _RuleParams(_Strict):
    max_samples: Cap | None = None


class BetaParams(_RuleParams):
    threshold: Annotated[float, Field(ge=0.5, le=1.0, allow_inf_nan=False)] = 0.95


class DirichletParams(_RuleParams):
    threshold: Unit = 0.95
    top_k: Annotated[int, Field(ge=2, le=MAX_TOP_K)] = 5


class EntropyParams(_RuleParams):
    threshold: Unit = 0.25
    min_samples: Annotated[int, Field(ge=0, le=_MAX_SAMPLES)] = 2


class MajorityShareParams(_RuleParams):
    threshold: Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)] = 0.8
    min_samples: Annotated[int, Field(ge=0, le=_MAX_SAMPLES)] = 2


class WindowParams(_RuleParams):
    window: Annotated[int, Field(ge=1, le=4096)] = 5


class LagrangianParams(_RuleParams):
    lam: Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)] = 0.0
    smoothing: NonNegative = 1.0
    n_groups: Annotated[int, Field(ge=1, le=1000)] = 1
    n_orders: Annotated[int, Field(ge=1, le=1_000_000)] = 64
    random_state: Seed = 0


class RegisteredParams(_RuleParams):
    """Parameters of a registered rule without a schema of its own
    (:mod:`computealloc.methods`): any names, each None, a bool, an int, a finite float or a
    str (what ``save_stopping`` writes); its constructor checks the values."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    def model_post_init(self, context: Any, /) -> None:
        for name, value in (self.model_extra or {}).items():
            plain = value is None or isinstance(value, (bool, int, str))
            if not plain and not (isinstance(value, float) and math.isfinite(value)):
                raise ValueError(f"{name} must be null, a number or a string. Got {value!r}.")


class Settings(_Strict, Generic[P]):
    """The constructor parameters of the two calibrated settings."""

    low: P
    high: P


class Sparse(_Strict):
    """A count array stored sparsely: its shape, the gaps between its nonzero flat indices,
    their values."""

    shape: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_DENSE)]], Field(min_length=1, max_length=8)
    ]
    gaps: list[Annotated[int, Field(ge=0, le=MAX_DENSE)]]
    values: list[NonNegative]


class EmptyState(_Strict):
    """Published rules have no fitted state."""


class LagrangianState(_Strict):
    visits_: Sparse
    correct_: Sparse
    moves_: Sparse
    horizon_: Annotated[int, Field(ge=1, le=4096)]
    group_edges_: list[Finite]
    prior_model_: ModelText | None


class StoppingPayload(_Strict, Generic[P, S]):
    """``{"class", "params", "mix", "budget", "samples", "accuracy", "state"}``."""

    class_: str = Field(alias="class")
    params: Settings[P]
    mix: Unit
    budget: Annotated[float, Field(ge=1.0, allow_inf_nan=False)] | None
    samples: NonNegative | None
    accuracy: Unit | None
    state: S


_STOPPING_MODELS: dict[str, type[StoppingPayload[Any, Any]]] = {
    "BetaRule": StoppingPayload[BetaParams, EmptyState],
    "DirichletRule": StoppingPayload[DirichletParams, EmptyState],
    "EntropyRule": StoppingPayload[EntropyParams, EmptyState],
    "MajorityShareRule": StoppingPayload[MajorityShareParams, EmptyState],
    "WindowRule": StoppingPayload[WindowParams, EmptyState],
    "LagrangianStopping": StoppingPayload[LagrangianParams, LagrangianState],
}
#: The schema of a registered rule class that has none of its own (unfitted rules only).
_REGISTERED = StoppingPayload[RegisteredParams, EmptyState]
_KNOBS = {"WindowRule": "window", "LagrangianStopping": "lam"}
_N_MOVES = 3


class CheckedStopping(NamedTuple):
    """A validated stopping payload and, for a LagrangianStopping, its dense count arrays."""

    payload: StoppingPayload[Any, Any]
    arrays: dict[str, NDArray[np.float64]]


def check_stopping_payload(payload: Any) -> CheckedStopping:
    """Validate a stopping payload: its class's schema, then its fields against each other.

    Returns
    -------
    CheckedStopping
        The payload and the dense ``visits_``, ``correct_``, ``moves_`` of a
        LagrangianStopping (empty for the published rules), built after their shapes and
        indices were checked.

    Raises
    ------
    FieldError
        The first field at fault, with its location from the document root.
    """
    if not isinstance(payload, dict):
        raise FieldError(("payload",), f"must be an object. Got {type(payload).__name__}.")
    name = payload.get("class")
    known: dict[str, type[StoppingPayload[Any, Any]]] = {
        **{c: _REGISTERED for c in stopping_classes()},
        **_STOPPING_MODELS,
    }
    model = known.get(name) if isinstance(name, str) else None
    if model is None:
        raise FieldError(("payload", "class"), f"{name!r:.80} is not one of {sorted(known)}.")
    checked = _validated(model, payload, ("payload",))
    low, high = checked.params.low.model_dump(), checked.params.high.model_dump()
    differ = [key for key, value in high.items() if value != low.get(key)]
    default = differ[0] if model is _REGISTERED and differ else "threshold"
    knob = _KNOBS.get(checked.class_, default)
    for key, value in high.items():
        if key != knob and value != low[key]:
            raise FieldError(
                ("payload", "params", "high", key),
                f"must equal the low setting's {key} ({low[key]!r}); the two settings differ "
                f"only in {knob}. Got {value!r}.",
            )
    figures = [checked.budget, checked.samples, checked.accuracy]
    if any(v is None for v in figures) and any(v is not None for v in figures):
        missing = ("budget", "samples", "accuracy")[[v is None for v in figures].index(True)]
        raise FieldError(
            ("payload", missing), "is null, but other calibration figures are set (all or none)."
        )
    arrays = _lagrangian_arrays(checked) if checked.class_ == "LagrangianStopping" else {}
    return CheckedStopping(checked, arrays)


def _lagrangian_arrays(p: StoppingPayload[Any, Any]) -> dict[str, NDArray[np.float64]]:
    """Check a LagrangianStopping's state against its parameters; its dense arrays."""
    s, params = p.state, p.params.low
    h, groups = s.horizon_, params.n_groups
    if params.max_samples is not None and h > params.max_samples:
        raise FieldError(
            _at("state", "horizon_"), f"must be at most max_samples={params.max_samples}. Got {h}."
        )
    if len(s.group_edges_) != groups - 1 or any(np.diff(s.group_edges_) < 0):
        raise FieldError(
            _at("state", "group_edges_"),
            f"must hold n_groups - 1 = {groups - 1} increasing edges. Got {len(s.group_edges_)}.",
        )
    if (s.prior_model_ is None) != (groups == 1):
        what = "is set, but n_groups is 1" if groups == 1 else f"is null, but n_groups is {groups}"
        raise FieldError(
            _at("state", "prior_model_"), f"{what} (a prior model exactly when n_groups > 1)."
        )
    if s.prior_model_ is not None and s.prior_model_.info.num_tree_per_iteration != 1:
        raise FieldError(
            _at("state", "prior_model_"), "The prior must be a regressor (one output)."
        )
    tables = 1 if groups == 1 else groups + 1
    shape = [tables, h, h + 1, h + 1]
    out = {}
    for name, expected in (("visits_", shape), ("correct_", shape), ("moves_", [*shape, _N_MOVES])):
        out[name] = _dense(getattr(s, name), expected, _at("state", name))
    if (out["correct_"] > out["visits_"] * (1 + 1e-9)).any():
        raise FieldError(
            _at("state", "correct_", "values"),
            "exceeds visits_ (a state's summed correctness is at most its visits).",
        )
    return out


def _dense(sparse: Sparse, shape: list[int], loc: tuple[str | int, ...]) -> NDArray[np.float64]:
    """The dense array of ``sparse``, after checking its shape, size and indices."""
    if sparse.shape != shape:
        raise FieldError(
            (*loc, "shape"), f"must be {shape} (from horizon_ and n_groups). Got {sparse.shape}."
        )
    size = math.prod(shape)
    if size > MAX_DENSE:
        raise FieldError(
            (*loc, "shape"), f"holds {size} entries, more than the {MAX_DENSE} a stopping file may."
        )
    if len(sparse.gaps) != len(sparse.values):
        raise FieldError(
            (*loc, "values"), f"has {len(sparse.values)} values for {len(sparse.gaps)} gaps."
        )
    gaps = np.asarray(sparse.gaps, dtype=np.int64)
    if gaps.size > 1 and gaps[1:].min() < 1:
        raise FieldError((*loc, "gaps"), "must be >= 1 after the first (increasing indices).")
    index = np.cumsum(gaps)
    if index.size and index[-1] >= size:
        raise FieldError(
            (*loc, "gaps"), f"reach index {int(index[-1])}, past the {size} entries of {shape}."
        )
    out = np.zeros(size)
    out[index] = np.asarray(sparse.values, dtype=np.float64)
    return out.reshape(shape)
