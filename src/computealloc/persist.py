"""Save and load fitted policies and sequential stopping rules as JSON, without executing code.

Two kinds of file share one layout::

    {"format": "computealloc.policy", "version": 1, "sha256": "<hex>", "payload": {...}}
    {"format": "computealloc.stopping", "version": 1, "sha256": "<hex>", "payload": {...}}

A policy payload (:func:`save_policy`) is ``{"class", "params", "fitted", "state"}``: the
constructor parameters, the attributes every policy has (actions, costs, cost unit, feature
names, calibrated ``lam_``, ``mix_`` and ``budget_``, the probe samples ``probe_m_`` its
features read) and the policy's own fitted state. A stopping payload (:func:`save_stopping`)
holds a :class:`~computealloc.sequential.CalibratedStopping`: ``{"class", "params": {"low",
"high"}, "mix", "budget", "samples", "accuracy", "state"}``, the two settings' constructor
parameters, the calibration figures (null for a rule saved uncalibrated) and, for
:class:`~computealloc.sequential.LagrangianStopping`, the fitted state the two settings share,
its count arrays stored sparsely (``{"shape", "gaps", "values"}``: the flat indices of the
nonzero entries as gaps from one to the next, and their values; most vote states are never
visited).

LightGBM models are embedded in LightGBM's own text format. ``sha256`` is the digest of the
canonical JSON of ``payload``, so an edited or damaged file is refused. Loading only
instantiates the classes of an allow-list and parses LightGBM's text format; nothing in the
file is executed.

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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

from computealloc.policies import BasePolicy, Imitation, LengthHeuristic, Random, Uniform, Value
from computealloc.sequential import (
    BetaRule,
    CalibratedStopping,
    DirichletRule,
    EntropyRule,
    LagrangianStopping,
    MajorityShareRule,
    StoppingRule,
    WindowRule,
)
from computealloc.table import atomic_write
from computealloc.units import Pricing

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
_CLASSES: dict[str, type[BasePolicy]] = {
    cls.__name__: cls for cls in (Uniform, Random, LengthHeuristic, Imitation, Value)
}
_STOPPING_CLASSES: dict[str, type[StoppingRule]] = {
    cls.__name__: cls
    for cls in (
        BetaRule,
        DirichletRule,
        EntropyRule,
        MajorityShareRule,
        WindowRule,
        LagrangianStopping,
    )
}
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


class PolicyFileError(ValueError):
    """A policy or stopping file that cannot be loaded: damaged, foreign, or not as expected."""


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


def _digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
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
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyFileError(f"{kind.label} {path} is not readable JSON: {exc}") from exc
    found = document.get("format") if isinstance(document, dict) else None
    if found != kind.format:
        other = _KINDS.get(found) if isinstance(found, str) else None
        if other is not None:
            raise PolicyFileError(
                f"File {path} is {other.noun} (format {other.format!r}), not {kind.noun}; "
                f"load it with {other.loader}."
            )
        raise PolicyFileError(f"{kind.label} {path} is not {kind.noun} (format {kind.format!r}).")
    if document.get("version") != VERSION:
        raise PolicyFileError(
            f"{kind.label} {path} has format version {document.get('version')!r}; this "
            f"computealloc reads version {VERSION}."
        )
    payload = document.get("payload")
    if not isinstance(payload, dict) or document.get("sha256") != _digest(payload):
        raise PolicyFileError(f"{kind.label} {path} is corrupted: checksum mismatch.")
    return payload


def _class_of(
    path: str | os.PathLike[str],
    kind: _Kind,
    payload: dict[str, Any],
    classes: Mapping[str, type[_T]],
) -> type[_T]:
    cls = classes.get(str(payload.get("class")))
    if cls is None:
        raise PolicyFileError(
            f"{kind.label} {path} holds class {payload.get('class')!r}, which is not one of "
            f"{sorted(classes)}."
        )
    return cls


@contextmanager
def _reading(path: str | os.PathLike[str], kind: _Kind) -> Iterator[None]:
    """Report a payload that does not rebuild as an invalid-payload PolicyFileError."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, lgb.basic.LightGBMError) as exc:
        raise PolicyFileError(f"{kind.label} {path} has an invalid payload: {exc!r}") from exc


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
    policy._check_fitted()
    params = policy.get_params(deep=False)
    if not isinstance(params.get("random_state"), (int, type(None))):
        raise ValueError(
            "Only a policy whose random_state is an int or None can be saved. Got "
            f"{type(params['random_state']).__name__}."
        )
    payload = {"class": name, "params": params, "fitted": _fitted(policy), "state": policy._state()}
    _write_document(path, _POLICY, payload)


def _check_expected(
    path: str | os.PathLike[str], what: str, found: Sequence[str] | None, expected: Sequence[str]
) -> None:
    if found is None or list(found) != list(expected):
        raise PolicyFileError(
            f"Policy file {path} was fitted with {what} {found}, but the caller expects "
            f"{list(expected)}."
        )


