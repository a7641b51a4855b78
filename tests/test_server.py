"""The OpenAI-compatible proxy, served on loopback and exercised with the ``openai`` client.

A replay-backed fake OpenAI server runs under uvicorn; the proxy runs under uvicorn in front of
it (in a thread, and once as a separate process through :func:`computealloc.serving.server.serve`).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
try:
    import schemathesis
except ImportError:  # the schema fuzzing test needs the dev extra
    schemathesis = None
pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from computealloc.data.backends import OpenAIBackend, ReplayBackend, RetryPolicy  # noqa: E402
from computealloc.data.grading import extract_answer, normalize  # noqa: E402
from computealloc.fitting.persist import save_policy  # noqa: E402
from computealloc.serving.runtime import Runtime  # noqa: E402
from computealloc.serving.server import create_app, open_backends  # noqa: E402
from fake_openai_server import make_app, replaying, running, scripted  # noqa: E402
from test_runtime import fit_value, synthetic_log  # noqa: E402

KEY = "test-key"
FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01)
BUDGET = 3.0


@pytest.fixture(scope="module")
def log():
    return synthetic_log(60, 8)


@pytest.fixture(scope="module")
def policy(log):
    return fit_value(log, BUDGET, actions="majority@1,majority@2,majority@4")


@pytest.fixture(scope="module")
def backend_url(log):
    with running(make_app(replaying(ReplayBackend(log)))) as url:
        yield url


def _runtime(policy, url, **kwargs):
    backend = OpenAIBackend(url, "m", retry=kwargs.pop("retry", FAST), **kwargs)
    return Runtime(policy, backend, budget=BUDGET)


@pytest.fixture(scope="module")
def proxy(policy, backend_url):
    runtime = _runtime(policy, backend_url)
    with running(create_app(runtime, api_key=KEY, max_body_bytes=4096)) as url:
        yield url, runtime


@pytest.fixture(scope="module")
def client(proxy):
    return openai.OpenAI(base_url=proxy[0], api_key=KEY, max_retries=0)


def _ask(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]


def _responses(log, prompt: str) -> set[str]:
    frame = log.to_frame()
    return set(frame.loc[frame["prompt"] == prompt, "response"])


def test_chat_completion_through_the_openai_client(client, log, policy):
    prompt = log.queries["prompt"].iloc[0]
    raw = client.chat.completions.with_raw_response.create(model="any", messages=_ask(prompt))
    completion = raw.parse()
    extension = completion.model_extra["computealloc"]
    assert completion.choices[0].message.content in _responses(log, prompt)
    assert completion.choices[0].finish_reason == "stop"
    assert extension["action"] in policy.actions_
    assert extension["cost"] == extension["k"] == extension["samples"]
    assert extension["k"] == int(extension["action"].split("@")[1])
    assert raw.headers["x-computealloc-action"] == extension["action"]
    assert float(raw.headers["x-computealloc-cost"]) == extension["cost"]
    assert completion.model == "computealloc"
    assert completion.usage.completion_tokens >= extension["samples"] * 10


def test_streaming_request_gets_the_answer_as_a_valid_stream(client, log):
    prompt = log.queries["prompt"].iloc[1]
    chunks = list(
        client.chat.completions.create(
            model="any",
            messages=_ask(prompt),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text in _responses(log, prompt)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and finish[:-1] == [None] * (len(finish) - 1)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    extension = next(
        c.model_extra["computealloc"] for c in chunks if "computealloc" in c.model_extra
    )
    assert extension["cost"] == extension["k"]


def test_the_conversation_and_the_clients_fields_reach_the_backend_or_are_reported(policy, log):
    app = make_app(replaying(ReplayBackend(log)))
    prompt = log.queries["prompt"].iloc[0]
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": prompt},
    ]
    with running(app) as url, running(create_app(_runtime(policy, url))) as proxy:
        client = openai.OpenAI(base_url=proxy, api_key="k", max_retries=0)
        reply = client.chat.completions.create(
            model="any",
            messages=conversation,  # type: ignore[arg-type]
            temperature=0.1,
            top_p=0.5,
            max_tokens=50,
            seed=3,
            extra_body={"mirostat": 2},
        )
    extension = reply.model_extra["computealloc"]
    assert sum(body.get("n", 1) for body in app.state.bodies) == extension["samples"]
    for body in app.state.bodies:
        assert body["messages"] == conversation
        assert body["max_tokens"] == 50 and body["seed"] >= 3
        assert body["temperature"] == 0.7 and "top_p" not in body and "mirostat" not in body
    assert extension["overrides"]["temperature"] == {
        "requested": 0.1,
        "used": 0.7,
        "reason": "the policy was fitted on samples drawn with the arm's own setting",
    }
    assert extension["overrides"]["top_p"]["used"] is None
    assert extension["overrides"]["mirostat"]["reason"] == "the proxy does not forward this field"
    assert set(extension["overrides"]) == {"temperature", "top_p", "mirostat"}
    assert reply.usage.prompt_tokens == 1  # the fake server reports 1 per request
    assert reply.usage.total_tokens == 1 + reply.usage.completion_tokens


def test_n_above_one_returns_the_best_distinct_answers(client, log):
    prompt = log.queries["prompt"].iloc[3]
    reply = client.chat.completions.create(model="any", messages=_ask(prompt), n=3)
    answers = [normalize(extract_answer(c.message.content) or "") for c in reply.choices]
    extension = reply.model_extra["computealloc"]
    assert 1 <= len(answers) <= 3 and len(set(answers)) == len(answers)
    assert [c.index for c in reply.choices] == list(range(len(answers)))
    assert normalize(extension["answer"]) == answers[0]
    if len(answers) < 3:
        assert extension["overrides"]["n"]["used"] == len(answers)
    else:
        assert "n" not in extension["overrides"]


def test_models_health_and_metrics_agree_with_the_ledger(client, proxy, log):
    base = proxy[0].removesuffix("/v1")
    costs = []
    for prompt in log.queries["prompt"].iloc[2:12]:
        reply = client.chat.completions.create(model="any", messages=_ask(prompt))
        costs.append(reply.model_extra["computealloc"]["cost"])
    assert [m.id for m in client.models.list()] == ["computealloc"]
    health = httpx.get(f"{base}/health").json()
    ledger = proxy[1].ledger
    assert health["status"] == "ok" and health["budget"] == BUDGET
    assert health["queries"] == ledger.queries >= len(costs)
    text = httpx.get(f"{base}/metrics").text
    metrics = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(computealloc_\w+(?:\{[^}]*\})?) (\S+)$", text, re.M)
    }
    assert metrics["computealloc_mean_cost"] == pytest.approx(ledger.mean_cost)
    assert metrics["computealloc_cost_total"] == ledger.cost == ledger.samples
    assert metrics["computealloc_samples_total"] == ledger.samples
    assert metrics["computealloc_output_tokens_total"] == ledger.output_tokens
    assert metrics["computealloc_prompt_tokens_total"] == ledger.prompt_tokens >= len(costs)
    assert metrics["computealloc_lam"] == pytest.approx(proxy[1].lam)
    actions = sum(v for k, v in metrics.items() if k.startswith("computealloc_actions_total"))
    assert actions == ledger.queries
    assert metrics['computealloc_requests_total{code="200"}'] >= len(costs)


def test_ledger_equals_the_costs_reported_to_clients(policy, backend_url, log):
    runtime = _runtime(policy, backend_url)
    with running(create_app(runtime)) as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        costs = [
            client.chat.completions.create(model="any", messages=_ask(p)).model_extra[
                "computealloc"
            ]["cost"]
            for p in log.queries["prompt"].iloc[:15]
        ]
    assert runtime.ledger.cost == sum(costs) and runtime.ledger.queries == 15


def test_a_wrong_or_missing_api_key_is_401(proxy, log):
    for key in ("wrong", ""):
        bad = openai.OpenAI(base_url=proxy[0], api_key=key or "x", max_retries=0)
        headers = {} if key else {"Authorization": ""}
        with pytest.raises(openai.AuthenticationError, match="Missing or wrong API key"):
            bad.chat.completions.create(
                model="any", messages=_ask(log.queries["prompt"].iloc[0]), extra_headers=headers
            )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=proxy[0], api_key="wrong", max_retries=0).models.list()


def test_a_body_over_the_limit_is_413(proxy):
    url = f"{proxy[0]}/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    big = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'
    response = httpx.post(url, content=big, headers=headers)
    assert response.status_code == 413
    assert "exceeds the limit of 4096 bytes" in response.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield big[:3000]
        yield big[3000:]

    response = httpx.post(url, content=chunks(), headers=headers)
    assert response.status_code == 413


def test_an_unknown_prompt_is_404(client):
    with pytest.raises(openai.NotFoundError, match="No query of the replayed log has the prompt"):
        client.chat.completions.create(model="any", messages=_ask("What is the capital of Mars?"))


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 0}, 400, "n=0"),
        (
            {"model": "m", "messages": [{"role": "assistant", "content": "hi"}]},
            400,
            "last message must have role 'user'",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": " "}]}, 400, "has no text"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "Only text content",
        ),
        ({"model": "m", "messages": []}, 422, "Invalid request: messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, 422, "Invalid request: model"),
        ({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}, 422, "role"),
    ],
)
def test_bad_requests_are_clear_4xx(proxy, body, status, match):
    response = httpx.post(
        f"{proxy[0]}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == status
    assert re.search(match, response.json()["error"]["message"])


def test_malformed_json_is_422_with_a_message(proxy):
    response = httpx.post(
        f"{proxy[0]}/chat/completions",
        content=b'{"model": ',
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["error"]["message"]


def test_a_body_that_is_not_utf8_is_422_not_500(proxy):
    """Regression: the validation detail echoed the raw input, which may not be text."""
    response = httpx.post(
        f"{proxy[0]}/chat/completions",
        content=b'{"model": "\xcb\x01"}',
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_the_wrong_method_is_an_openai_style_405(proxy):
    response = httpx.get(f"{proxy[0]}/chat/completions", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 405 and response.json()["error"]["code"] == 405


def test_the_openapi_schema_documents_the_chat_route(proxy):
    url = proxy[0].removesuffix("/v1") + "/openapi.json"
    assert httpx.get(url).status_code == 401  # behind the key
    schema = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}).json()
    operation = schema["paths"]["/v1/chat/completions"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    models = schema["components"]["schemas"]
    assert models[body.rsplit("/", 1)[1]]["required"] == ["model", "messages"]
    refs = re.findall(r'"#/components/schemas/(\w+)"', str(schema).replace("'", '"'))
    assert set(refs) <= set(models)  # every reference resolves
    assert {"200", "400", "401", "404", "413", "422", "429", "502", "504"} == set(
        operation["responses"]
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_backend_that_is_down_is_502(policy, log):
    down = f"http://127.0.0.1:{_free_port()}/v1"
    runtime = _runtime(policy, down, retry=RetryPolicy(max_attempts=1))
    with running(create_app(runtime)) as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        with pytest.raises(openai.InternalServerError, match="The backend failed") as info:
            client.chat.completions.create(model="any", messages=_ask("hi"))
    assert info.value.status_code == 502
    assert runtime.ledger.failed == 1 and runtime.controller.state().in_flight == 0


def test_a_backend_timeout_and_the_request_deadline_are_504(policy, log):
    prompt = log.queries["prompt"].iloc[0]
    with running(make_app(replaying(ReplayBackend(log)), latency_s=1.0)) as slow:
        runtime = _runtime(policy, slow, retry=RetryPolicy(max_attempts=1), timeout=0.2)
        deadline = _runtime(policy, slow)
        with (
            running(create_app(runtime)) as a,
            running(create_app(deadline, request_timeout=0.2)) as b,
        ):
            for url, match in ((a, "The backend timed out"), (b, r"No answer within 0.2 s")):
                client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
                with pytest.raises(openai.APIStatusError, match=match) as info:
                    client.chat.completions.create(model="any", messages=_ask(prompt))
                assert info.value.status_code == 504
    assert deadline.controller.state().in_flight == 0


@pytest.fixture(scope="module")
def proxy_schema(policy):
    """The OpenAPI schema of a proxy in front of a healthy (scripted) backend."""
    if schemathesis is None:
        pytest.skip("schemathesis is not installed (dev extra)")
    with running(make_app(scripted)) as upstream:
        runtime = _runtime(policy, upstream)
        with running(create_app(runtime, max_body_bytes=1 << 16)) as url:
            schema = schemathesis.openapi.from_url(url.removesuffix("/v1") + "/openapi.json")
            yield schema, runtime


def test_schemathesis_finds_no_server_error(proxy_schema):
    """Bounded fuzzing of every operation of the proxy's schema: no 5xx answer."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    schema, runtime = proxy_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/models"}
    for operation in operations:
        cases = st.one_of(  # valid, invalid and the schema's own examples
            operation.as_strategy(),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
            *schema.get_strategies_from_examples(operation),
        )

        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=cases)
        def fuzz(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(checks=[schemathesis.checks.not_a_server_error])

        fuzz()
    assert runtime.ledger.queries > 0  # generated requests reached the answering path


@contextmanager
def _served(tmp_path, log, policy, **kwargs):
    """Run :func:`serve` in a child process; yield its base URL once it answers."""
    path = tmp_path / "samples.jsonl"
    log.save(path)
    save_policy(policy, tmp_path / "policy.json")
    port = _free_port()
    options = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    code = (
        "from computealloc.serving.server import serve; "
        f"serve({str(tmp_path / 'policy.json')!r}, {BUDGET}, 'replay:{path}', port={port}, "
        f"access_log=False{options})"
    )
    env = {**os.environ, "COMPUTEALLOC_API_KEY": KEY, "PYTHONPATH": str(Path("src").resolve())}
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_runs_the_proxy_as_a_process(tmp_path, log, policy):
    with _served(tmp_path, log, policy) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        prompt = log.queries["prompt"].iloc[3]
        reply = client.chat.completions.create(model="any", messages=_ask(prompt))
        assert reply.choices[0].message.content in _responses(log, prompt)
        with pytest.raises(openai.NotFoundError, match="No query of the replayed log"):
            client.chat.completions.create(model="any", messages=_ask("unknown prompt"))


def test_workers_answer_alike_and_report_the_totals_of_all(tmp_path, log, policy):
    with _served(tmp_path, log, policy, workers=2) as base:
        headers = {"Authorization": f"Bearer {KEY}"}
        costs = []
        for prompt in log.queries["prompt"].iloc[:24]:  # a new connection each: both workers
            body = {"model": "any", "messages": _ask(prompt)}
            reply = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers)
            assert reply.status_code == 200
            costs.append(reply.json()["computealloc"]["cost"])
        # each worker publishes its totals every 0.25 s: poll until the scraped one sees all
        deadline = time.monotonic() + 10
        while (health := httpx.get(f"{base}/health").json())["queries"] < len(costs):
            assert time.monotonic() < deadline, health
            time.sleep(0.1)
        while 'computealloc_requests_total{code="200"} 24.0' not in (
            text := httpx.get(f"{base}/metrics").text
        ):
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
    assert health["workers"] == 2 and health["queries"] == len(costs)
    assert health["mean_cost"] == pytest.approx(sum(costs) / len(costs))
    assert f"computealloc_cost_total {float(sum(costs))}" in text
    assert "computealloc_workers 2.0" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"api_key": ""}, r"'api_key' parameter of create_app must be a non-empty str or None"),
        ({"max_body_bytes": 0}, r"'max_body_bytes' .* an int in \[1, inf\). Got 0 instead"),
        ({"served_model_name": ""}, r"'served_model_name' .* a non-empty str"),
        ({"request_timeout": -1}, r"'request_timeout' .* a float in \(0, inf\) or None"),
    ],
)
def test_create_app_validation(proxy, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_app(proxy[1], **kwargs)
    with pytest.raises(ValueError, match="'runtime' parameter of create_app must be a Runtime"):
        create_app(object())  # type: ignore[arg-type]


def test_open_backends(tmp_path, log):
    path = tmp_path / "log.jsonl"
    log.save(path)
    replay = open_backends(f"replay:{path}")
    assert isinstance(replay, ReplayBackend) and replay.model == "m"
    remote = open_backends("http://127.0.0.1:1/v1", model="served")
    assert isinstance(remote, OpenAIBackend) and remote.model == "served"
    with pytest.raises(ValueError, match="needs the model name it serves"):
        open_backends("http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="--backend must be 'replay:LOG', an http"):
        open_backends("ftp://x")
    arms = open_backends(["gpt-4=http://127.0.0.1:1/v1", f"m=replay:{path}"])
    assert isinstance(arms, dict) and list(arms) == ["gpt-4", "m"]
    assert isinstance(arms["gpt-4"], OpenAIBackend) and arms["gpt-4"].model == "gpt-4"
    assert isinstance(arms["m"], ReplayBackend) and arms["m"].model == "m"
    with pytest.raises(ValueError, match="name each one's arm: --backend NAME=URL"):
        open_backends(["gpt-4=http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"])
    with pytest.raises(ValueError, match="Arm 'a' is given more than once"):
        open_backends(["a=http://127.0.0.1:1/v1", "a=http://127.0.0.1:2/v1"])
