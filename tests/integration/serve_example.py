"""Run examples/fastapi_openai.py under uvicorn on 127.0.0.1 and send it requests; for
test_fastapi, in a fresh process per instrumentation (each patches the openai client its way).

    python -m tests.integration.serve_example REQUESTS   (env: OPENAI_BASE_URL, BLAMESET_EXPORTER,
                                                           BLAMESET_INSTRUMENTOR)
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_openai.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_openai_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on an ephemeral port; its base URL. The socket is listening
    before the server thread starts, so requests queue until uvicorn accepts them."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def main(requests: int) -> None:
    import httpx

    example = load_example()
    with serving(example.app) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/docs").status_code == 200
        for i in range(requests):
            reply = http.post("/v1/outline", json={"topic": f"topic {i}", "tenant": f"t{i % 3}"})
            assert reply.status_code == 200 and reply.text.startswith("# "), reply.text
    if example.instrumentor is not None:
        example.instrumentor.uninstrument()
    from blameset import instrument

    instrument.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]))