def _restore(path: str | os.PathLike[str], payload: dict[str, Any]) -> BasePolicy:
    cls = _class_of(path, _POLICY, payload, _CLASSES)
    with _reading(path, _POLICY):
        policy = cls(**payload["params"])
        fitted = payload["fitted"]
        policy.actions_ = tuple(str(a) for a in fitted["actions_"])
        policy.costs_ = np.asarray(fitted["costs_"], dtype=np.float64)
        pricing = Pricing.parse(
            fitted["cost_unit_"],
            fitted.get("prices_", {}),
            where="prices_",
            unit_where="cost_unit_",
        )
        policy.cost_unit_ = pricing.unit
        policy.prices_ = pricing.to_dict()["prices"]
        policy.n_features_in_ = int(fitted["n_features_in_"])
        if "feature_names_in_" in fitted:
            policy.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
        for name, kind in _SCALARS.items():
            if name in fitted:
                setattr(policy, name, kind(fitted[name]))
        policy._set_state(payload["state"])
    return policy


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
        The file is unreadable, not a policy file (a stopping file names
        :func:`load_stopping`), of another version, tampered with (checksum mismatch), names a
        class outside the allow-list, or does not match ``actions`` / ``feature_names``.
    """
    payload = _read_document(path, _POLICY)
    policy = _restore(path, payload)
    if actions is not None:
        _check_expected(path, "actions", list(policy.actions_), actions)
    if feature_names is not None:
        found = getattr(policy, "feature_names_in_", None)
        _check_expected(path, "features", None if found is None else list(found), feature_names)
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


def _dense(sparse: dict[str, Any]) -> NDArray[np.float64]:
    """The array :func:`_sparse` described."""
    shape = tuple(int(s) for s in sparse["shape"])
    index = np.cumsum(np.asarray(sparse["gaps"], dtype=np.int64))
    out = np.zeros(math.prod(shape))
    if index.size and (index.min() < 0 or index.max() >= out.size):
        raise ValueError(f"sparse indices out of range for shape {shape}")
    out[index] = np.asarray(sparse["values"], dtype=np.float64)
    return out.reshape(shape)


def _rule_state(rule: StoppingRule) -> dict[str, Any]:
    """JSON-serialisable fitted state of a rule (empty for the unfitted published rules)."""
    if not isinstance(rule, LagrangianStopping):
        return {}
    rule._check_fitted()
    model = rule.prior_model_
    state: dict[str, Any] = {name: _sparse(getattr(rule, name)) for name in _SPARSE}
    state["horizon_"] = int(rule.horizon_)
    state["group_edges_"] = np.asarray(rule.group_edges_, dtype=np.float64).tolist()
    state["prior_model_"] = None if model is None else model.model_to_string()
    return state


def _set_rule_state(rule: StoppingRule, state: dict[str, Any]) -> None:
    """Restore what :func:`_rule_state` returned."""
    if not isinstance(rule, LagrangianStopping):
        return
    rule.visits_, rule.correct_, rule.moves_ = (_dense(state[name]) for name in _SPARSE)
    rule.horizon_ = int(state["horizon_"])
    rule.group_edges_ = np.asarray(state["group_edges_"], dtype=np.float64)
    model = state["prior_model_"]
    rule.prior_model_ = None if model is None else lgb.Booster(model_str=model)
    rule._reset_caches()


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
        A calibrated rule (:func:`~computealloc.sequential.calibrate_stopping`), or a bare rule,
        saved as the calibration that always uses it (``mix`` 0, no budget). The rules must be
        of the allow-list: BetaRule, DirichletRule, EntropyRule, MajorityShareRule, WindowRule,
        LagrangianStopping (fitted); the two settings of a calibration must share their class
        and fitted state, as :func:`~computealloc.sequential.calibrate_stopping` makes them.
    path : str or path-like
        Destination, conventionally ``*.json``.

    Notes
    -----
    A fitted :class:`~computealloc.sequential.LagrangianStopping` stores its visited vote
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
        after :func:`~computealloc.sequential.calibrate_stopping`. A bare rule comes back with
        ``low`` and ``high`` equal to it, ``mix`` 0 and NaN ``budget``, ``samples`` and
        ``accuracy``.

    Raises
    ------
    PolicyFileError
        The file is unreadable, not a stopping file (a policy file names :func:`load_policy`),
        of another version, tampered with (checksum mismatch), names a class outside the
        allow-list, or its payload does not rebuild the rule.
    """
    payload = _read_document(path, _STOPPING)
    cls = _class_of(path, _STOPPING, payload, _STOPPING_CLASSES)
    with _reading(path, _STOPPING):
        params = payload["params"]
        low = cls(**params["low"])
        _set_rule_state(low, payload["state"])
        high = copy.copy(low).set_params(**params["high"])
        figures = (math.nan if payload[k] is None else float(payload[k]) for k in _CALIBRATION)
        return CalibratedStopping(low, high, float(payload["mix"]), *figures)


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
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        document = None
    found = document.get("format") if isinstance(document, dict) else None
    return load_stopping(path) if found == STOPPING_FORMAT else load_policy(path)
