"""A chat-completions client for any OpenAI-compatible server, on httpx.

It speaks the subset that llama.cpp's server, vLLM, Ollama's ``/v1`` and hosted APIs share:
``POST {base_url}/chat/completions`` with messages, tools and ``response_format``, answered
with one JSON body or, with ``stream: true``, server-sent events ending in ``data: [DONE]``.

What it adds on top of one HTTP call:
- retries with exponential back-off and jitter after a 429, a 5xx, a refused or broken
  connection, a timeout or a malformed answer, honouring ``Retry-After`` (and
  ``retry-after-ms``); a stream is retried only before its first piece arrived;
- a timeout per attempt (for a stream: the longest silence between two pieces);
- token and cost accounting per call (usage from the server, or counted from the text);
- structured output by JSON Schema where the server takes ``response_format``, remembering
  a server that refused it so later calls do not pay for the refusal again;
- servers that answer a stream request with one JSON body are read as one piece.
Every failure is a :class:`~fleetmind.errors.ModelError` whose ``retryable`` says whether
asking again can help.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from fleetmind.agents._llm import (
    ChatDelta,
    ChatMessage,
    ChatStream,
    Completion,
    LLMClient,
    ToolCall,
    Usage,
)
from fleetmind.agents._models import ModelEndpoint
from fleetmind.errors import (
    FleetStateError,
    ModelError,
    ModelRateLimited,
    ModelRejected,
    ModelResponseInvalid,
    ModelUnavailable,
)

_RETRY_STATUSES = frozenset({408, 409, 425, 500, 502, 503, 504, 520, 522, 524, 529})
_MAX_ERROR_CHARS = 300


class OpenAICompatibleClient(LLMClient):
    """Talks to one OpenAI-compatible endpoint.

    ```python
    endpoint = ModelEndpoint(name="cloud", base_url="http://127.0.0.1:8080/v1", model="m")
    async with OpenAICompatibleClient(endpoint) as model:
        answer = await model.complete([ChatMessage.user("hello")])
        print(answer.content, answer.usage.total_tokens, answer.cost)
    ```

    Args:
        endpoint: Where the server is and how to talk to it.
        transport: An httpx transport (tests); the network by default.
        rng: Source of back-off jitter (seed it for repeatable tests).
        sleep: How to wait between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        endpoint: ModelEndpoint,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.model_name = endpoint.model
        self._api_key = endpoint.resolve_api_key()
        self._transport = transport
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._schema_mode = endpoint.structured_output
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<OpenAICompatibleClient {self.name} {self.endpoint.model} at {self.url}>"

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return self.endpoint.prices.cost(prompt_tokens, completion_tokens)

    @property
    def url(self) -> str:
        """The chat-completions URL."""
        return f"{self.endpoint.base_url}/chat/completions"

    @property
    def supports_json_schema(self) -> bool:  # type: ignore[override]
        """Whether ``response_schema`` is sent to the server (it may still be ignored)."""
        return self._schema_mode in ("auto", "json_schema")

    # Connection ---------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._closed:
            raise FleetStateError(f"the {self.name} model client is closed")
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            # An httpx client belongs to the loop that opened its connections; a client
            # used from a new loop (a second asyncio.run) gets a fresh one.
            headers = {"Accept": "application/json", **self.endpoint.headers}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._http = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(
                    self.endpoint.timeout_s, connect=self.endpoint.connect_timeout_s
                ),
                transport=self._transport,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
            self._loop = loop
        return self._http

    async def aclose(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        self._closed = True
        http, self._http = self._http, None
        if http is not None and self._loop is asyncio.get_running_loop():
            await http.aclose()

    async def release_connections(self) -> None:
        """Close the open connections but keep the client usable (they reopen on next use).

        Call it before the event loop that used the client ends, when the client will be
        used again from another loop (each ``asyncio.run`` is a new loop).
        """
        http, self._http = self._http, None
        if http is not None and self._loop is asyncio.get_running_loop():
            await http.aclose()

    async def list_models(self) -> list[str]:
        """The model names the server offers (``GET /models``).

        Raises:
            ModelError: the server cannot be reached or does not list models.
        """
        url = f"{self.endpoint.base_url}/models"
        try:
            async with asyncio.timeout(self.endpoint.timeout_s):
                response = await self._client().get(url)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise ModelRejected(
                f"the {self.name} model's server answered {response.status_code} to GET /models"
                f": {_error_text(response)}"
            )
        try:
            data = response.json()
            return [str(m["id"]) for m in data.get("data") or data.get("models") or []]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ModelResponseInvalid(
                f"the {self.name} model's server sent an unreadable model list"
            ) from None

    # Requests -----------------------------------------------------------------------------

    def _body(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, Any]],
        tool_choice: str | None,
        max_tokens: int | None,
        temperature: float | None,
        stop: Sequence[str],
        response_schema: Mapping[str, Any] | None,
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": [m.to_openai() for m in messages],
        }
        if tools:
            body["tools"] = list(tools)
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        if max_tokens is not None:
            body[self.endpoint.max_tokens_field] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if stop:
            body["stop"] = list(stop)
        if response_schema is not None:
            if self._schema_mode in ("auto", "json_schema"):
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": dict(response_schema)},
                }
            elif self._schema_mode == "json_object":
                body["response_format"] = {"type": "json_object"}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        tool_choice: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] = (),
        response_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        started = time.perf_counter()
        body = self._body(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            response_schema=response_schema,
            stream=False,
        )
        _, attempts, data = await self._send(body, stream=False)
        return self._completion(data, messages, time.perf_counter() - started, attempts)

    @asynccontextmanager
    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        tool_choice: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] = (),
    ) -> AsyncIterator[ChatStream]:
        started = time.perf_counter()
        body = self._body(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            response_schema=None,
            stream=True,
        )
        response, attempts, _ = await self._send(body, stream=True)
        stream = _SSEStream(self, response, messages, started, attempts)
        try:
            yield stream
        finally:
            await response.aclose()

    async def _send(self, body: dict[str, Any], *, stream: bool) -> tuple[httpx.Response, int, Any]:
        """POST with retries: a 2xx response (for a stream: its head only), the attempts it
        took, and (not streaming) its body parsed."""
        http = self._client()
        attempts = 0
        while True:
            attempts += 1
            retry_after: float | None = None
            response: httpx.Response | None = None
            try:
                async with asyncio.timeout(self.endpoint.timeout_s):
                    request = http.build_request("POST", self.url, json=body)
                    response = await http.send(request, stream=stream)
                    if stream and response.status_code >= 300:
                        await response.aread()
            except (httpx.HTTPError, TimeoutError) as exc:
                if response is not None:
                    await response.aclose()
                error: ModelError = self._transport_error(exc)
            else:
                status = response.status_code
                if status < 300:
                    if stream:
                        return response, attempts, None
                    try:
                        return response, attempts, response.json()
                    except ValueError:
                        error = ModelResponseInvalid(
                            f"the {self.name} model answered with a body that is not JSON: "
                            f"{_snippet(response.text)}"
                        )
                elif status == 400 and "response_format" in body and _refuses_schema(response):
                    # The server does not take JSON Schema: ask by instructions from now on.
                    self._schema_mode = "prompt"
                    body = {k: v for k, v in body.items() if k != "response_format"}
                    attempts -= 1
                    continue
                elif status == 429:
                    retry_after = _retry_after(response)
                    error = ModelRateLimited(
                        f"the {self.name} model is rate limited (429): {_error_text(response)}"
                    )
                elif status in _RETRY_STATUSES or status >= 500:
                    retry_after = _retry_after(response)
                    error = ModelUnavailable(
                        f"the {self.name} model's server answered {status}: {_error_text(response)}"
                    )
                elif status in (401, 403):
                    raise ModelRejected(
                        f"the {self.name} model's server refused the API key ({status}): "
                        f"{_error_text(response)}"
                    )
                else:
                    raise ModelRejected(
                        f"the {self.name} model's server refused the request ({status}): "
                        f"{_error_text(response)}"
                    )
            if attempts > self.endpoint.max_retries:
                if attempts > 1:
                    error.message = f"{error.message} (after {attempts} attempts)"
                    error.args = (error.message,)
                raise error
            if retry_after is not None and retry_after > self.endpoint.max_backoff_s:
                raise ModelRateLimited(
                    f"{error.message}; it asks to wait {retry_after:.0f} s, longer than "
                    f"max_backoff_s={self.endpoint.max_backoff_s:g}"
                )
            delay = retry_after if retry_after is not None else self._backoff(attempts)
            await self._sleep(delay)

    def _backoff(self, failed_attempts: int) -> float:
        base = min(self.endpoint.max_backoff_s, 0.5 * 2 ** (failed_attempts - 1))
        return float(base * (0.5 + self._rng.random() / 2))

    def _transport_error(self, exc: BaseException) -> ModelError:
        where = f"the {self.name} model at {self.endpoint.base_url}"
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            if isinstance(exc, httpx.ConnectTimeout):
                return ModelUnavailable(
                    f"cannot connect to {where} within {self.endpoint.connect_timeout_s:g} s"
                )
            return ModelUnavailable(f"{where} did not answer within {self.endpoint.timeout_s:g} s")
        if isinstance(exc, httpx.ConnectError):
            return ModelUnavailable(f"cannot connect to {where}: {_reason(exc)}")
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return ModelUnavailable(f"the connection to {where} broke: {_reason(exc)}")
        return ModelUnavailable(f"{where}: {_reason(exc)}")

    # Answers ------------------------------------------------------------------------------

    def _completion(
        self,
        data: Any,
        messages: Sequence[ChatMessage],
        latency_s: float,
        attempts: int,
    ) -> Completion:
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
            content = message.get("content") or ""
            if not isinstance(content, str):  # some servers send a list of content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            calls = tuple(
                ToolCall(
                    id=str(c.get("id") or f"call_{n}"),
                    name=str(c["function"]["name"]),
                    arguments=_arguments_text(c["function"].get("arguments")),
                )
                for n, c in enumerate(message.get("tool_calls") or ())
            )
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ModelResponseInvalid(
                f"the {self.name} model's answer has no choices[0].message: {_snippet(data)}"
            ) from None
        usage = _usage(data.get("usage"), messages, content, calls)
        return Completion(
            content=content,
            model=str(data.get("model") or self.endpoint.model),
            usage=usage,
            tool_calls=calls,
            finish_reason=finish,
            cost=self.endpoint.prices.cost(usage.prompt_tokens, usage.completion_tokens),
            latency_s=latency_s,
            endpoint=self.name,
            attempts=attempts,
        )


