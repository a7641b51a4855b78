"""Cost units and prices: what one sample costs, with one meaning in every command.

A run has one **cost unit** (``--cost``) and, optionally, one **price** per arm (``--price
ARM=VALUE``; an arm is a model, or a named mode of one, as the log's ``model`` column says):

=========== =============================================== ==========================
unit        what one sample costs                           ``--price ARM=VALUE``
=========== =============================================== ==========================
``samples`` ``VALUE`` (default 1)                           per sample
``tokens``  its output tokens x ``VALUE`` (default 1)       per output token
``chars``   its characters x ``VALUE`` (default 1)          per character
``usd``     ``(output tokens x OUT + prompt tokens x IN)    ``ARM=OUT`` or ``ARM=IN/OUT``,
            / 1e6``                                         USD per 1M tokens (required)
=========== =============================================== ==========================

So ``--price gpt-4=1 --price mixtral=0`` with the default unit makes the cost of a query the
number of GPT-4 calls it makes (the budget is the share of GPT-4 calls), and ``--cost usd
--price gpt-4o=2.5/10`` is OpenAI's list price. The prices of a run are saved in the policy
file, and ``serve`` charges live samples by the same rule (:meth:`Pricing.completion_cost`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    from computealloc.data.backends.base import Completion

__all__ = [
    "COST_UNITS",
    "CostUnit",
    "Price",
    "PriceLike",
    "Pricing",
    "parse_price",
    "pricing_of",
    "split_prices",
]

COST_UNITS: tuple[str, ...] = ("samples", "tokens", "chars", "usd")
CostUnit = Literal["samples", "tokens", "chars", "usd"]

_PER = {
    "samples": "per sample",
    "tokens": "per output token",
    "chars": "per character",
    "usd": "USD per 1M output tokens, or IN/OUT USD per 1M prompt/output tokens",
}


@dataclass(frozen=True)
class Price:
    """The price of one arm's sample, in the run's cost unit.

    Parameters
    ----------
    rate : float
        Per sample (``samples``), per output token (``tokens``), per character (``chars``) or
        USD per 1M output tokens (``usd``); finite and >= 0.
    input_rate : float
        ``usd`` only: USD per 1M prompt tokens, charged for every sample drawn.
    """

    rate: float = 1.0
    input_rate: float = 0.0

    @property
    def spec(self) -> str:
        """The price as ``--price`` writes it: ``"2.5"`` or ``"2.5/10"`` (IN/OUT)."""
        return f"{self.rate:g}" if not self.input_rate else f"{self.input_rate:g}/{self.rate:g}"


#: What a user may write for one arm's price: a number, ``"OUT"``, ``"IN/OUT"`` or a Price.
PriceLike = float | str | Price


def parse_price(value: object, arm: str, unit: str, where: str = "--price") -> Price:
    """One arm's price from a number, ``"OUT"``, ``"IN/OUT"`` (``usd`` only) or a Price.

    Raises
    ------
    ValueError
        Naming ``where`` and the arm, when the value is not a finite number >= 0, or is an
        IN/OUT pair for a unit other than ``usd``.
    """
    if isinstance(value, Price):
        rates = (value.input_rate, value.rate)
    elif isinstance(value, str) and "/" in value:
        rates = tuple(_number(v) for v in value.split("/", 1))  # type: ignore[assignment]
        if unit != "usd":
            rates = (math.nan, math.nan)
    else:
        rates = (0.0, _number(value))
    if not all(0.0 <= r < math.inf for r in rates):
        raise ValueError(
            f"{where}: the price of arm {arm!r} must be a number >= 0 ({_PER[unit]}) with "
            f"cost unit {unit!r}. Got {value!r} instead."
        )
    return Price(rate=float(rates[1]), input_rate=float(rates[0]))


def _number(value: object) -> float:
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


@dataclass(frozen=True)
class Pricing:
    """A cost unit and the price of every arm: the one definition of cost.

    Parameters
    ----------
    unit : {"samples", "tokens", "chars", "usd"}
        What is counted (see the module docstring).
    prices : mapping of str to Price
        Price per arm. Empty means 1 per unit for every arm (not allowed with ``usd``); when
        some arms are priced, every arm used must be.

    Examples
    --------
    >>> p = Pricing.parse("samples", ["gpt-4=1", "mixtral=0"])
    >>> p.price("gpt-4").rate, p.price("mixtral").rate
    (1.0, 0.0)
    """

    unit: CostUnit = "samples"
    prices: Mapping[str, Price] = field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        unit: object = "samples",
        prices: Mapping[str, object] | Sequence[str] | None = None,
        *,
        where: str = "--price",
        unit_where: str = "--cost",
    ) -> Pricing:
        """Validate a unit and prices given as ``{arm: value}`` or ``["ARM=VALUE", ...]``.

        Raises
        ------
        ValueError
            Naming ``unit_where`` or ``where``: an unknown unit, a malformed ``ARM=VALUE``, a
            price that is not a number >= 0, an arm priced twice.
        """
        if unit not in COST_UNITS:
            raise ValueError(
                f"{unit_where} must be one of {', '.join(COST_UNITS)}. Got {unit!r} instead."
            )
        text = cast(str, unit)
        items = split_prices(prices, where)
        clean: dict[str, Price] = {}
        for arm, value in items:
            if arm in clean:
                raise ValueError(f"{where} gives arm {arm!r} more than one price.")
            clean[arm] = parse_price(value, arm, text, where)
        return cls(cast(CostUnit, text), clean)

    def price(self, arm: str, where: str = "--price") -> Price:
        """The price of ``arm``; 1 per unit when no arm is priced (except with ``usd``)."""
        if not self.prices and self.unit != "usd":
            return Price()
        if arm not in self.prices:
            given = ", ".join(map(repr, self.prices)) or "none"
            raise ValueError(
                f"{where} has no price for arm {arm!r} (cost unit {self.unit!r}: "
                f"{_PER[self.unit]}). Got prices for: {given}."
            )
        return self.prices[arm]

    def check_arms(self, arms: Iterable[str], where: str = "--price") -> None:
        """Raise unless every arm in ``arms`` has a price (see :meth:`price`)."""
        for arm in arms:
            self.price(arm, where)

    @property
    def columns(self) -> tuple[str, ...]:
        """The log columns a sample's cost is computed from."""
        if self.unit in ("samples", "chars"):
            return () if self.unit == "samples" else ("chars",)
        inputs = any(p.input_rate for p in self.prices.values())
        return ("tokens", "prompt_tokens") if inputs else ("tokens",)

    def sample_costs(self, samples: pd.DataFrame, queries: pd.DataFrame | None = None) -> Float:
        """The cost of every logged sample, shape (n_samples,); NaN where a count is missing.

        Reads ``model`` (the arm), and ``tokens`` (tokens, usd), ``prompt_tokens`` (usd with an
        input price), ``chars`` (chars: a sample column, else a per-query column of
        ``queries``).
        """
        arms = samples["model"].astype(str)
        table = {arm: self.price(arm) for arm in arms.unique()}
        rate = arms.map({a: p.rate for a, p in table.items()}).to_numpy(np.float64)
        if self.unit == "samples":
            return rate
        if self.unit == "chars":
            return _chars(samples, queries) * rate
        tokens = _column(samples, "tokens", self.unit)
        if self.unit == "tokens":
            return tokens * rate
        cost = tokens * (rate / 1e6)
        input_rate = arms.map({a: p.input_rate for a, p in table.items()}).to_numpy(np.float64)
        if input_rate.any():
            cost = cost + _column(samples, "prompt_tokens", "usd with an input price") * (
                input_rate / 1e6
            )
        return cost

    def completion_cost(self, completion: Completion, arm: str) -> float | None:
        """The cost of one live sample of ``arm``; None when a count it needs is unknown."""
        price = self.price(arm)
        if self.unit == "samples":
            return price.rate
        if self.unit == "chars":
            return len(completion.text) * price.rate
        out = completion.output_tokens
        if out is None:
            return None
        if self.unit == "tokens":
            return out * price.rate
        cost = out * (price.rate / 1e6)
        if price.input_rate:
            if completion.prompt_tokens is None:
                return None
            cost += completion.prompt_tokens * (price.input_rate / 1e6)
        return cost

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"unit": ..., "prices": {arm: "RATE" or "IN/OUT"}}``."""
        return {"unit": self.unit, "prices": {a: p.spec for a, p in self.prices.items()}}

    def same_as(self, other: Pricing) -> bool:
        """Whether two pricings charge every arm alike."""
        return self.to_dict() == other.to_dict()

    def describe(self) -> str:
        """One line for banners and errors, e.g. ``"samples (gpt-4=1, mixtral=0)"``."""
        shown = ", ".join(f"{a}={p.spec}" for a, p in self.prices.items())
        return self.unit + (f" ({shown})" if shown else "")


Float = NDArray[np.float64]


def split_prices(
    prices: Mapping[str, object] | Sequence[str] | None, where: str = "--price"
) -> list[tuple[str, object]]:
    """``(arm, value)`` pairs of ``{arm: value}`` or ``["ARM=VALUE", ...]`` (values unparsed).

    Raises
    ------
    ValueError
        Naming ``where``, for an item that is not ``ARM=VALUE``.
    """
    if prices is None:
        return []
    if isinstance(prices, Mapping):
        return [(str(k), v) for k, v in prices.items()]
    if isinstance(prices, str):
        prices = [prices]
    items: list[tuple[str, object]] = []
    for item in prices:
        arm, sep, value = str(item).rpartition("=")
        if not sep or not arm or not value:
            raise ValueError(f"{where} must be ARM=VALUE (e.g. gpt-4=1). Got {item!r} instead.")
        items.append((arm, value))
    return items


def _column(samples: pd.DataFrame, name: str, need: str) -> Float:
    if name not in samples.columns:
        raise ValueError(f"cost unit {need!r} needs a `{name}` column in the sample log.")
    return pd.to_numeric(samples[name], errors="coerce").to_numpy(np.float64, na_value=np.nan)


def _chars(samples: pd.DataFrame, queries: pd.DataFrame | None) -> Float:
    if "chars" in samples.columns:
        return _column(samples, "chars", "chars")
    if queries is not None and "chars" in queries.columns:
        per_query = queries.set_index("query_id")["chars"]
        mapped = samples["query_id"].map(per_query)
        return pd.to_numeric(mapped, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    raise ValueError("cost unit 'chars' needs a `chars` column in the sample log.")


def pricing_of(
    unit: object, prices: Mapping[str, object] | Sequence[str] | None, where: str
) -> Pricing:
    """:meth:`Pricing.parse` with errors that name the ``cost`` and ``prices`` parameters of
    the Python function ``where``."""
    return Pricing.parse(
        unit,
        prices,
        where=f"The 'prices' parameter of {where}",
        unit_where=f"The 'cost' parameter of {where}",
    )
