"""Save and load fitted policies and sequential stopping rules as JSON, without executing code.

Two kinds of file share one layout::

    {"format": "computealloc.policy", "version": 1, "sha256": "<hex>", "payload": {...}}
    {"format": "computealloc.stopping", "version": 1, "sha256": "<hex>", "payload": {...}}

A policy payload (:func:`save_policy`) is ``{"class", "params", "fitted", "state"}``: the
constructor parameters, the attributes every policy has (actions, costs, cost unit, feature
names, calibrated ``lam_``, ``mix_`` and ``budget_``, the probe samples ``probe_m_`` its
features read) and the policy's own fitted state. A stopping payload (:func:`save_stopping`)
holds a :class:`~computealloc.fitting.sequential.CalibratedStopping`: ``{"class", "params": {"low",
"high"}, "mix", "budget", "samples", "accuracy", "state"}``, the two settings' constructor
parameters, the calibration figures (null for a rule saved uncalibrated) and, for
:class:`~computealloc.fitting.sequential.LagrangianStopping`, the fitted state the two settings
share, its count arrays stored sparsely (``{"shape", "gaps", "values"}``: the flat indices of the
nonzero entries as gaps from one to the next, and their values; most vote states are never
visited).

LightGBM models are embedded in LightGBM's own text format. ``sha256`` is the digest of the
canonical JSON of ``payload``, so an edited or damaged file is refused. Loading only
instantiates the classes of an allow-list and parses LightGBM's text format; nothing in the
file is executed.

Loading is bounded and validated before anything is built
(:mod:`computealloc.fitting.persist_schema`): a size cap and a nesting-depth scan before
``json.loads``, the envelope and the checksum, then a pydantic schema of the payload's class (types,
ranges, no unknown field), the fields checked against each other, every LightGBM text checked by
:func:`~computealloc.fitting.lgbm_text.check_model_text` before LightGBM parses it; the built policy
then scores (and decides) one query. Every failure is a :class:`PolicyFileError` "Policy file PATH,
field LOC: what is wrong" (or "Stopping file ..."), so a file that loads answers requests.

Notes
-----
The digest detects damage and edits made without recomputing it; it is not a signature.
Keep policy files where only trusted writers can change them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from lightgbm.basic import LightGBMError
from numpy.typing import NDArray

from computealloc.estimation.units import Pricing
from computealloc.files import atomic_write
from computealloc.fitting.persist_schema import (
    CheckedModel,
    CheckedStopping,
    FieldError,
    PolicyFileError,
    PolicyPayload,
    check_policy_payload,
    check_stopping_payload,
    file_error,
    read_document,
)
from computealloc.fitting.policies import BasePolicy
from computealloc.fitting.sequential import CalibratedStopping, LagrangianStopping, StoppingRule
from computealloc.methods import classes

__all__ = [
    "FORMAT",
    "STOPPING_FORMAT",
    "VERSION",
    "PolicyFileError",
    "load_file",
    "load_policy",
    "load_stopping",
    "save_policy",
    "save_stopping",
]

FORMAT = "computealloc.policy"
STOPPING_FORMAT = "computealloc.stopping"
VERSION = 1
#: The allow-lists: the classes of the registered methods (:mod:`computealloc.methods`).
_CLASSES: dict[str, type[BasePolicy]] = classes("policy")
_STOPPING_CLASSES: dict[str, type[StoppingRule]] = classes("stopping")
#: Optional scalar attributes of a fitted policy and their types.
_SCALARS: dict[str, type[float] | type[int]] = {
    "lam_": float,
    "mix_": float,
    "budget_": float,
    "probe_m_": int,
}
_CALIBRATION = ("budget", "samples", "accuracy")
_SPARSE = ("visits_", "correct_", "moves_")

_T = TypeVar("_T")


class _Kind(NamedTuple):
    """One kind of file: its format string and how messages name it."""

    format: str
    label: str
    noun: str
    loader: str


_POLICY = _Kind(FORMAT, "Policy file", "a computealloc policy", "load_policy")
_STOPPING = _Kind(STOPPING_FORMAT, "Stopping file", "a computealloc stopping rule", "load_stopping")
_KINDS = {kind.format: kind for kind in (_POLICY, _STOPPING)}


# --------------------------------------------------------------------------- documents


def _digest(payload: dict[str, Any], *, allow_nan: bool = False) -> str:
    """SHA-256 of the canonical JSON of ``payload`` (``allow_nan`` to check a tampered one)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=allow_nan)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _write_document(path: str | os.PathLike[str], kind: _Kind, payload: dict[str, Any]) -> None:
    document = {
        "format": kind.format,
        "version": VERSION,
        "sha256": _digest(payload),
        "payload": payload,
    }
    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    atomic_write(path, lambda fh: fh.write(text))