class _SSEStream(ChatStream):
    """Reads ``data:`` events of a chat-completions stream into deltas and a completion."""

    def __init__(
        self,
        client: OpenAICompatibleClient,
        response: httpx.Response,
        messages: Sequence[ChatMessage],
        started: float,
        attempts: int,
    ) -> None:
        self._client = client
        self._response = response
        self._messages = messages
        self._started = started
        self._attempts = attempts
        self._text: list[str] = []
        self._calls: dict[int, dict[str, str]] = {}
        self._finish: str | None = None
        self._usage: Any = None
        self._model = ""
        self._done = False
        self._completion: Completion | None = None

    @property
    def completion(self) -> Completion:
        if self._completion is None:
            raise ModelResponseInvalid("the stream has not ended yet; read it to the end first")
        return self._completion

    async def __aiter__(self) -> AsyncIterator[ChatDelta]:
        name = self._client.name
        content_type = self._response.headers.get("content-type", "")
        if "text/event-stream" not in content_type and "json" in content_type:
            # The server ignored `stream: true` and sent the whole answer at once.
            body = await self._read(self._response.aread())
            try:
                data = json.loads(body)
            except ValueError:
                raise ModelResponseInvalid(
                    f"the {name} model answered a stream request with a body that is not JSON"
                ) from None
            self._completion = self._client._completion(
                data, self._messages, time.perf_counter() - self._started, self._attempts
            )
            async for delta in _OneShot(self._completion):
                yield delta
            return
        self.streamed = True
        pieces = 0
        lines = self._response.aiter_lines()
        while True:
            try:
                line = await self._read(anext(lines))
            except StopAsyncIteration:
                break
            if not line.startswith("data:"):
                continue  # comments (":"), event names, ids, blank separators
            payload = line[5:].strip()
            if payload == "[DONE]":
                self._done = True
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise ModelResponseInvalid(
                    f"the {name} model's stream has a piece that is not JSON: {_snippet(payload)}"
                ) from None
            if not isinstance(chunk, dict):
                raise ModelResponseInvalid(f"the {name} model's stream has a malformed piece")
            if "error" in chunk:
                raise ModelUnavailable(
                    f"the {name} model reported an error mid-stream: {_snippet(chunk['error'])}"
                )
            pieces += 1
            for delta in self._absorb(chunk):
                yield delta
        if not self._done and self._finish is None:
            raise ModelResponseInvalid(
                f"the {name} model's stream ended before the answer was complete "
                f"(after {pieces} pieces)"
            )
        calls = tuple(
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
            for i, c in sorted(self._calls.items())
        )
        content = "".join(self._text)
        usage = _usage(self._usage, self._messages, content, calls)
        endpoint = self._client.endpoint
        self._completion = Completion(
            content=content,
            model=self._model or endpoint.model,
            usage=usage,
            tool_calls=calls,
            finish_reason=self._finish,
            cost=endpoint.prices.cost(usage.prompt_tokens, usage.completion_tokens),
            latency_s=time.perf_counter() - self._started,
            endpoint=self._client.name,
            attempts=self._attempts,
        )

    async def _read(self, awaitable: Awaitable[Any]) -> Any:
        """One read from the stream, within the endpoint's timeout, errors mapped."""
        try:
            async with asyncio.timeout(self._client.endpoint.timeout_s):
                return await awaitable
        except (httpx.HTTPError, TimeoutError) as exc:
            if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
                raise ModelResponseInvalid(
                    f"the {self._client.name} model's stream was cut off: {_reason(exc)}"
                ) from exc
            raise self._client._transport_error(exc) from exc

    def _absorb(self, chunk: dict[str, Any]) -> list[ChatDelta]:
        self._model = chunk.get("model") or self._model
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        out: list[ChatDelta] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                self._text.append(text)
                out.append(ChatDelta(text=text))
            for part in delta.get("tool_calls") or ():
                index = int(part.get("index", 0))
                call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                function = part.get("function") or {}
                call["id"] = part.get("id") or call["id"]
                call["name"] += function.get("name") or ""
                call["arguments"] += function.get("arguments") or ""
                out.append(
                    ChatDelta(
                        tool_index=index,
                        tool_id=part.get("id"),
                        tool_name=function.get("name"),
                        tool_arguments=function.get("arguments") or "",
                    )
                )
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out


