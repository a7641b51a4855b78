"""``computealloc serve`` settings: flags, or a TOML/YAML file, validated once (pydantic).

A config file holds any of :func:`computealloc.serving.server.serve`'s settings, and the ``arms`` a
policy routes to (:class:`~computealloc.data.arms.Arm`); flags given on the command line override
the file. For example, ``serve.toml``::

    policy = "policy.json"
    budget = 0.3
    port = 8100

    [[arms]]
    name = "gpt-4-1106-preview"
    url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"
    price = 1

    [[arms]]
    name = "mistralai/Mixtral-8x7B-Instruct-v0.1"
    url = "http://127.0.0.1:8000/v1"
    params = { temperature = 0.7, max_tokens = 512 }
    price = 0

and ``computealloc serve --config serve.toml`` (``.yaml``/``.yml`` files hold the same keys).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from computealloc.data.arms import Arm

__all__ = ["ServeConfig", "ServeConfigError", "load_arms", "load_serve_config"]

#: CLI flag of each setting, for error messages.
_FLAGS = {
    "backend": "--backend",
    "arms": "arms (config file)",
    "keys_file": "--keys",
    "prices": "--price",
}


class ServeConfigError(ValueError):
    """A serve setting that is missing or invalid; the message names the flag or file key."""


class ServeConfig(BaseModel):
    """Every setting of :func:`computealloc.serving.server.serve` (same names and meanings),
    checked.

    Exactly one way to name the upstream: ``backend`` values (``--backend``) or ``arms``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Path
    budget: float = Field(gt=0, allow_inf_nan=False)
    backend: list[str] = Field(default_factory=list)
    arms: list[Arm] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=1, le=65535)
    model: str | None = None
    api_key: str | None = Field(default=None, min_length=1)
    api_key_file: Path | None = None
    backend_api_key: str | None = None
    probe_m: int | None = Field(default=None, ge=0)
    temperature: float = Field(default=0.7, ge=0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1)
    timeout: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    max_attempts: int = Field(default=6, ge=1)
    request_timeout: float | None = Field(default=600.0, gt=0, allow_inf_nan=False)
    max_body_bytes: int = Field(default=1 << 20, ge=1)
    served_model_name: str = Field(default="computealloc", min_length=1)
    prices: dict[str, float | str] = Field(default_factory=dict)
    batch_size: int = Field(default=1, ge=1)
    workers: int = Field(default=1, ge=1)
    client: Literal["aiohttp", "openai"] = "aiohttp"
    spend_store: str | None = None
    budget_name: str = Field(default="default", min_length=1)
    keys_file: Path | None = None
    keep_alive: float = Field(default=75.0, gt=0, allow_inf_nan=False)
    docs: bool = False

    @model_validator(mode="after")
    def _one_upstream(self) -> ServeConfig:
        if bool(self.backend) == bool(self.arms):
            raise ValueError(
                "give the upstream either as --backend values or as the config file's arms "
                f"(got {len(self.backend)} --backend values and {len(self.arms)} arms)"
            )
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("give the clients' key as --api-key or as --api-key-file, not both")
        priced = {a.name for a in self.arms if a.price is not None}
        both = sorted(priced & set(self.prices))
        if both:
            raise ValueError(f"arms {both} are priced both in `arms` and in --price")
        return self

    def serve_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`computealloc.serving.server.serve`."""
        values = self.model_dump(exclude={"policy", "backend", "arms", "prices"})
        prices = {**self.prices, **{a.name: a.price for a in self.arms if a.price is not None}}
        return {
            **values,
            "policy_path": self.policy,
            "backend": self.arms or self.backend,
            "prices": prices or None,
        }


def load_serve_config(
    path: str | os.PathLike[str] | None, overrides: dict[str, Any]
) -> ServeConfig:
    """Settings from a TOML/YAML file (if given) with ``overrides`` (flags) on top.

    Raises
    ------
    ServeConfigError
        Naming the file and each bad key (or the flag), with what was expected.
    """
    values: dict[str, Any] = {}
    where = "command line"
    if path is not None:
        values = _read(Path(path))
        where = str(path)
    values.update(overrides)
    try:
        return ServeConfig.model_validate(values)
    except ValidationError as exc:
        lines = [_line(err) for err in exc.errors()]
        raise ServeConfigError(f"Invalid serve settings ({where}):\n" + "\n".join(lines)) from exc


class _Arms(BaseModel):
    arms: list[Arm] = Field(min_length=1)


def load_arms(path: str | os.PathLike[str]) -> list[Arm]:
    """The ``arms`` of a TOML/YAML config file (other keys are serve's and ignored here).

    Raises
    ------
    ServeConfigError
        Naming the file and each bad key.
    """
    values = _read(Path(path))
    try:
        return _Arms.model_validate({"arms": values.get("arms", [])}).arms
    except ValidationError as exc:
        lines = [_line(err) for err in exc.errors()]
        raise ServeConfigError(f"Invalid arms ({path}):\n" + "\n".join(lines)) from exc


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeConfigError(f"Cannot read the config file {path}: {exc}") from exc
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ServeConfigError(
            f"The config file {path} must end in .toml, .yaml or .yml. Got {path.suffix!r}."
        )
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ServeConfigError(f"The config file {path} is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise ServeConfigError(f"The config file {path} must hold a table of settings.")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _line(err: Any) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "settings"
    flag = _FLAGS.get(loc[0], f"--{loc[0].replace('_', '-')}") if loc else ""
    shown = f"{key} ({flag})" if flag and len(loc) == 1 else key
    got = err.get("input")
    tail = "" if err["type"] == "missing" or isinstance(got, dict) else f"; got {got!r}"
    return f"  {shown}: {err['msg']}{tail}"
