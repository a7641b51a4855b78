"""Arms: parsing ``--backend NAME=URL``, validation, per-arm parameters, opening backends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from computealloc.data.arms import Arm, ArmBackend, open_arms, parse_arm
from computealloc.data.backends import Completion, OpenAIBackend, ReplayBackend
from test_runtime import synthetic_log


def test_parse_arm_forms():
    arm = parse_arm("mistralai/Mixtral-8x7B=http://127.0.0.1:9/v1")
    assert (arm.name, arm.url, arm.upstream_model) == (
        "mistralai/Mixtral-8x7B",
        "http://127.0.0.1:9/v1",
        "mistralai/Mixtral-8x7B",
    )
    replay = parse_arm("m=replay:mot_cascade:llama-2-13b/gsm/pot2")
    assert replay.replay == "mot_cascade:llama-2-13b/gsm/pot2" and replay.url is None


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("http://127.0.0.1:9/v1", "--backend must be NAME=URL or NAME=replay:LOG"),
        ("=http://x/v1", "--backend must be NAME=URL"),
        ("a=ftp://x", r"--backend a=\.\.\. must be followed by an http\(s\):// URL"),
    ],
)
def test_parse_arm_errors_name_the_flag(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_arm(spec)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"name": "a"}, "needs exactly one of url and replay"),
        ({"name": "a", "url": "http://x/v1", "replay": "log"}, "exactly one of url and replay"),
        ({"name": "a", "url": "x/v1"}, r"must be an http\(s\):// URL"),
        ({"name": "a", "url": "http://x/v1", "params": {"n": 2}}, "may not set n"),
        ({"name": "a", "url": "http://x/v1", "colour": 1}, "Extra inputs are not permitted"),
    ],
)
def test_arm_validation(fields, match):
    with pytest.raises(ValidationError, match=match):
        Arm(**fields)


class _Recording:
    """A backend that records the params of each call."""

    model = "upstream"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def sample(self, prompt, n, *, params=None):
        self.calls.append(dict(params or {}))
        return [Completion("x")] * n

    async def aclose(self) -> None:
        self.calls.append({"closed": True})


def test_arm_parameters_override_the_callers():
    inner = _Recording()
    arm = ArmBackend(inner, {"temperature": 0.0, "reasoning_effort": "high"}, "think")
    out = asyncio.run(arm.sample("q", 2, params={"temperature": 0.7, "max_tokens": 9}))
    assert len(out) == 2 and arm.model == "think"
    assert inner.calls == [{"temperature": 0.0, "max_tokens": 9, "reasoning_effort": "high"}]
    asyncio.run(arm.aclose())
    assert inner.calls[-1] == {"closed": True}


def test_open_arms(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    synthetic_log(5, 2).save(path)
    arms = [
        Arm(name="fast", url="http://127.0.0.1:9/v1", model="qwen3", params={"max_tokens": 8}),
        Arm(name="qwen3", url="http://127.0.0.1:9/v1"),
        Arm(name="m", replay=str(path)),
    ]
    opened = open_arms(arms)
    assert isinstance(opened["fast"], ArmBackend) and opened["fast"].model == "fast"
    assert isinstance(opened["fast"].backend, OpenAIBackend)
    assert opened["fast"].backend.model == "qwen3"
    assert isinstance(opened["qwen3"], OpenAIBackend)  # nothing to add: not wrapped
    assert isinstance(opened["m"], ReplayBackend)
    with pytest.raises(ValueError, match="Arm 'm' is given more than once"):
        open_arms([*arms, arms[-1]])
    keyed = Arm(name="k", url="http://127.0.0.1:9/v1", api_key_env="COMPUTEALLOC_TEST_KEY")
    monkeypatch.delenv("COMPUTEALLOC_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="'COMPUTEALLOC_TEST_KEY', which is not set"):
        open_arms([keyed])
    monkeypatch.setenv("COMPUTEALLOC_TEST_KEY", "sk-1")
    assert isinstance(open_arms([keyed])["k"], OpenAIBackend)


def test_collect_draws_n_samples_from_every_arm_into_one_resumable_log(tmp_path):
    """``collect --backend NAME=URL --config FILE``: rows labelled with their arm, each arm's
    parameters sent upstream, a rerun resumes everything."""
    from typer.testing import CliRunner

    from computealloc.cli import app
    from computealloc.data.samples import read_samples
    from fake_openai_server import make_app, running

    queries = tmp_path / "q.jsonl"
    queries.write_text(
        "".join(f'{{"query_id": "q{i}", "prompt": "p{i}", "gold": "2"}}\n' for i in range(6)),
        encoding="utf-8",
    )
    out = tmp_path / "log.jsonl"
    big, small = make_app(), make_app()
    with running(big) as big_url, running(small) as small_url:
        config = tmp_path / "arms.yaml"
        config.write_text(
            f"arms:\n  - name: think\n    url: {small_url}\n    model: qwen3\n"
            "    params: {chat_template_kwargs: {enable_thinking: true}}\n",
            encoding="utf-8",
        )
        args = ["collect", str(queries), "-o", str(out), "-n", "3", "--config", str(config)]
        first = CliRunner().invoke(app, [*args, "--backend", f"big={big_url}"])
        assert first.exit_code == 0, first.output
        again = CliRunner().invoke(app, [*args, "--backend", f"big={big_url}"])
        assert again.exit_code == 0 and "0 queries collected, 6 resumed" in again.output
    log = read_samples(out)
    counts = log.samples.groupby(["model", "query_id"]).size()
    assert set(counts.index.get_level_values(0)) == {"big", "think"} and set(counts) == {3}
    assert {b["model"] for b in small.state.bodies} == {"qwen3"}
    assert all(b["chat_template_kwargs"] == {"enable_thinking": True} for b in small.state.bodies)
    assert {b["model"] for b in big.state.bodies} == {"big"}
    assert not any("chat_template_kwargs" in b for b in big.state.bodies)


def test_a_streamed_thinking_arm_refuses_the_official_client_at_start():
    from computealloc.data.arms import Thinking
    from computealloc.data.forcing import ThinkingBackend

    thinking = Thinking(checkpoints=(8, 16, 24), stable=2, stream=True)
    arm = Arm(name="early", url="http://127.0.0.1:9/v1", thinking=thinking)
    # not at the first request, where each would fail: when the arms open
    with pytest.raises(ValueError, match=r"Arm 'early' streams its thoughts.*client 'openai'"):
        open_arms([arm], client="openai")
    assert isinstance(open_arms([arm])["early"], ThinkingBackend)
    segmented = Arm(name="seg", url="http://127.0.0.1:9/v1", thinking=Thinking(checkpoints=(8,)))
    assert isinstance(open_arms([segmented], client="openai")["seg"], ThinkingBackend)
