"""LlmClient against a real local socket: retries, backoff, timeouts, fallback, secrets."""

from __future__ import annotations

import json
import logging
import time

import pytest

from agent.llm.client import LlmClient, LlmReply, LlmSettings, LlmUnavailable
from agent.llm.server import free_port
from memory.errors import UserError
from tests.agent.scripted_llm import ScriptedLlmServer

MESSAGES = [{"role": "user", "content": "Answer with JSON."}]
SCHEMA = {"type": "object"}


def complete(client: LlmClient) -> LlmReply:
    return client.complete_json(MESSAGES, SCHEMA, template="propose.md")


def test_a_429_then_a_503_are_retried_honouring_retry_after():
    # The openai client retries (with backoff, or the server's Retry-After): a short one keeps the test fast.
    wait = {"retry-after": "0.2"}
    with ScriptedLlmServer([{"status": 429, "headers": wait}, {"status": 503, "headers": wait}, '{"ok": 1}']) as server:
        client = LlmClient(server.settings(max_retries=2))
        start = time.monotonic()
        reply = complete(client)
        elapsed = time.monotonic() - start
    assert reply.text == '{"ok": 1}' and len(server.requests) == 3 and elapsed >= 0.4
    assert reply.total_tokens > 0


def test_a_hostile_retry_after_cannot_stall_the_study():
    with ScriptedLlmServer([{"status": 429, "headers": {"retry-after": "3600"}}, "{}"]) as server:
        start = time.monotonic()
        try:  # openai either refuses so long a wait and gives up (newer releases) or backs off as usual
            assert complete(LlmClient(server.settings(max_retries=2))).text == "{}"
        except LlmUnavailable as e:
            assert "HTTP 429" in str(e) and len(server.requests) == 1
    assert time.monotonic() - start < 2.0


def test_persistent_5xx_gives_up_with_llm_unavailable():
    with ScriptedLlmServer([{"status": 500, "headers": {"retry-after": "0.01"}}]) as server:
        client = LlmClient(server.settings(max_retries=2))
        with pytest.raises(LlmUnavailable, match=r"3 attempt.*HTTP 500"):
            complete(client)
    assert len(server.requests) == 3


def test_client_errors_are_not_retried():
    with ScriptedLlmServer([{"status": 401}]) as server:
        with pytest.raises(LlmUnavailable, match="HTTP 401"):
            complete(LlmClient(server.settings(max_retries=3)))
    assert len(server.requests) == 1


def test_a_hanging_server_times_out_into_llm_unavailable():
    with ScriptedLlmServer([{"hang": 5}]) as server:
        client = LlmClient(server.settings(timeout_s=0.5, max_retries=1))
        start = time.monotonic()
        with pytest.raises(LlmUnavailable, match="timed out"):
            complete(client)
        elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 3.0  # two attempts of 0.5 s and one backoff, no more


def test_a_closed_port_fails_fast():
    settings = LlmSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", timeout_s=5, max_retries=2)
    start = time.monotonic()
    with pytest.raises(LlmUnavailable, match="connection failed"):
        complete(LlmClient(settings))
    assert time.monotonic() - start < 3.0  # three refused connections and two short backoffs, no timeout


def test_an_endpoint_that_rejects_response_format_gets_plain_requests_from_then_on():
    with ScriptedLlmServer(['{"a": 1}'], reject_response_format=True) as server:
        client = LlmClient(server.settings())
        assert complete(client).text == '{"a": 1}'
        assert complete(client).text == '{"a": 1}'
    assert [("response_format" in r) for r in server.requests] == [True, False, False]
    assert client.structured_output is False


def test_structured_output_is_sent_with_the_schema_when_accepted():
    with ScriptedLlmServer(['{"a": 1}']) as server:
        client = LlmClient(server.settings())
        complete(client)
        body = server.requests[0]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "propose", "schema": SCHEMA, "strict": False},
    }
    assert body["model"] == "scripted" and body["temperature"] == 0.0 and client.structured_output is True


def test_the_model_defaults_to_the_first_one_the_endpoint_lists():
    with ScriptedLlmServer(["{}"], model="served/model") as server:
        client = LlmClient(LlmSettings(base_url=server.base_url))
        complete(client)
    assert server.requests[0]["model"] == "served/model"


def test_every_reply_counts_its_tokens_for_the_budget_even_without_usage():
    no_usage = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "{}"}}],
    }
    with ScriptedLlmServer(['{"a": 1}', {"raw": json.dumps(no_usage)}]) as server:
        client = LlmClient(server.settings())
        counted, estimated = complete(client), complete(client)
    assert counted.prompt_tokens > 0 and counted.completion_tokens > 0
    assert estimated.prompt_tokens == len(MESSAGES[0]["content"]) // 4 and estimated.completion_tokens == 0
    assert estimated.text == "{}" and estimated.finish_reason == "stop"


def test_settings_merge_flags_over_config_over_environment():
    env = {"OPENAI_BASE_URL": "http://env/v1", "OPENAI_API_KEY": "sk-env", "AUTOGLM_LLM_MODEL": "env-model"}
    s = LlmSettings.resolve(model="flag-model", config={"base_url": "http://cfg/v1", "timeout_s": 9}, env=env)
    assert (s.base_url, s.model, s.timeout_s) == ("http://cfg/v1", "flag-model", 9)
    assert s.api_key is not None and s.api_key.get_secret_value() == "sk-env"
    assert LlmSettings.resolve(env={}).base_url is None
    with pytest.raises(UserError, match="unknown LLM setting"):
        LlmSettings.resolve(config={"temperature": 1}, env={})
    with pytest.raises(UserError, match="timeout_s") as info:
        LlmSettings.resolve(api_key="sk-in-error", timeout_s=-1, env={})
    assert "sk-in-error" not in str(info.value)


def test_the_api_key_never_shows(caplog):
    secret = "sk-very-secret-123"
    settings = LlmSettings.resolve(api_key=secret, base_url="http://127.0.0.1:9/v1", model="m", env={})
    client = LlmClient(settings)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LlmUnavailable) as info:
        complete(client)
    shown = " ".join(
        [repr(settings), str(settings), repr(client), settings.model_dump_json(), str(settings.model_dump()),
         str(settings.public()), str(info.value), caplog.text]
    )  # fmt: skip
    assert secret not in shown
    assert "api_key='***'" in repr(settings) and settings.public()["api_key_set"] is True


def test_a_malformed_response_body_is_retried_then_reported_as_unavailable():
    with ScriptedLlmServer([{"raw": "<html>proxy error</html>"}, '{"a": 1}']) as server:
        assert complete(LlmClient(server.settings(max_retries=1))).text == '{"a": 1}'
    with ScriptedLlmServer([{"raw": "<html>proxy error</html>"}]) as server:
        with pytest.raises(LlmUnavailable, match="malformed response"):
            complete(LlmClient(server.settings(max_retries=1)))
