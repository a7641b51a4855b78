"""The ``computealloc serve`` command: the OpenAI-compatible proxy that holds a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from computealloc.cli.common import (
    CLIENT_HELP,
    console,
    fail,
)
from computealloc.data.samples import SampleLogError


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` came from the command line or the environment."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _serve_default(name: str) -> str:
    """The default of a serve setting, for --help (one source: ServeConfig)."""
    from computealloc.serving.serve_config import ServeConfig

    default = ServeConfig.model_fields[name].default
    return f" [default: {default}]"


def serve_cmd(
    ctx: typer.Context,
    policy: Annotated[
        Path | None, typer.Option(help="Policy or stopping-rule file (from `computealloc fit`).")
    ] = None,
    budget: Annotated[
        float | None, typer.Option(help="Mean cost per query to hold online.")
    ] = None,
    backend: Annotated[
        list[str],
        typer.Option(
            help="http(s)://HOST/v1 of an OpenAI-compatible server (with --model), replay:LOG, "
            "or NAME=URL, repeated, one per arm (model) the policy routes to; the upstream "
            "model is NAME. For per-arm keys, request parameters and prices, use --config."
        ),
    ] = [],  # noqa: B006
    config: Annotated[
        Path | None,
        typer.Option(
            help="A TOML or YAML file of serve settings and `arms` (url, model, api_key_env, "
            "params, price); flags given here override it. See docs/serving.md."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on." + _serve_default("host"))
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on." + _serve_default("port"))
    ] = None,
    model: Annotated[str | None, typer.Option(help="Upstream model (with a URL).")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="COMPUTEALLOC_API_KEY",
            help="Key clients must send. Prefer the COMPUTEALLOC_API_KEY environment variable "
            "or --api-key-file: a key on the command line is visible to every user (ps).",
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="A file (mode 600) whose first line is the key clients must send."),
    ] = None,
    backend_api_key: Annotated[
        str | None, typer.Option(envvar="OPENAI_API_KEY", help="Key for the upstream server.")
    ] = None,
    probe_m: Annotated[
        int | None, typer.Option(help="Probe samples per query; default: the policy file's.")
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(help="Sampling temperature upstream." + _serve_default("temperature")),
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Max output tokens per sample.")] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds per upstream request." + _serve_default("timeout")),
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option(help="Attempts per upstream request." + _serve_default("max_attempts")),
    ] = None,
    request_timeout: Annotated[
        float | None,
        typer.Option(help="Deadline per client request (s)." + _serve_default("request_timeout")),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(help="Largest request body accepted." + _serve_default("max_body_bytes")),
    ] = None,
    served_model_name: Annotated[
        str | None,
        typer.Option(help="Model name clients see." + _serve_default("served_model_name")),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Samples per upstream call of a stopping rule." + _serve_default("batch_size")
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes (each holds the budget; metrics are summed)."
            + _serve_default("workers")
        ),
    ] = None,
    client: Annotated[str | None, typer.Option(help=CLIENT_HELP + _serve_default("client"))] = None,
    price: Annotated[
        list[str],
        typer.Option(
            help="ARM=PRICE (repeatable), in the policy's cost unit; default the prices saved "
            "in the policy file, which these must equal."
        ),
    ] = [],  # noqa: B006
    spend_store: Annotated[
        str | None,
        typer.Option(
            help="redis://HOST:PORT/DB: hold one budget with every replica on this store and "
            "budget name (default: in this process)."
        ),
    ] = None,
    budget_name: Annotated[
        str | None,
        typer.Option(help="Name of the budget in the spend store." + _serve_default("budget_name")),
    ] = None,
    keys: Annotated[
        Path | None,
        typer.Option(help="JSON keys file: API key -> budget, optional hard cap per period."),
    ] = None,
    keep_alive: Annotated[
        float | None,
        typer.Option(
            help="Seconds an idle client connection stays open; keep it above your clients' "
            "and load balancer's idle timeouts." + _serve_default("keep_alive")
        ),
    ] = None,
    docs: Annotated[
        bool | None,
        typer.Option(
            "--docs/--no-docs",
            help="Serve /docs and /redoc (their JavaScript comes from a CDN; behind the key "
            "when one is set)." + _serve_default("docs"),
        ),
    ] = None,
) -> None:
    """OpenAI-compatible proxy that spends compute per request by the policy, holding budget B.

    Example: computealloc serve --policy policy.json --budget 0.3
    --backend gpt-4=http://127.0.0.1:8001/v1 --backend mixtral=http://127.0.0.1:8002/v1
    (listens on http://127.0.0.1:8100/v1 by default).
    """
    from computealloc.estimation.units import split_prices
    from computealloc.fitting.persist import PolicyFileError
    from computealloc.serving.serve_config import load_serve_config
    from computealloc.serving.server import serve

    flags = {  # the flags given (command line or environment) override the config file
        name: value for name, value in ctx.params.items() if name != "config" and _given(ctx, name)
    }
    source = ctx.get_parameter_source("api_key")
    if source is not None and source.name == "ENVIRONMENT" and "api_key_file" in flags:
        flags.pop("api_key")  # the file given on the command line wins over the environment
    if source is not None and source.name == "COMMANDLINE":
        console.print(
            "[yellow]warning:[/yellow] --api-key on the command line is visible to every user "
            "of this machine (ps, /proc); use COMPUTEALLOC_API_KEY or --api-key-file instead."
        )
    try:
        if "price" in flags:
            flags["prices"] = dict(split_prices(flags.pop("price")))
        if "keys" in flags:
            flags["keys_file"] = flags.pop("keys")
        settings = load_serve_config(config, flags)
        serve(**settings.serve_kwargs())
    except (PolicyFileError, SampleLogError, FileNotFoundError, ValueError) as exc:
        raise fail(exc) from exc
