"""Run a sequential stopping policy on live queries: sample, ask the rule, stop.

A :class:`SequentialRuntime` answers one query by drawing samples from a backend in batches
of ``batch_size`` (1: one at a time, as Adaptive-Consistency and computealloc's
:class:`~computealloc.fitting.sequential.LagrangianStopping` assume; ``w``: one ESC window at a
time), asking its stopping rule after every sample whether the vote is settled, and voting
over everything drawn. Its interface is the one :class:`~computealloc.serving.runtime.Runtime`
offers the proxy server (``answer``, ``ledger``, ``lam``, ``budget``, ``cost_unit``, ``actions``),
so ``computealloc serve`` runs either kind of policy file.

Budget. The cost unit is samples. :class:`~computealloc.fitting.sequential.LagrangianStopping`
prices a sample directly, so its price follows the realised spend online: each query reserves the
budget with a :class:`~computealloc.serving.budget.BudgetController`, runs at the controller's price
and settles with the samples it drew. The published rules' knobs (a threshold, a window) are
not prices; they run at the setting calibrated for their budget (:func:`~computealloc.
sequential.calibrate_stopping`, the two-setting mix drawn per query), which holds the budget
only while live queries look like the calibration queries.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np

from computealloc.data.backends.base import (
    Backend,
    Completion,
    Prompt,
    check_params,
    receipt,
    sampling_params,
)
from computealloc.estimation.features import PROMPT_FEATURES, prompt_features
from computealloc.fitting.sequential import CalibratedStopping, LagrangianStopping, StoppingRule
from computealloc.methods import rule_labels
from computealloc.serving.budget import BudgetController
from computealloc.serving.runtime import (
    AnsweringRuntime,
    InFlight,
    Ledger,
    RuntimeAnswer,
    answer_key,
    charged,
    check_prompt,
    check_sampling,
    voted_answer,
)

__all__ = ["RULE_LABELS", "SequentialRuntime"]

#: Name of each rule class in action specs and metrics (the methods of ``evaluate``).
RULE_LABELS: dict[str, str] = rule_labels()
#: Grid of the live price, in units of the controller's scale, anchored at its ``lam0``: a query
#: runs at the grid point nearest the controller's price, so the prices met in a stream share
#: cached decision tables (one costs ~15 ms to compute at a horizon of 40).
_PRICE_GRID = 0.01
#: Default controller of a priced rule: its gain, and the smallest price unit (accuracy per
#: sample). A stopping rule's mean samples move little per relative change of its price, so
#: the gain is larger than the per-action controller's default.
_GAIN = 0.5
_MIN_SCALE = 0.02


class SequentialRuntime(AnsweringRuntime):
    """Answer live queries with a stopping rule, holding the mean samples per query at a budget.

    Parameters
    ----------
    rule : CalibratedStopping or StoppingRule
        A calibrated rule (:func:`~computealloc.fitting.sequential.calibrate_stopping`, or
        :func:`~computealloc.fitting.persist.load_stopping` of a file from ``computealloc fit
        --method sequential``), or a bare rule used at its own setting.
    backend : Backend
        Where samples come from.
    budget : float, optional
        Target mean samples per query; by default the budget the rule was calibrated to.
        Only a :class:`~computealloc.fitting.sequential.LagrangianStopping` can be served at another
        budget than its calibration's (its price moves online); for an uncalibrated published
        rule the budget is only reported, not enforced.
    controller : BudgetController, optional
        The online price of a :class:`~computealloc.fitting.sequential.LagrangianStopping`. By
        default one starting at the calibrated price ``lam0`` (the mix of the two calibrated
        settings), with ``scale = max(|lam0|, 0.02)``, ``gain = 0.5`` and the price kept in
        ``[-1, 1]``. Not allowed with other rules, nor with ``online=False``.
    online : bool
        Whether a :class:`~computealloc.fitting.sequential.LagrangianStopping` follows the realised
        spend with an online price (default). False serves it like the published rules: at its
        calibrated setting, the two settings mixed per query, which holds the budget only while
        live queries look like the calibration queries.
    batch_size : int
        Samples requested per backend call (the stop is still checked after each sample; the
        rest of a batch is drawn, paid and voted anyway).
    max_samples : int, optional
        Cap on the samples of one query; by default the rule's ``max_samples`` (for a
        :class:`~computealloc.fitting.sequential.LagrangianStopping`, the horizon it was fitted
        for).
    temperature : float
        Sampling temperature sent to the backend.
    max_tokens : int, optional
        Cap on output tokens per sample.
    random_state : int or None
        Seed of the per-query setting draw and of the vote's tie-breaking.

    Attributes
    ----------
    controller : BudgetController or None
        The online price (None for rules served at a fixed setting).
    actions : tuple of str
        ``"LABEL@t"`` for every possible number of samples ``t`` (the ``actions`` counted in
        the ledger and the metrics), LABEL from :data:`RULE_LABELS`.
    cost_unit : str
        ``"samples"``.
    in_flight : InFlight
        Replies received by queries not settled yet (counted into the ledger when they settle).
    """

    cost_unit = "samples"

    def __init__(
        self,
        rule: CalibratedStopping | StoppingRule,
        backend: Backend,
        *,
        budget: float | None = None,
        controller: BudgetController | None = None,
        online: bool = True,
        batch_size: int = 1,
        max_samples: int | None = None,
        temperature: float = 0.7,
        max_tokens: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.rule = _calibrated(rule)
        self.backend = backend
        self._priced = isinstance(self.rule.low, LagrangianStopping) and bool(online)
        self.budget = self._check_budget(budget)
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.max_samples = self._check_cap(max_samples)
        self._check_prior()
        label = RULE_LABELS[type(self.rule.low).__name__]
        self.actions: tuple[str, ...] = tuple(
            f"{label}@{t}" for t in range(1, self.max_samples + 1)
        )
        self.controller = self._controller(controller)
        self.temperature, self.max_tokens = check_sampling(
            temperature, max_tokens, "SequentialRuntime"
        )
        self._rng = np.random.default_rng(random_state)
        self._lock = threading.Lock()
        self._ledger = Ledger()
        self.in_flight = InFlight(lambda drawn, arm: float(len(drawn)))

    # --- state ----------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """A snapshot of the totals spent so far."""
        with self._lock:
            return self._ledger

    @property
    def lam(self) -> float:
        """The current price of a sample; for a fixed setting, its knob (mix-weighted)."""
        if self.controller is not None:
            return self.controller.lam
        return self.rule.knob_value()

    @property
    def arms(self) -> dict[str, Backend]:
        """The one arm sampled, by its model name, and its backend."""
        return {self.backend.model: self.backend}

    @property
    def worst_cost(self) -> float:
        """``max_samples``: a query never draws more."""
        return float(self.max_samples)

    def describe(self) -> str:
        """``"stopping rule CLASS"``."""
        return self.rule.describe_rule()

    async def aclose(self) -> None:
        """Close the backend."""
        await self.backend.aclose()

    # --- answering ------------------------------------------------------------------------

    async def answer(
        self, prompt: Prompt, *, params: Mapping[str, Any] | None = None
    ) -> RuntimeAnswer:
        """Sample one query until the rule stops it, vote, charge the samples.

        Parameters
        ----------
        prompt : str or sequence of chat messages
            The query text, or the whole conversation (sent whole to the backend; a feature
            prior reads the text of its last user message).
        params : mapping, optional
            Request fields of this query, merged over :attr:`request_params` into every
            backend call.

        Returns
        -------
        RuntimeAnswer
            ``action`` is ``"LABEL@t"`` with ``t`` the samples drawn (= ``cost`` = ``k``);
            ``lam`` the price (or knob) the query ran at.

        Raises
        ------
        BackendError
            When a backend call fails for good; the samples drawn before are charged.
        """
        text = check_prompt(prompt, "SequentialRuntime.answer")
        request = {**self.request_params, **check_params(params, "SequentialRuntime.answer")}
        prior = self._prior(text)
        rule, lam = self._setting()
        drawn: list[Completion] = []
        with (
            self.in_flight.flight(self.backend.model) as flight,
            receipt(partial(self.in_flight.receive, flight)) as received,
        ):
            try:
                await self._sample_until_stop(rule, prompt, request, prior, drawn)
            except BaseException:
                self._account(charged(drawn, received), None)
                raise
            spec = self.actions[len(drawn) - 1]
            billed = charged(drawn, received)
            self._account(billed, spec)
        return voted_answer(
            drawn,
            drawn,
            action=spec,
            model=self.backend.model,
            cost=float(len(billed)),
            lam=lam,
            rng=self._rng,
        )

    @property
    def request_params(self) -> dict[str, Any]:
        """``temperature`` and ``max_tokens`` (when set), sent with every backend call."""
        return sampling_params(self.temperature, self.max_tokens)

    # --- internals ------------------------------------------------------------------------

    async def _sample_until_stop(
        self,
        rule: StoppingRule,
        prompt: Prompt,
        params: dict[str, Any],
        prior: float | None,
        drawn: list[Completion],
    ) -> None:
        """Append samples to ``drawn`` until ``rule`` stops or the cap is reached."""
        keys: list[str | None] = []
        while len(drawn) < self.max_samples:
            n = min(self.batch_size, self.max_samples - len(drawn))
            batch = await self.backend.sample(prompt, n, params=params)
            drawn.extend(batch)
            stopped = False
            for completion in batch:
                keys.append(answer_key(completion))
                stopped = stopped or rule.should_stop(keys, prior)
            if stopped:
                return

    def _setting(self) -> tuple[StoppingRule, float]:
        """The rule one query runs with, and its price (or knob)."""
        if self.controller is not None:
            lam0, step = self.controller.lam0, self.controller.scale * _PRICE_GRID
            lam = lam0 + round((self.controller.reserve(self.budget) - lam0) / step) * step
            return self.rule.low.with_knob(lam), lam
        rule = self.rule.pick(self._rng)
        return rule, float(getattr(rule, rule.knob))

    def _prior(self, prompt: str) -> float | None:
        """The query's prior score, for a rule with a feature prior."""
        rule = self.rule.low
        if not isinstance(rule, LagrangianStopping) or rule.prior_model_ is None:
            return None
        x = prompt_features([prompt])[list(PROMPT_FEATURES)].to_numpy(dtype=np.float64)
        return float(rule.predict_prior(x)[0])

    def _account(self, drawn: list[Completion], spec: str | None) -> None:
        """Settle the query's reservation and add it to the ledger."""
        cost = float(len(drawn))
        if self.controller is not None:
            self.controller.settle(self.budget, cost if drawn else None)
        with self._lock:
            self._ledger = self._ledger.add(
                drawn, cost, spec, failed=spec is None, arm=self.backend.model
            )

    # --- construction ---------------------------------------------------------------------

    def _check_budget(self, budget: float | None) -> float:
        calibrated = self.rule.budget
        if budget is None:
            if not math.isfinite(calibrated):
                raise ValueError(
                    "The rule was not calibrated to a budget; pass the 'budget' parameter of "
                    "SequentialRuntime."
                )
            return calibrated
        ok = isinstance(budget, (int, float)) and not isinstance(budget, bool)
        if not ok or not math.isfinite(budget) or budget < 1:
            raise ValueError(
                f"The 'budget' parameter of SequentialRuntime must be a float in [1, inf) "
                f"(samples per query). Got {budget!r} instead."
            )
        if not self._priced and math.isfinite(calibrated) and budget != calibrated:
            raise ValueError(
                f"The {type(self.rule.low).__name__} setting was calibrated to a budget of "
                f"{calibrated:g} samples and cannot follow another one online; calibrate it to "
                f"{float(budget):g} (computealloc fit --budget) or serve a LagrangianStopping "
                "online."
            )
        return float(budget)

    def _check_cap(self, max_samples: int | None) -> int:
        low = self.rule.low
        own = low.horizon_ if isinstance(low, LagrangianStopping) else low.max_samples
        cap = own if max_samples is None else max_samples
        if cap is None:
            raise ValueError(
                f"The {type(low).__name__} has no max_samples; pass the 'max_samples' parameter "
                "of SequentialRuntime (the most samples one query may draw)."
            )
        return _check_positive_int(cap, "max_samples")

    def _check_prior(self) -> None:
        low = self.rule.low
        if isinstance(low, LagrangianStopping) and low.prior_model_ is not None:
            found = low.prior_model_.num_feature()
            if found != len(PROMPT_FEATURES):
                raise ValueError(
                    f"The rule's prior reads {found} features, but the runtime computes the "
                    f"{len(PROMPT_FEATURES)} prompt features; fit the prior on "
                    "computealloc.estimation.features.build_features(log).X."
                )

    def _controller(self, controller: BudgetController | None) -> BudgetController | None:
        if not self._priced:
            if controller is not None:
                raise ValueError(
                    f"A {type(self.rule.low).__name__} served at its calibrated setting has no "
                    "price to control; the 'controller' parameter of SequentialRuntime needs a "
                    "LagrangianStopping rule served online."
                )
            return None
        if controller is None:
            lam0 = float(np.clip(self.rule.knob_value(), -1.0, 1.0))
            return BudgetController(
                self.budget,
                lam0,
                gain=_GAIN,
                scale=max(abs(lam0), _MIN_SCALE),
                lam_min=-1.0,
                lam_max=1.0,
            )
        if not isinstance(controller, BudgetController) or controller.budget != self.budget:
            shown = controller.budget if isinstance(controller, BudgetController) else controller
            raise ValueError(
                f"The 'controller' parameter of SequentialRuntime must be a BudgetController for "
                f"the budget {self.budget:g}. Got {shown!r} instead."
            )
        return controller


def _calibrated(rule: object) -> CalibratedStopping:
    if isinstance(rule, CalibratedStopping):
        calibrated = rule
    elif isinstance(rule, StoppingRule):
        calibrated = CalibratedStopping(rule, rule, 0.0, math.nan, math.nan, math.nan)
    else:
        raise TypeError(
            "The 'rule' parameter of SequentialRuntime must be a CalibratedStopping or a "
            f"StoppingRule. Got {type(rule).__name__} instead."
        )
    name = type(calibrated.low).__name__
    if name not in RULE_LABELS:
        raise TypeError(
            f"SequentialRuntime runs the rules {sorted(RULE_LABELS)}. Got {name} instead."
        )
    if isinstance(calibrated.low, LagrangianStopping):
        calibrated.low.check_fitted()
    return calibrated


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"The '{name}' parameter of SequentialRuntime must be an int in [1, inf). Got "
            f"{value!r} instead."
        )
    return int(value)