def _read_document(path: str | os.PathLike[str], kind: _Kind) -> dict[str, Any]:
    """The checked envelope of a file of ``kind``: its payload, not yet validated."""
    return _envelope(path, kind, read_document(path, kind.label))


def _envelope(path: str | os.PathLike[str], kind: _Kind, document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise file_error(
            kind.label,
            path,
            f"is not {kind.noun}: a JSON {type(document).__name__}, not an object.",
        )
    found = document.get("format")
    if found != kind.format:
        other = _KINDS.get(found) if isinstance(found, str) else None
        if other is not None:
            raise file_error(
                kind.label,
                path,
                f"the file is {other.noun} (format {other.format!r}), not {kind.noun}; load it "
                f"with {other.loader}.",
                ("format",),
            )
        raise file_error(
            kind.label,
            path,
            f"is not {kind.noun}: expected {kind.format!r}. Got {found!r:.80}.",
            ("format",),
        )
    unknown = sorted(set(document) - {"format", "version", "sha256", "payload"})
    if unknown:
        raise file_error(
            kind.label, path, "unknown field (not written by computealloc).", (unknown[0],)
        )
    if document.get("version") != VERSION or isinstance(document.get("version"), bool):
        raise file_error(
            kind.label,
            path,
            f"format version {document.get('version')!r:.40}; this computealloc reads "
            f"version {VERSION}.",
            ("version",),
        )
    payload = document.get("payload")
    if not isinstance(payload, dict):
        raise file_error(kind.label, path, "must be an object.", ("payload",))
    if document.get("sha256") != _digest(payload, allow_nan=True):
        raise file_error(
            kind.label,
            path,
            "checksum mismatch: the payload was damaged or edited after it was written.",
            ("sha256",),
        )
    return payload


def _checked(
    path: str | os.PathLike[str], kind: _Kind, check: Callable[[Any], _T], payload: Any
) -> _T:
    """``check(payload)``, its FieldError reported as a PolicyFileError naming the file."""
    try:
        return check(payload)
    except FieldError as exc:
        raise file_error(kind.label, path, exc.message, exc.loc) from exc


@contextmanager
def _building(path: str | os.PathLike[str], kind: _Kind, what: str) -> Iterator[None]:
    """Report a validated payload that still does not rebuild (a safety net) by its file."""
    try:
        yield
    except (ArithmeticError, IndexError, KeyError, TypeError, ValueError, LightGBMError) as exc:
        raise file_error(kind.label, path, f"{what}: {exc}", ("payload",)) from exc


def _plain(value: Any) -> Any:
    """A validated state value as the policies store it (model texts as str)."""
    if isinstance(value, CheckedModel):
        return value.text
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- policies


def _fitted(policy: BasePolicy) -> dict[str, Any]:
    fitted: dict[str, Any] = {
        "actions_": list(policy.actions_),
        "costs_": np.asarray(policy.costs_, dtype=np.float64).tolist(),
        "cost_unit_": policy.cost_unit_,
        "prices_": dict(getattr(policy, "prices_", {})),
        "n_features_in_": int(policy.n_features_in_),
    }
    if hasattr(policy, "feature_names_in_"):
        fitted["feature_names_in_"] = [str(v) for v in policy.feature_names_in_]
    for name, kind in _SCALARS.items():
        if hasattr(policy, name):
            fitted[name] = kind(getattr(policy, name))
    return fitted


def save_policy(policy: BasePolicy, path: str | os.PathLike[str]) -> None:
    """Write a fitted policy to a JSON file (atomically).

    Parameters
    ----------
    policy : BasePolicy
        A fitted (and usually calibrated) policy of a class in the allow-list: Uniform, Random,
        LengthHeuristic, Imitation, Value.
    path : str or path-like
        Destination, conventionally ``*.json``.
    """
    name = type(policy).__name__
    if _CLASSES.get(name) is not type(policy):
        raise TypeError(
            f"save_policy supports the policies {sorted(_CLASSES)}. Got {name} instead."
        )
    policy.check_fitted()
    params = policy.get_params(deep=False)
    if not isinstance(params.get("random_state"), (int, type(None))):
        raise ValueError(
            "Only a policy whose random_state is an int or None can be saved. Got "
            f"{type(params['random_state']).__name__}."
        )
    payload = {
        "class": name,
        "params": params,
        "fitted": _fitted(policy),
        "state": policy.fitted_state(),
    }
    _write_document(path, _POLICY, payload)


def _check_expected(
    path: str | os.PathLike[str],
    what: str,
    field: str,
    found: Sequence[str] | None,
    expected: Sequence[str],
) -> None:
    if found is None or list(found) != list(expected):
        raise file_error(
            _POLICY.label,
            path,
            f"the policy was fitted with {what} {found}, but the caller expects {list(expected)}.",
            ("payload", "fitted", field),
        )


def _restore(path: str | os.PathLike[str], checked: PolicyPayload[Any, Any]) -> BasePolicy:
    """The policy a validated payload describes, checked to score a query."""
    fitted = checked.fitted
    with _building(path, _POLICY, "the payload does not rebuild the policy"):
        policy = _CLASSES[checked.class_](**checked.params.model_dump())
        policy.actions_ = tuple(fitted.actions_)
        policy.costs_ = np.asarray(fitted.costs_, dtype=np.float64)
        pricing = Pricing.parse(
            fitted.cost_unit_, fitted.prices_, where="prices_", unit_where="cost_unit_"
        )
        policy.cost_unit_ = pricing.unit
        policy.prices_ = pricing.to_dict()["prices"]
        policy.n_features_in_ = fitted.n_features_in_
        if fitted.feature_names_in_ is not None:
            policy.feature_names_in_ = np.asarray(fitted.feature_names_in_, dtype=object)
        for name, kind in _SCALARS.items():
            value = getattr(fitted, name)
            if value is not None:
                setattr(policy, name, kind(value))
        policy.set_fitted_state({k: _plain(v) for k, v in checked.state if v is not None})
    with _building(path, _POLICY, "the policy does not score a query"):
        _score_one(policy)
    return policy


def _score_one(policy: BasePolicy) -> None:
    """Decide (or, uncalibrated, score) one all-zero query, as a request would."""
    x = np.zeros((1, policy.n_features_in_))
    names = getattr(policy, "feature_names_in_", None)
    X = x if names is None else pd.DataFrame(x, columns=list(names))
    k = len(policy.actions_)
    if hasattr(policy, "budget_"):
        actions = policy.predict(X)
        if actions.shape != (1,) or not 0 <= int(actions[0]) < k:
            raise ValueError(f"an action index out of [0, {k}): {actions.tolist()}")
        return
    scores = policy.scores(X)
    if scores.shape != (1, k) or not np.isfinite(scores).all():
        raise ValueError(f"scores of shape {scores.shape}, finite: {np.isfinite(scores).all()}")


def load_policy(
    path: str | os.PathLike[str],
    *,
    actions: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
) -> BasePolicy:
    """Load a policy written by :func:`save_policy`.

    Parameters
    ----------
    path : str or path-like
        The policy file.
    actions : sequence of str, optional
        Action specs the caller will execute; a policy fitted on other actions is refused.
    feature_names : sequence of str, optional
        Feature columns the caller will provide; a policy fitted on other features is refused.

    Returns
    -------
    BasePolicy
        A policy that predicts exactly what the saved one predicted.

    Raises
    ------
    PolicyFileError
        "Policy file PATH, field LOC: ...": the file is unreadable, larger than 256 MiB or
        nested deeper than 32 levels, not a policy file (a stopping file names
        :func:`load_stopping`), of another version, tampered with (checksum mismatch), names a
        class outside the allow-list, fails its schema or the checks of its fields against
        each other (:mod:`computealloc.fitting.persist_schema`), embeds a LightGBM model text that
        is cut short or inconsistent, or does not match ``actions`` / ``feature_names``.
    """
    return _load_policy(path, _read_document(path, _POLICY), actions, feature_names)


def _load_policy(
    path: str | os.PathLike[str],
    payload: dict[str, Any],
    actions: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
) -> BasePolicy:
    policy = _restore(path, _checked(path, _POLICY, check_policy_payload, payload))
    if actions is not None:
        _check_expected(path, "actions", "actions_", list(policy.actions_), actions)
    if feature_names is not None:
        found = getattr(policy, "feature_names_in_", None)
        names = None if found is None else list(found)
        _check_expected(path, "features", "feature_names_in_", names, feature_names)
    return policy


# --------------------------------------------------------------------------- stopping rules


def _sparse(array: NDArray[np.float64]) -> dict[str, Any]:
    """The nonzero entries of an array: its shape, their flat indices as gaps, their values.

    ``gaps`` holds the first flat index, then the distance from each index to the next (small
    numbers where the entries cluster); values that are all whole numbers (counts) are
    written as JSON integers.
    """
    flat = np.asarray(array, dtype=np.float64).ravel()
    index = np.flatnonzero(flat)
    values = flat[index]
    whole = bool(np.all((values == np.trunc(values)) & (np.abs(values) < 2.0**53)))
    return {
        "shape": list(array.shape),
        "gaps": np.diff(index, prepend=0).tolist(),
        "values": values.astype(np.int64).tolist() if whole else values.tolist(),
    }


def _rule_state(rule: StoppingRule) -> dict[str, Any]:
    """JSON-serialisable fitted state of a rule (empty for the unfitted published rules)."""
    if not isinstance(rule, LagrangianStopping):
        return {}
    rule.check_fitted()
    model = rule.prior_model_
    state: dict[str, Any] = {name: _sparse(getattr(rule, name)) for name in _SPARSE}
    state["horizon_"] = int(rule.horizon_)
    state["group_edges_"] = np.asarray(rule.group_edges_, dtype=np.float64).tolist()
    state["prior_model_"] = None if model is None else model.model_to_string()
    return state


def _rebuild(path: str | os.PathLike[str], checked: CheckedStopping) -> CalibratedStopping:
    """The calibrated rule a validated stopping payload describes, checked to decide."""
    p = checked.payload
    with _building(path, _STOPPING, "the payload does not rebuild the rule"):
        low = _STOPPING_CLASSES[p.class_](**p.params.low.model_dump())
        if isinstance(low, LagrangianStopping):
            state = p.state
            low.visits_, low.correct_, low.moves_ = (checked.arrays[n] for n in _SPARSE)
            low.horizon_ = state.horizon_
            low.group_edges_ = np.asarray(state.group_edges_, dtype=np.float64)
            model = state.prior_model_
            low.prior_model_ = None if model is None else lgb.Booster(model_str=model.text)
            low.reset_caches()
        high = copy.copy(low).set_params(**p.params.high.model_dump())
        figures = (math.nan if v is None else float(v) for v in (p.budget, p.samples, p.accuracy))
        rule = CalibratedStopping(low, high, float(p.mix), *figures)
    with _building(path, _STOPPING, "the rule does not decide a query"):
        _decide_one(rule)
    return rule


def _decide_one(rule: CalibratedStopping) -> None:
    """Decide one query after one answer with both settings, as a request would."""
    low = rule.low
    prior = None
    if isinstance(low, LagrangianStopping) and low.prior_model_ is not None:
        n_features = low.prior_model_.num_feature()
        prior = float(low.predict_prior(np.zeros((1, n_features)))[0])
    for setting in (rule.low, rule.high):
        setting.should_stop(["a"], prior)
    if isinstance(low, LagrangianStopping):
        low.reset_caches()  # the check's decision tables are not kept


def _rule_params(rule: StoppingRule) -> dict[str, Any]:
    params = rule.get_params(deep=False)
    for name, value in params.items():
        plain = value is None or isinstance(value, (str, int, float))
        if not plain or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(
                f"save_stopping saves rules whose parameters are None, int, finite float or "
                f"str. Got {name}={value!r} in {type(rule).__name__}."
            )
    return params


def _allowed(rule: object) -> bool:
    return _STOPPING_CLASSES.get(type(rule).__name__) is type(rule)


def _calibrated(rule: object) -> CalibratedStopping:
    """``rule`` as a CalibratedStopping of allow-listed rules (a bare rule: both settings)."""
    if isinstance(rule, StoppingRule) and _allowed(rule):
        return CalibratedStopping(rule, rule, 0.0, math.nan, math.nan, math.nan)
    if isinstance(rule, CalibratedStopping) and _allowed(rule.low) and _allowed(rule.high):
        return rule
    got = (
        f"CalibratedStopping of {type(rule.low).__name__} and {type(rule.high).__name__}"
        if isinstance(rule, CalibratedStopping)
        else type(rule).__name__
    )
    raise TypeError(
        f"save_stopping supports the stopping rules {sorted(_STOPPING_CLASSES)} and "
        f"CalibratedStopping of them. Got {got} instead."
    )


def save_stopping(rule: StoppingRule | CalibratedStopping, path: str | os.PathLike[str]) -> None:
    """Write a sequential stopping rule to a JSON file (atomically).

    Parameters
    ----------
    rule : StoppingRule or CalibratedStopping
        A calibrated rule (:func:`~computealloc.fitting.sequential.calibrate_stopping`), or a bare
        rule, saved as the calibration that always uses it (``mix`` 0, no budget). The rules must be
        of the allow-list: BetaRule, DirichletRule, EntropyRule, MajorityShareRule, WindowRule,
        LagrangianStopping (fitted); the two settings of a calibration must share their class
        and fitted state, as :func:`~computealloc.fitting.sequential.calibrate_stopping` makes them.
    path : str or path-like
        Destination, conventionally ``*.json``.

    Notes
    -----
    A fitted :class:`~computealloc.fitting.sequential.LagrangianStopping` stores its visited vote
    states only (a few hundred kB for a 40-sample horizon with a prior of 4 groups) and its
    prior regressor in LightGBM's text format.
    """
    calibrated = _calibrated(rule)
    low, high = calibrated.low, calibrated.high
    params = {"low": _rule_params(low), "high": _rule_params(high)}
    state = _rule_state(low)
    if type(high) is not type(low) or (high is not low and _rule_state(high) != state):
        raise ValueError(
            "save_stopping needs the low and high rules of a CalibratedStopping to share one "
            "class and one fitted state (as calibrate_stopping makes them)."
        )
    payload: dict[str, Any] = {
        "class": type(low).__name__,
        "params": params,
        "mix": float(calibrated.mix),
        "state": state,
    }
    for name in _CALIBRATION:
        value = float(getattr(calibrated, name))
        payload[name] = None if math.isnan(value) else value
    _write_document(path, _STOPPING, payload)


def load_stopping(path: str | os.PathLike[str]) -> CalibratedStopping:
    """Load a stopping rule written by :func:`save_stopping`.

    Parameters
    ----------
    path : str or path-like
        The stopping file.

    Returns
    -------
    CalibratedStopping
        Settings that decide exactly as the saved ones did; they share one fitted state, as
        after :func:`~computealloc.fitting.sequential.calibrate_stopping`. A bare rule comes back
        with ``low`` and ``high`` equal to it, ``mix`` 0 and NaN ``budget``, ``samples`` and
        ``accuracy``.

    Raises
    ------
    PolicyFileError
        "Stopping file PATH, field LOC: ...": as :func:`load_policy` (a policy file names
        :func:`load_policy`); sparse count arrays whose shape does not follow the horizon and
        the groups, exceeds 2^25 entries, or whose indices leave it, are refused before any
        array is allocated.
    """
    return _load_stopping(path, _read_document(path, _STOPPING))


def _load_stopping(path: str | os.PathLike[str], payload: dict[str, Any]) -> CalibratedStopping:
    return _rebuild(path, _checked(path, _STOPPING, check_stopping_payload, payload))


def load_file(path: str | os.PathLike[str]) -> BasePolicy | CalibratedStopping:
    """Load a policy file or a stopping file, whichever ``path`` holds.

    Returns
    -------
    BasePolicy or CalibratedStopping
        :func:`load_policy` of a policy file, :func:`load_stopping` of a stopping file.

    Raises
    ------
    PolicyFileError
        As :func:`load_policy` for anything that is not a stopping file.
    """
    document = read_document(path, _POLICY.label)
    if isinstance(document, dict) and document.get("format") == STOPPING_FORMAT:
        return _load_stopping(path, _envelope(path, _STOPPING, document))
    return _load_policy(path, _envelope(path, _POLICY, document))