class _OneShot:
    """The deltas of a whole completion, for servers that do not stream."""

    def __init__(self, completion: Completion) -> None:
        self._completion = completion

    async def __aiter__(self) -> AsyncIterator[ChatDelta]:
        if self._completion.content:
            yield ChatDelta(text=self._completion.content)
        for n, call in enumerate(self._completion.tool_calls):
            yield ChatDelta(
                tool_index=n, tool_id=call.id, tool_name=call.name, tool_arguments=call.arguments
            )


def _usage(
    raw: Any, messages: Sequence[ChatMessage], content: str, calls: Sequence[ToolCall]
) -> Usage:
    """Usage as the server reported it, or counted from the text when it did not."""
    if isinstance(raw, dict):
        try:
            return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))
        except (TypeError, ValueError):
            pass
    prompt_chars = sum(
        len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in messages
    )
    answer_chars = len(content) + sum(len(c.arguments) + len(c.name) for c in calls)
    return Usage(
        prompt_tokens=max(1, prompt_chars // 4),
        completion_tokens=max(1, answer_chars // 4) if answer_chars else 0,
        estimated=True,
    )


def _arguments_text(value: Any) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value)  # some servers send the arguments as an object


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, or ``Retry-After`` (seconds or a
    date); None when it does not say."""
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _refuses_schema(response: httpx.Response) -> bool:
    text = response.text.lower()
    return "response_format" in text or "json_schema" in text or "schema" in text


def _error_text(response: httpx.Response) -> str:
    """The server's error message, in one short line."""
    try:
        data = response.json()
    except ValueError:
        return _snippet(response.text) or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message") or error
        if error:
            return _snippet(error)
    return _snippet(data)


def _snippet(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _reason(exc: BaseException) -> str:
    return _snippet(str(exc) or type(exc).__name__)
