"""Save and load fitted policies as JSON, without executing code (no pickle).

A policy file is one JSON document::

    {"format": "computealloc.policy", "version": 1, "sha256": "<hex>",
     "payload": {"class": "Value", "params": {...}, "fitted": {...}, "state": {...}}}

``params`` are the constructor parameters, ``fitted`` the attributes every policy has
(actions, costs, cost unit, feature names, calibrated ``lam_``, ``mix_`` and ``budget_``),
``state`` the policy's own fitted state; LightGBM models are embedded in LightGBM's own text
format. ``sha256`` is the digest of the canonical JSON of ``payload``, so an edited or damaged
file is refused. Loading only instantiates the classes of an allow-list and parses LightGBM's
text format; nothing in the file is executed.

Notes
-----
The digest detects damage and edits made without recomputing it; it is not a signature.
Keep policy files where only trusted writers can change them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from computealloc.policies import BasePolicy, Imitation, LengthHeuristic, Random, Uniform, Value
from computealloc.table import atomic_write

__all__ = ["FORMAT", "VERSION", "PolicyFileError", "load_policy", "save_policy"]

FORMAT = "computealloc.policy"
VERSION = 1
_CLASSES: dict[str, type[BasePolicy]] = {
    cls.__name__: cls for cls in (Uniform, Random, LengthHeuristic, Imitation, Value)
}
_OPTIONAL = ("feature_names_in_", "lam_", "mix_", "budget_")


class PolicyFileError(ValueError):
    """A policy file that cannot be loaded: damaged, foreign, or not what the caller expects."""


def _digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _fitted(policy: BasePolicy) -> dict[str, Any]:
    fitted: dict[str, Any] = {
        "actions_": list(policy.actions_),
        "costs_": np.asarray(policy.costs_, dtype=np.float64).tolist(),
        "cost_unit_": policy.cost_unit_,
        "n_features_in_": int(policy.n_features_in_),
    }
    for name in _OPTIONAL:
        if hasattr(policy, name):
            value = getattr(policy, name)
            fitted[name] = [str(v) for v in value] if name == "feature_names_in_" else float(value)
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
    document = {
        "format": FORMAT,
        "version": VERSION,
        "sha256": _digest(payload),
        "payload": payload,
    }
    text = json.dumps(document, indent=1, allow_nan=False)
    atomic_write(path, lambda fh: fh.write(text))


def _read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyFileError(f"Policy file {path} is not readable JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise PolicyFileError(
            f"Policy file {path} is not a computealloc policy (format {FORMAT!r})."
        )
    if document.get("version") != VERSION:
        raise PolicyFileError(
            f"Policy file {path} has format version {document.get('version')!r}; this "
            f"computealloc reads version {VERSION}."
        )
    payload = document.get("payload")
    if not isinstance(payload, dict) or document.get("sha256") != _digest(payload):
        raise PolicyFileError(f"Policy file {path} is corrupted: checksum mismatch.")
    return payload


def _check_expected(
    path: str | os.PathLike[str], what: str, found: Sequence[str] | None, expected: Sequence[str]
) -> None:
    if found is None or list(found) != list(expected):
        raise PolicyFileError(
            f"Policy file {path} was fitted with {what} {found}, but the caller expects "
            f"{list(expected)}."
        )


def _restore(path: str | os.PathLike[str], payload: dict[str, Any]) -> BasePolicy:
    cls = _CLASSES.get(str(payload.get("class")))
    if cls is None:
        raise PolicyFileError(
            f"Policy file {path} holds class {payload.get('class')!r}, which is not one of "
            f"{sorted(_CLASSES)}."
        )
    try:
        policy = cls(**payload["params"])
        fitted = payload["fitted"]
        policy.actions_ = tuple(str(a) for a in fitted["actions_"])
        policy.costs_ = np.asarray(fitted["costs_"], dtype=np.float64)
        policy.cost_unit_ = str(fitted["cost_unit_"])
        policy.n_features_in_ = int(fitted["n_features_in_"])
        if "feature_names_in_" in fitted:
            policy.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
        for name in ("lam_", "mix_", "budget_"):
            if name in fitted:
                setattr(policy, name, float(fitted[name]))
        policy._set_state(payload["state"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PolicyFileError(f"Policy file {path} has an invalid payload: {exc!r}") from exc
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
        The file is unreadable, not a policy file, of another version, tampered with
        (checksum mismatch), names a class outside the allow-list, or does not match
        ``actions`` / ``feature_names``.
    """
    payload = _read_document(path)
    policy = _restore(path, payload)
    if actions is not None:
        _check_expected(path, "actions", list(policy.actions_), actions)
    if feature_names is not None:
        found = getattr(policy, "feature_names_in_", None)
        _check_expected(path, "features", None if found is None else list(found), feature_names)
    return policy
