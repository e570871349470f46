"""A scripted OpenAI-compatible server on loopback, for testing LLM agents and planners.

It is a real HTTP server (its own thread, or its own process with ``python -m
fleetmind.testing.llm_server``): the client under test does real HTTP, keep-alive, chunked
streaming and all. What it answers is scripted: a queue of :class:`Reply` objects, rules that
answer requests containing some text, or a function of the request. Every request is recorded
so a test can check what was sent.

```python
with ScriptedLLMServer([Reply.tool("search", {"q": "x"}), Reply.text("done")]) as server:
    endpoint = ModelEndpoint(base_url=server.url, model="scripted")
    ...
    assert server.requests[0]["tools"]
```

Replies can carry the failures real servers produce: an error status with ``Retry-After``, a
body that is not JSON, a delay (for timeouts), a stream cut after some pieces.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        content: The answer's text.
        tool_calls: Tool calls, each ``{"name", "arguments"}`` (arguments as an object or as
            raw text, which may be invalid JSON on purpose) and optionally ``"id"``.
        finish_reason: Defaults to ``tool_calls`` when there are calls, else ``stop``.
        usage: ``{"prompt_tokens", "completion_tokens"}``; counted from the text when None;
            ``False`` leaves usage out.
        status: The HTTP status (an error reply when 400 or more).
        headers: Extra response headers (``Retry-After``...).
        body: A raw body sent as is (malformed JSON, an error page...).
        delay_s: Wait before answering (for timeouts).
        cut_after: For a stream: close the connection after this many pieces.
        piece_delay_s: For a stream: wait between pieces.
        model: The model name in the answer.
    """

    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, int] | bool | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    delay_s: float = 0.0
    cut_after: int | None = None
    piece_delay_s: float = 0.0
    model: str = "scripted-model"

    @classmethod
    def text(cls, content: str, **fields: Any) -> Reply:
        """A plain text answer."""
        return cls(content=content, **fields)

    @classmethod
    def tool(
        cls, name: str, arguments: Mapping[str, Any] | str | None = None, **fields: Any
    ) -> Reply:
        """An answer that calls one tool."""
        return cls(tool_calls=[{"name": name, "arguments": arguments or {}}], **fields)

    @classmethod
    def error(cls, status: int, message: str = "scripted error", **fields: Any) -> Reply:
        """An error status with an OpenAI-style error body."""
        body = json.dumps({"error": {"message": message, "type": "scripted"}})
        return cls(status=status, body=body, **fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reply:
        """A reply from its JSON form (what script files hold)."""
        return cls(**dict(data))

    def completion(self, request: Mapping[str, Any], call_prefix: str) -> dict[str, Any]:
        """The whole answer as a chat-completions body."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        calls = self._calls(call_prefix)
        if calls:
            message["tool_calls"] = calls
        body: dict[str, Any] = {
            "id": f"chatcmpl-{call_prefix}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish()}],
        }
        usage = self._usage(request)
        if usage is not None:
            body["usage"] = usage
        return body

    def pieces(self, request: Mapping[str, Any], call_prefix: str) -> list[dict[str, Any]]:
        """The answer as stream chunks: text a few characters at a time, then each tool call
        in two halves, then the finish, then usage (when the client asked for it)."""
        base = {
            "id": f"chatcmpl-{call_prefix}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        out = [chunk({"role": "assistant", "content": ""})]
        text = self.content
        for start in range(0, len(text), 8):
            out.append(chunk({"content": text[start : start + 8]}))
        for index, call in enumerate(self._calls(call_prefix)):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            out.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {
                                    "name": call["function"]["name"],
                                    "arguments": arguments[:half],
                                },
                            }
                        ]
                    }
                )
            )
            out.append(
                chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}
                )
            )
        out.append(chunk({}, self._finish()))
        usage = self._usage(request)
        if usage is not None and (request.get("stream_options") or {}).get("include_usage"):
            out.append({**base, "choices": [], "usage": usage})
        return out

    def _calls(self, prefix: str) -> list[dict[str, Any]]:
        calls = []
        for n, call in enumerate(self.tool_calls):
            arguments = call.get("arguments", {})
            calls.append(
                {
                    "id": call.get("id") or f"call_{prefix}_{n}",
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else json.dumps(arguments),
                    },
                }
            )
        return calls

    def _finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")

    def _usage(self, request: Mapping[str, Any]) -> dict[str, int] | None:
        if self.usage is False:
            return None
        if isinstance(self.usage, dict):
            prompt, completion = self.usage["prompt_tokens"], self.usage["completion_tokens"]
        else:
            prompt = max(1, len(json.dumps(request.get("messages", []))) // 4)
            completion = max(1, (len(self.content) + len(json.dumps(self.tool_calls))) // 4)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


@dataclass
class Rule:
    """Answer requests whose messages contain ``match`` with ``reply`` (every time, or once)."""

    match: str
    reply: Reply
    once: bool = False


Responder = Callable[[dict[str, Any]], Reply]


def request_text(request: Mapping[str, Any]) -> str:
    """All the text of a request's messages, for matching."""
    parts = []
    for message in request.get("messages") or ():
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
    return "\n".join(parts)


class ScriptedLLMServer:
    """An OpenAI-compatible server on 127.0.0.1 whose answers are scripted.

    Args:
        replies: Answers given in order, one per request.
        rules: Answers for requests that contain some text; checked before the queue.
        responder: A function of the request body that returns the answer; used when no rule
            matches and the queue is empty.
        port: The port (0: a free one).
        models: Names answered by ``GET /v1/models``.
        api_key: When set, requests without ``Authorization: Bearer <key>`` get 401.
    """

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        rules: Iterable[Rule] = (),
        responder: Responder | None = None,
        port: int = 0,
        models: Iterable[str] = ("scripted-model",),
        api_key: str | None = None,
    ) -> None:
        self._replies = list(replies)
        self._rules = list(rules)
        self._responder = responder
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        """Every chat-completions request body received, in order."""
        self.headers: list[dict[str, str]] = []
        """The headers of each request."""
        self.disconnects = 0
        """Streams the client closed before the server had sent everything."""
        self.disconnected = threading.Event()
        self.models = list(models)
        self.api_key = api_key
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # Lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to configure: ``http://127.0.0.1:PORT/v1``."""
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ScriptedLLMServer:
        """Start serving in a background thread."""
        handler = type("_Handler", (_Handler,), {"scripted": self})
        self._server = _QuietServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="scripted-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Script -------------------------------------------------------------------------------

    def push(self, *replies: Reply) -> None:
        """Queue more answers."""
        with self._lock:
            self._replies.extend(replies)

    def add_rule(self, rule: Rule) -> None:
        """Add a rule (checked in the order added)."""
        with self._lock:
            self._rules.append(rule)

    @property
    def pending(self) -> int:
        """Queued answers not given yet."""
        with self._lock:
            return len(self._replies)

    def _next(self, request: dict[str, Any]) -> tuple[Reply, str]:
        with self._lock:
            self.requests.append(request)
            self._counter += 1
            prefix = str(self._counter)
            text = request_text(request)
            for rule in self._rules:
                if rule.match in text:
                    if rule.once:
                        self._rules.remove(rule)
                    return rule.reply, prefix
            if self._replies:
                return self._replies.pop(0), prefix
        if self._responder is not None:
            return self._responder(request), prefix
        return Reply.error(500, "the scripted server has no reply left for this request"), prefix


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up (a cancelled request, a timeout) are not errors of the server."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    scripted: ScriptedLLMServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each keep-alive answer waits ~40 ms for an ACK
    wbufsize = -1  # buffered: headers and body leave in one write

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            data = {
                "object": "list",
                "data": [{"id": m, "object": "model"} for m in self.scripted.models],
            }
            self._send_json(200, data)
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        expected = self.scripted.api_key
        if expected is not None and self.headers.get("Authorization") != f"Bearer {expected}":
            self._send_json(401, {"error": {"message": "invalid API key"}})
            return
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "request body is not JSON"}})
            return
        with self.scripted._lock:
            self.scripted.headers.append(dict(self.headers.items()))
        reply, prefix = self.scripted._next(request)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.body is not None or reply.status >= 400:
            self._send_raw(reply.status, reply.body or "", reply.headers)
        elif request.get("stream"):
            self._send_stream(reply, request, prefix)
        else:
            self._send_json(reply.status, reply.completion(request, prefix), reply.headers)

    def _send_json(self, status: int, data: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(data), headers or {}, "application/json")

    def _send_raw(
        self,
        status: int,
        body: str,
        headers: Mapping[str, str],
        content_type: str = "application/json",
    ) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self._client_left()

    def _client_left(self) -> None:
        """The client closed the connection before the answer was sent (it was cancelled)."""
        self.close_connection = True
        with self.scripted._lock:
            self.scripted.disconnects += 1
        self.scripted.disconnected.set()

    def _send_stream(self, reply: Reply, request: Mapping[str, Any], prefix: str) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        events = [f"data: {json.dumps(p)}\n\n" for p in reply.pieces(request, prefix)]
        events.append("data: [DONE]\n\n")
        try:
            for n, event in enumerate(events):
                if reply.cut_after is not None and n >= reply.cut_after:
                    self.close_connection = True
                    self.wfile.flush()
                    return  # closed without the closing chunk: a cut stream
                data = event.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                if reply.piece_delay_s:
                    time.sleep(reply.piece_delay_s)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self._client_left()


def load_script(path: str) -> tuple[list[Reply], list[Rule]]:
    """Replies and rules from a JSON file: ``{"replies": [...], "rules": [{"match", "reply",
    "once"}]}`` or a plain list of replies."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if isinstance(data, list):
        return [Reply.from_dict(r) for r in data], []
    replies = [Reply.from_dict(r) for r in data.get("replies") or ()]
    rules = [
        Rule(match=r["match"], reply=Reply.from_dict(r["reply"]), once=bool(r.get("once")))
        for r in data.get("rules") or ()
    ]
    return replies, rules
