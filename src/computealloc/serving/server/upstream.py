"""Opening the backends the proxy samples: one replayed log or OpenAI-compatible URL, or one
backend per arm (``--backend`` values or :class:`~computealloc.data.arms.Arm` objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from computealloc.data import datasets
from computealloc.data.arms import Arm, open_arms, parse_arm
from computealloc.data.backends import Backend, ReplayBackend

__all__ = ["open_backends"]


def open_backends(
    spec: str | Sequence[str | Arm],
    *,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_attempts: int = 6,
    seed: int = 0,
    client: Literal["aiohttp", "openai"] = "aiohttp",
) -> Backend | dict[str, Backend]:
    """The backend(s) named by ``--backend`` values or arms.

    Parameters
    ----------
    spec : str or sequence of str or Arm
        One backend: ``"replay:LOG"`` (``LOG`` a sample log file or a
        :mod:`computealloc.data.datasets` name, e.g. ``"replay:mot_cascade:llama-2-13b/gsm/pot2"``)
        or an ``http(s)://`` URL of an OpenAI-compatible server, including ``/v1``. Several
        arms: ``"NAME=URL"`` (or ``"NAME=replay:LOG"``) each, where ``NAME`` is the arm (model)
        the policy's actions name, also sent upstream as the model; or
        :class:`~computealloc.data.arms.Arm` objects (a serve config file's ``arms``).
    model : str, optional
        The served model name of a single unnamed URL (required there); with a replayed log
        holding several models, the one to replay (default: one backend per model, for routing).
    api_key : str, optional
        Key for the upstream servers (arms may name their own).
    timeout : float
        Seconds per upstream request.
    max_attempts : int
        Attempts per upstream request (retries on 429/5xx, timeouts, malformed replies).
    seed : int
        Serving order of a replayed log.
    client : {"aiohttp", "openai"}
        Transport to a URL backend (see :class:`~computealloc.data.backends.OpenAIBackend`).

    Returns
    -------
    Backend or dict of str to Backend
        One backend, or one per arm name (:func:`~computealloc.data.arms.open_arms`).

    Raises
    ------
    ValueError
        Naming ``--backend``: a value that is none of these forms, an arm given twice, or
        named and unnamed values mixed.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    if len(specs) == 1 and isinstance(specs[0], str) and _unnamed(specs[0]):
        return _open_one(specs[0], model, api_key, timeout, max_attempts, seed, client)
    if not specs or any(isinstance(s, str) and _unnamed(s) for s in specs):
        raise ValueError(
            "With several --backend values, name each one's arm: --backend NAME=URL (NAME the "
            f"model the policy's actions route to). Got {specs!r}."
        )
    arms = [parse_arm(s) if isinstance(s, str) else s for s in specs]
    return open_arms(
        arms, api_key=api_key, timeout=timeout, max_attempts=max_attempts, seed=seed, client=client
    )


def _unnamed(spec: str) -> bool:
    """Whether a ``--backend`` value is a bare URL, a replay, or a mistake (not NAME=...)."""
    return spec.startswith(("http://", "https://", "replay:")) or "=" not in spec


def _open_one(
    spec: str,
    model: str | None,
    api_key: str | None,
    timeout: float,
    max_attempts: int,
    seed: int,
    client: Literal["aiohttp", "openai"],
) -> Backend | dict[str, Backend]:
    from computealloc.data.backends import OpenAIBackend, RetryPolicy

    if spec.startswith("replay:"):
        log = datasets.open_log(spec.removeprefix("replay:"))
        if model is not None or len(log.models) == 1:
            return ReplayBackend(log, model, seed=seed)
        return {m: ReplayBackend(log, m, seed=seed) for m in log.models}
    if spec.startswith(("http://", "https://")):
        if model is None:
            raise ValueError(
                f"A backend URL needs the model name it serves (--model, or --backend "
                f"NAME=URL). Got {spec!r}."
            )
        retry = RetryPolicy(max_attempts=max_attempts)
        return OpenAIBackend(
            spec, model, api_key=api_key, timeout=timeout, retry=retry, client=client
        )
    raise ValueError(
        "--backend must be 'replay:LOG', an http(s):// URL of an OpenAI-compatible server, or "
        f"NAME=URL. Got {spec!r} instead."
    )
