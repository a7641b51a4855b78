"""The ``computealloc serve`` command (:func:`serve`): bind the port, load the policy, open
the backends, write the banner and run uvicorn, in one process or in worker processes that
read their settings from a private file (:func:`worker_app`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI

from computealloc.data.arms import Arm
from computealloc.estimation.units import Price, PriceLike
from computealloc.serving.deploy import RuntimeOptions, open_runtime
from computealloc.serving.fleet import read_keys
from computealloc.serving.server.app import create_app
from computealloc.serving.server.schemas import ServedRuntime, dumps
from computealloc.serving.server.upstream import open_backends
from computealloc.serving.spend_store import open_store

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_KEEP_ALIVE_S",
    "DEFAULT_PORT",
    "banner",
    "read_api_key",
    "serve",
    "worker_app",
]


#: Environment variable read by :func:`serve` when no API key is passed.
API_KEY_ENV = "COMPUTEALLOC_API_KEY"
#: :func:`serve`'s default port (not 8000, vLLM's and SGLang's, which the proxy usually fronts).
DEFAULT_PORT = 8100
#: Seconds an idle client connection is kept open (uvicorn's ``timeout_keep_alive``). Longer
#: than the idle timeouts of clients (httpx and the ``openai`` client 5 s, aiohttp 15 s) and of
#: load balancers (60 s), so the client always closes an idle connection first: with uvicorn's
#: default of 5 s, a client reusing a connection just as the server closes it gets a ReadError
#: that the server never logs (``benchmarks/bench_keepalive.py`` measures both).
DEFAULT_KEEP_ALIVE_S = 75.0
#: Environment variable naming the file (mode 0600) of :func:`serve`'s settings, which its
#: worker processes read (the settings hold API keys: they never travel in the environment).
_SETTINGS_ENV = "COMPUTEALLOC_SERVE_SETTINGS_FILE"


def serve(
    policy_path: str | os.PathLike[str],
    budget: float,
    backend: str | Sequence[str | Arm],
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    model: str | None = None,
    api_key: str | None = None,
    api_key_file: str | os.PathLike[str] | None = None,
    backend_api_key: str | None = None,
    probe_m: int | None = None,
    temperature: float = 0.7,
    max_tokens: int | None = None,
    timeout: float = 60.0,
    max_attempts: int = 6,
    request_timeout: float | None = 600.0,
    max_body_bytes: int = 1 << 20,
    served_model_name: str = "computealloc",
    prices: Mapping[str, PriceLike] | Sequence[str] | None = None,
    batch_size: int = 1,
    workers: int = 1,
    client: Literal["aiohttp", "openai"] = "aiohttp",
    access_log: bool = True,
    spend_store: str | None = None,
    budget_name: str = "default",
    keys_file: str | os.PathLike[str] | None = None,
    keep_alive: float = DEFAULT_KEEP_ALIVE_S,
    docs: bool = False,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Listen, load a policy, open the backend and serve the proxy with uvicorn (blocks).

    The port is bound first, so a taken port fails at once (naming ``--host``/``--port``)
    rather than after the policy has loaded; then a loading line, and once the policy is
    loaded a banner (URL, served model name, policy, budget, arms, an example request) are
    written through ``echo``.

    Parameters
    ----------
    policy_path : path-like
        A policy saved by :func:`computealloc.fitting.persist.save_policy`, or a sequential stopping
        rule saved by :func:`computealloc.fitting.persist.save_stopping` (served by a
        :class:`~computealloc.serving.sequential_runtime.SequentialRuntime`).
    budget : float
        Target mean cost per query, in the policy's cost unit (samples for a stopping rule).
    backend : str or sequence of str or Arm
        ``"replay:LOG"``, an OpenAI-compatible URL, or one ``"NAME=URL"`` or
        :class:`~computealloc.data.arms.Arm` per arm the policy routes to (see
        :func:`open_backends`).
    host, port : str, int
        Where to listen; ``port`` in [1, 65535] (default :data:`DEFAULT_PORT`, 8100).
    model : str, optional
        Upstream model name (required with a URL).
    api_key : str, optional
        Key clients must send; default the ``COMPUTEALLOC_API_KEY`` environment variable, if
        set (no key otherwise).
    api_key_file : path-like, optional
        A file holding the key clients must send (instead of ``api_key``; see
        :func:`read_api_key`).
    backend_api_key : str, optional
        Key for the upstream server (default ``OPENAI_API_KEY``).
    probe_m, temperature, max_tokens
        Passed to :class:`~computealloc.serving.runtime.Runtime`.
    prices : mapping or sequence of ``"ARM=PRICE"``, optional
        Price per arm in the policy's cost unit (:mod:`computealloc.estimation.units`); default the
        policy file's. Given, they must be the policy's (a policy saved without prices takes
        them).
    batch_size : int
        Samples per upstream call of a stopping rule (see
        :class:`~computealloc.serving.sequential_runtime.SequentialRuntime`).
    timeout, max_attempts, client
        Per upstream request (see :func:`open_backends`).
    request_timeout : float, optional
        End-to-end deadline of a chat request, in seconds.
    max_body_bytes, served_model_name, docs
        Passed to :func:`create_app`.
    workers : int
        Worker processes (uvicorn's ``workers``). Each runs its own runtime and budget
        controller and holds the budget on the requests it answers, so all of them together
        hold it too; ``/metrics`` and ``/health`` report the totals of all workers
        (:mod:`computealloc.serving.workers`; through the spend store when one is given, each worker
        a replica of the fleet). The workers read the settings (keys included) from a file
        only this user can read, in a private temporary folder removed when the server stops;
        the clients' key does not travel in their environment (``COMPUTEALLOC_API_KEY`` is
        dropped from it; upstream keys named by arms' ``api_key_env`` are read from it).
    access_log : bool
        Log every request (uvicorn's access log).
    spend_store : str, optional
        ``redis://HOST:PORT/DB``: the budget lives on this Redis server, shared with every
        replica started with the same store and ``budget_name`` (:mod:`computealloc.serving.fleet`).
        Default: in this process.
    budget_name : str
        The budget's name in the store.
    keys_file : path-like, optional
        Per-key budgets and hard caps (:func:`computealloc.serving.fleet.read_keys`).
    keep_alive : float
        Seconds an idle client connection stays open (see :data:`DEFAULT_KEEP_ALIVE_S`).
    echo : callable, optional
        Where the loading line and the banner go (default: standard error).

    Raises
    ------
    ValueError
        Naming the flag: a port out of range or taken (``--host``/``--port``), an unreadable
        ``--api-key-file``, a bad setting.

    Notes
    -----
    uvicorn runs on ``uvloop`` with the ``httptools`` parser when they are installed
    (``uvicorn[standard]``), which cuts the proxy's CPU per request; ``benchmarks/bench_serve.py``
    measures it. One process answers a few thousand requests per second; more workers help
    only when the proxy, not the model server, is the bottleneck.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    say = echo if echo is not None else _to_stderr
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be an int in [1, inf). Got {workers!r} instead.")
    if not isinstance(keep_alive, (int, float)) or isinstance(keep_alive, bool) or keep_alive <= 0:
        raise ValueError(f"--keep-alive must be a number in (0, inf). Got {keep_alive!r}.")
    if api_key is not None and api_key_file is not None:
        raise ValueError("Give the clients' key as --api-key or as --api-key-file, not both.")
    key = read_api_key(api_key_file) if api_key_file is not None else api_key
    settings: dict[str, Any] = {
        "policy_path": str(policy_path),
        "budget": budget,
        "backend": backend
        if isinstance(backend, str)
        else [b.model_dump() if isinstance(b, Arm) else b for b in backend],
        "model": model,
        "api_key": key if key is not None else os.environ.get(API_KEY_ENV) or None,
        "backend_api_key": backend_api_key,
        "probe_m": probe_m,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout": timeout,
        "max_attempts": max_attempts,
        "request_timeout": request_timeout,
        "max_body_bytes": max_body_bytes,
        "served_model_name": served_model_name,
        "prices": None if prices is None else _raw_prices(prices),
        "batch_size": batch_size,
        "client": client,
        "spend_store": spend_store,
        "budget_name": budget_name,
        "keys_file": None if keys_file is None else str(keys_file),
        "docs": docs,
    }
    sock = _bind(host, port)  # before the (slow) load: a taken port fails at once
    try:
        say(f"Loading {policy_path} and opening the backends ...")
        app = _build_app(**settings)  # every setting is checked here, before any worker starts
        say(banner(app.state.runtime, host, port, served_model_name, str(policy_path), key))
        options: dict[str, Any] = {
            "host": host,  # for uvicorn's own messages: it listens on ``sock``
            "port": port,
            "access_log": access_log,
            "log_level": "info",
            "timeout_keep_alive": keep_alive,
        }
        if workers == 1:
            uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
            return
        asyncio.run(app.state.runtime.aclose())
        with tempfile.TemporaryDirectory(prefix="computealloc-serve-") as folder:
            path = _private_file(Path(folder) / "settings.json", {**settings, "shared_dir": folder})
            os.environ[_SETTINGS_ENV] = str(path)
            inherited = os.environ.pop(API_KEY_ENV, None)  # the workers read it from the file
            try:
                config = uvicorn.Config(
                    "computealloc.serving.server:worker_app",
                    factory=True,
                    workers=workers,
                    **options,
                )
                Multiprocess(config, sockets=[sock]).run()
            finally:
                os.environ.pop(_SETTINGS_ENV, None)
                if inherited is not None:
                    os.environ[API_KEY_ENV] = inherited
    finally:
        sock.close()


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a ValueError naming ``--host``/``--port``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"--port must be an int in [1, 65535]. Got {port!r} instead.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        hint = (
            " Another server listens there (vLLM and SGLang use 8000): pick a free --port."
            if exc.errno in (98, 48, 10048)  # EADDRINUSE on Linux, macOS, Windows
            else " Check --host (an address of this machine, 0.0.0.0 for all)."
        )
        raise ValueError(
            f"Cannot listen on {host}:{port} (--host/--port): {reason}.{hint}"
        ) from exc
    sock.set_inheritable(True)
    return sock


def _private_file(path: Path, settings: dict[str, Any]) -> Path:
    """Write ``settings`` as JSON to a new file only this user can read (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(settings, fh)
    return path


def read_api_key(path: str | os.PathLike[str]) -> str:
    """The API key held by the file ``path`` (its first line, surrounding blanks dropped).

    Raises
    ------
    ValueError
        Naming ``--api-key-file`` and the file: unreadable, or no key in it. A file others
        can read is accepted with a warning.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = Path(path).stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--api-key-file {path}: cannot read it ({exc}).") from exc
    lines = text.strip().splitlines()
    key = lines[0].strip() if lines else ""
    if not key:
        raise ValueError(f"--api-key-file {path}, line 1: no key in the file.")
    if mode & 0o077:
        warnings.warn(
            f"--api-key-file {path} can be read by other users (mode {mode & 0o777:o}); "
            f"chmod 600 {path}.",
            stacklevel=2,
        )
    return key


def banner(
    runtime: ServedRuntime,
    host: str,
    port: int,
    served_model_name: str,
    policy_path: str,
    api_key: str | None = None,
) -> str:
    """The start-up banner of :func:`serve`: URL, model, policy, budget, arms, a request.

    The key itself is never shown; the example request reads it from ``$COMPUTEALLOC_API_KEY``.
    """
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    method = runtime.describe()
    arms = "\n".join(
        f"    {arm} -> {getattr(b, 'base_url', None) or 'replayed log'}"
        for arm, b in runtime.arms.items()
    )
    auth = f' -H "Authorization: Bearer ${API_KEY_ENV}"' if api_key else ""
    body = dumps(
        {"model": served_model_name, "messages": [{"role": "user", "content": "What is 12 * 7?"}]}
    ).decode()
    return (
        f"computealloc proxy on {url}/v1 (model {served_model_name!r})\n"
        f"  policy  {policy_path} ({method})\n"
        f"  budget  {runtime.budget:g} {runtime.cost_unit} per query\n"
        f"  arms\n{arms}\n"
        f"  health  {url}/livez  {url}/readyz  {url}/health  {url}/metrics\n"
        f"  try     curl {url}/v1/chat/completions -H 'Content-Type: application/json'{auth} "
        f"-d '{body}'"
    )


def _arm(value: str | dict[str, Any]) -> str | Arm:
    """A ``--backend`` value, or an arm sent to a worker as a dict."""
    return value if isinstance(value, str) else Arm.model_validate(value)


def _raw_prices(
    prices: Mapping[str, PriceLike] | Sequence[str],
) -> dict[str, PriceLike] | list[str]:
    """``prices`` as JSON for worker processes (parsed with the policy's unit later)."""
    if isinstance(prices, Mapping):
        return {str(k): v.spec if isinstance(v, Price) else v for k, v in prices.items()}
    return [prices] if isinstance(prices, str) else list(prices)


def worker_app() -> FastAPI:
    """The app of one worker process of :func:`serve` (uvicorn's factory; reads its settings
    from the private file the environment names)."""
    return _build_app(**json.loads(Path(os.environ[_SETTINGS_ENV]).read_text(encoding="utf-8")))


def _build_app(
    policy_path: str,
    budget: float,
    backend: str | list[str | dict[str, Any]],
    *,
    model: str | None,
    api_key: str | None,
    backend_api_key: str | None,
    probe_m: int | None,
    temperature: float,
    max_tokens: int | None,
    timeout: float,
    max_attempts: int,
    request_timeout: float | None,
    max_body_bytes: int,
    served_model_name: str,
    prices: dict[str, PriceLike] | list[str] | None,
    batch_size: int,
    client: Literal["aiohttp", "openai"],
    spend_store: str | None = None,
    budget_name: str = "default",
    keys_file: str | None = None,
    shared_dir: str | None = None,
    docs: bool = False,
) -> FastAPI:
    """Load the policy, open the backend, build the runtime and the app (:func:`serve`)."""
    from computealloc.fitting.persist import load_file

    policy = load_file(policy_path)
    keys = [] if keys_file is None else read_keys(keys_file)
    store = None if spend_store is None else open_store(spend_store)
    arms = backend if isinstance(backend, str) else [_arm(b) for b in backend]
    backends = open_backends(
        arms,
        model=model,
        api_key=backend_api_key,
        timeout=timeout,
        max_attempts=max_attempts,
        client=client,
    )

    options = RuntimeOptions(
        prices=prices,
        probe_m=probe_m,
        batch_size=batch_size,
        temperature=temperature,
        max_tokens=max_tokens,
    )

    def runtime_at(budget: float) -> ServedRuntime:
        return open_runtime(policy, backends, budget=budget, options=options)

    return create_app(
        runtime_at(budget),
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        served_model_name=served_model_name,
        request_timeout=request_timeout,
        shared_dir=shared_dir,
        store=store,
        budget_name=budget_name,
        keys=[(key, runtime_at(key.budget)) for key in keys],
        docs=docs,
    )
