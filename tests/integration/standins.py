"""Local stand-ins for the OpenAI and Anthropic APIs, speaking their wire formats (JSON and
server-sent events) on 127.0.0.1, so the real clients run against them unchanged.

Each answer's usage is fixed by the request (so a test knows the truth), and every call is logged
with the usage it reported and ``first_chunk_ns``, the ``time.time_ns()`` just before its first
streamed chunk was written: the clock blameset's spans use.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORDS = ["An", "outline", "for", "observability", ":", "why", ",", "how", ",", "what", "next"]
CACHED = 1024
"""Prompt tokens every answer reports as read from the cache."""
CACHE_WRITE = 256
"""Anthropic answers also report this many written to the cache."""


@dataclass
class Served:
    """One call the stand-in answered."""

    api: str
    stream: bool
    model: str
    input_tokens: int  # cache reads and writes included, as the OTel conventions count
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    first_chunk_ns: int | None = None


@dataclass
class StandIn:
    """The running server: its base URL, what it served, and gates tests hold streams on."""

    server: ThreadingHTTPServer
    served: list[Served] = field(default_factory=list)
    hold_after_first_chunk: threading.Event | None = None
    """When set to an Event, streams pause after their first chunk until it is set."""
    rate_limit_first: int = 0
    """Answer this many first calls with a 429 carrying retry-after-ms."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        if self.hold_after_first_chunk is not None:
            self.hold_after_first_chunk.set()
        self.server.shutdown()
        self.server.server_close()


def _prompt_tokens(body: dict[str, Any]) -> int:
    text = json.dumps(body.get("messages") or body.get("input") or "")
    return 2000 + len(text)


def start() -> StandIn:
    """Start both APIs on one ephemeral port of 127.0.0.1, in a daemon thread."""
    standin: StandIn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with standin.lock:
                limited = standin.rate_limit_first > 0
                if limited:
                    standin.rate_limit_first -= 1
            if limited:
                self._json(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                           {"retry-after-ms": "20"})  # fmt: skip
                return
            if self.path.endswith("/chat/completions"):
                self._openai(body)
            elif self.path.endswith("/responses"):
                self._openai_responses(body)
            elif self.path.endswith("/messages"):
                self._anthropic(body)
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        # -- plumbing ------------------------------------------------------------------------
        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _events(self, served: Served, events: Iterator[tuple[str | None, Any]]) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
            first = True
            try:
                for event, data in events:
                    text = data if isinstance(data, str) else json.dumps(data)
                    frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
                    if first:
                        served.first_chunk_ns = time.time_ns()
                    self.wfile.write(frame.encode())
                    self.wfile.flush()
                    if first and standin.hold_after_first_chunk is not None:
                        standin.hold_after_first_chunk.wait(30)
                    first = False
            except (BrokenPipeError, ConnectionResetError):
                return  # the client hung up: that is what some tests want

        def _record(self, served: Served) -> None:
            with standin.lock:
                standin.served.append(served)

        # -- OpenAI --------------------------------------------------------------------------
        def _openai(self, body: dict[str, Any]) -> None:
            model = body.get("model", "gpt-4o-mini")
            stream = bool(body.get("stream"))
            prompt = _prompt_tokens(body)
            served = Served("openai", stream, model, prompt, len(WORDS), CACHED, 0)
            self._record(served)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": len(WORDS),
                "total_tokens": prompt + len(WORDS),
                "prompt_tokens_details": {"cached_tokens": CACHED},
                "completion_tokens_details": {"reasoning_tokens": 0},
            }
            answer_model = f"{model}-2024-07-18" if model == "gpt-4o-mini" else model
            if not stream:
                self._json(
                    200,
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 1,
                        "model": answer_model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": " ".join(WORDS)},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                    },
                )
                return
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                return {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": answer_model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }

            def events() -> Iterator[tuple[str | None, Any]]:
                yield None, chunk({"role": "assistant", "content": ""})
                for word in WORDS:
                    yield None, chunk({"content": word + " "})
                yield None, chunk({}, "stop")
                if include_usage:
                    final = chunk({})
                    final["choices"] = []
                    final["usage"] = usage
                    yield None, final
                yield None, "[DONE]"

            self._events(served, events())

        def _openai_responses(self, body: dict[str, Any]) -> None:
            """The Responses API: a ``response`` object, or its events ending with
            ``response.completed`` (which carries the whole response and its usage)."""
            model = body.get("model", "gpt-4o-mini")
            stream = bool(body.get("stream"))
            prompt = _prompt_tokens(body)
            served = Served("openai-responses", stream, model, prompt, len(WORDS), CACHED, 0)
            self._record(served)
            answer_model = f"{model}-2024-07-18" if model == "gpt-4o-mini" else model
            text = " ".join(WORDS)
            response: dict[str, Any] = {
                "id": "resp_1",
                "object": "response",
                "created_at": 1,
                "status": "completed",
                "model": answer_model,
                "output": [
                    {
                        "type": "message",
                        "id": "msg_1",
                        "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}],
                    }
                ],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": {
                    "input_tokens": prompt,
                    "input_tokens_details": {"cached_tokens": CACHED},
                    "output_tokens": len(WORDS),
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": prompt + len(WORDS),
                },
            }
            if not stream:
                self._json(200, response)
                return

            def events() -> Iterator[tuple[str | None, Any]]:
                started = {**response, "status": "in_progress", "output": [], "usage": None}
                yield "response.created", {
                    "type": "response.created", "response": started, "sequence_number": 0,
                }  # fmt: skip
                for n, word in enumerate(WORDS, start=1):
                    yield (
                        "response.output_text.delta",
                        {
                            "type": "response.output_text.delta",
                            "item_id": "msg_1",
                            "output_index": 0,
                            "content_index": 0,
                            "delta": word + " ",
                            "sequence_number": n,
                        },
                    )
                yield (
                    "response.completed",
                    {
                        "type": "response.completed",
                        "response": response,
                        "sequence_number": len(WORDS) + 1,
                    },
                )

            self._events(served, events())

        # -- Anthropic -----------------------------------------------------------------------
        def _anthropic(self, body: dict[str, Any]) -> None:
            model = body.get("model", "claude-3-5-haiku-20241022")
            stream = bool(body.get("stream"))
            total = _prompt_tokens(body)
            uncached = total - CACHED - CACHE_WRITE
            served = Served("anthropic", stream, model, total, len(WORDS), CACHED, CACHE_WRITE)
            self._record(served)
            usage = {
                "input_tokens": uncached,
                "output_tokens": len(WORDS),
                "cache_read_input_tokens": CACHED,
                "cache_creation_input_tokens": CACHE_WRITE,
            }
            message = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": " ".join(WORDS)}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
            if not stream:
                self._json(200, message)
                return

            def events() -> Iterator[tuple[str | None, Any]]:
                start = {**message, "content": [], "stop_reason": None}
                start["usage"] = {**usage, "output_tokens": 1}
                yield "message_start", {"type": "message_start", "message": start}
                yield (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                for word in WORDS:
                    yield (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": word + " "},
                        },
                    )
                yield "content_block_stop", {"type": "content_block_stop", "index": 0}
                yield (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": len(WORDS)},
                    },
                )
                yield "message_stop", {"type": "message_stop"}

            self._events(served, events())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    standin = StandIn(server)
    threading.Thread(target=server.serve_forever, name="llm-standin", daemon=True).start()
    return standin
