"""Real OTLP receivers for tests, on 127.0.0.1: HTTP/protobuf (http.server) and gRPC (grpcio).

They decode ExportTraceServiceRequest / ExportLogsServiceRequest with opentelemetry-proto and keep
what arrived (spans, log records, request headers). A receiver can also hang (hold each request
until released) or fail (HTTP 503), to test what a collector outage does to the service. An HTTP
receiver can be stopped and started again on the same port (an outage that ends), keeping what it
received, and can start failing after a number of requests (a collector that goes away mid-way).
"""

from __future__ import annotations

import gzip
import threading
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attrs(key_values: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in key_values}


@dataclass
class Received:
    spans: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def span_count(self) -> int:
        with self.lock:
            return len(self.spans)

    def log_count(self) -> int:
        with self.lock:
            return len(self.logs)

    def add_traces(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            for rs in request.resource_spans:
                resource = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex() or None,
                                "attributes": attrs(span.attributes),
                                "resource": resource,
                            }
                        )

    def add_logs(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        with self.lock:
            for rl in request.resource_logs:
                resource = attrs(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        self.logs.append(
                            {
                                "body": any_value(record.body),
                                "severity_text": record.severity_text,
                                "trace_id": record.trace_id.hex(),
                                "span_id": record.span_id.hex(),
                                "event_name": record.event_name,
                                "attributes": attrs(record.attributes),
                                "resource": resource,
                            }
                        )


class HttpReceiver:
    """OTLP/HTTP on 127.0.0.1:<free port>, or ``port``; ``mode`` is "ok", "hang" or "fail".

    ``received``: carry on filling another receiver's record (a collector back after an outage).
    ``fail_after``: answer that many requests, then fail every later one with 503."""

    def __init__(
        self,
        mode: str = "ok",
        *,
        port: int = 0,
        received: Received | None = None,
        fail_after: int | None = None,
    ) -> None:
        self.mode = mode
        self.received = received if received is not None else Received()
        self.release = threading.Event()
        self.fail_after = fail_after
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.headers.append({k.lower(): v for k, v in self.headers.items()})
                with receiver.received.lock:
                    receiver.requests += 1
                    if receiver.fail_after is not None and receiver.requests > receiver.fail_after:
                        receiver.mode = "fail"
                if receiver.mode == "hang":
                    receiver.release.wait(30)
                if receiver.mode != "ok":
                    self.send_response(503)
                    self.end_headers()
                    return
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path == "/v1/traces":
                    receiver.received.add_traces(
                        trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    )
                    reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/logs":
                    receiver.received.add_logs(
                        logs_service_pb2.ExportLogsServiceRequest.FromString(body)
                    )
                    reply = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class GrpcReceiver:
    """OTLP/gRPC trace and logs services on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.received = Received()
        received = self.received

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                received.headers.append(dict(context.invocation_metadata()))
                received.add_traces(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                received.headers.append(dict(context.invocation_metadata()))
                received.add_logs(request)
                return logs_service_pb2.ExportLogsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server.start()

    def close(self) -> None:
        self.server.stop(grace=None)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
