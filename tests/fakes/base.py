"""HTTP plumbing shared by the fake model servers: the threaded server, JSON and SSE replies,
request-body checks that answer 400 instead of crashing, and the command-line entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from .scenario import RequestLog, Scenario

MAX_BODY = 64 << 20


class BadRequest(Exception):
    """The request cannot be served; the message goes back to the client in a 400."""


class FakeServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the scenario and the request log its handlers use."""

    daemon_threads = True
    # A relaunched test server must be able to rebind a port still in TIME_WAIT.
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        scenario: Scenario,
        log: RequestLog,
    ) -> None:
        super().__init__(address, handler)
        self.scenario = scenario
        self.log = log

    def shutdown(self) -> None:
        """Stop serving and release the socket (the serving thread must be running)."""
        super().shutdown()
        self.server_close()


class FakeHandler(BaseHTTPRequestHandler):
    """Routes requests to `post_routes`; subclasses give the API-specific answers and error shape."""

    server: FakeServer
    server_version = "FakeModel/1.0"
    # Paths without the query string; a handler method name per path.
    post_routes: ClassVar[dict[str, str]] = {}
    get_routes: ClassVar[dict[str, str]] = {}
    _answered = False

    # ------------------------------------------------------------ API-specific hooks

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """The JSON error object of this API."""
        return {"error": {"message": message, "status": status}}

    # ------------------------------------------------------------ dispatch

    def do_HEAD(self) -> None:
        """Probes of the base URL: a harmless empty 200."""
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        """`/` answers ok, known paths their handler, anything else a logged 404."""
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/":
            self.send_json(200, {"ok": True})
            return
        name = self.get_routes.get(path)
        if name is None:
            self.unknown()
            return
        self._guarded(name, None)

    def do_POST(self) -> None:
        """Parse the JSON body, then call the route's handler; bad input gets a 400."""
        path = self.path.split("?", 1)[0].rstrip("/")
        name = self.post_routes.get(path)
        if name is None:
            self._drain()
            self.unknown()
            return
        try:
            body = self.read_json()
        except BadRequest as exc:
            self.send_json(400, self.error_body(400, str(exc)))
            self.server.log.write({"path": self.path, "kind": "bad_request", "error": str(exc)})
            return
        self._guarded(name, body)

    def _guarded(self, name: str, body: dict[str, Any] | None) -> None:
        try:
            getattr(self, name)(body)
        except BadRequest as exc:
            self.send_json(400, self.error_body(400, str(exc)))
            self.server.log.write({"path": self.path, "kind": "bad_request", "error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away mid-answer (e.g. a supervisor killed the agent)
        except Exception as exc:  # a fake must answer, never die: report the bug and go on
            sys.stderr.write(f"fake server: error on {self.command} {self.path}: {exc!r}\n")
            if not self._answered:  # past the headers, closing the stream is all that is left
                with contextlib.suppress(OSError):
                    self.send_json(500, self.error_body(500, f"fake server error: {exc}"))

    def unknown(self) -> None:
        """Log the request to stderr and answer a JSON 404, so probes do no harm."""
        sys.stderr.write(f"fake server: unknown request {self.command} {self.path}\n")
        self.server.log.write({"path": self.path, "kind": "unknown", "method": self.command})
        self.send_json(404, self.error_body(404, f"no route for {self.command} {self.path}"))

    # ------------------------------------------------------------ bodies

    def _body_bytes(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            return b""
        try:
            size = int(length)
        except ValueError:
            raise BadRequest(f"bad Content-Length: {length!r}") from None
        if size < 0 or size > MAX_BODY:
            raise BadRequest(f"Content-Length out of range: {size}")
        return self.rfile.read(size)

    def _read_chunked(self) -> bytes:
        data = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                raise BadRequest("bad chunked request body") from None
            if size == 0:
                self.rfile.readline(1024)
                return bytes(data)
            if len(data) + size > MAX_BODY:
                raise BadRequest("request body too large")
            data += self.rfile.read(size)
            self.rfile.readline(1024)

    def _drain(self) -> None:
        with contextlib.suppress(BadRequest):
            self._body_bytes()

    def read_json(self) -> dict[str, Any]:
        """The request body as a JSON object, or BadRequest saying what is wrong with it."""
        encoding = self.headers.get("Content-Encoding", "identity").lower()
        raw = self._body_bytes()
        if encoding not in ("identity", ""):
            raise BadRequest(f"unsupported Content-Encoding: {encoding}")
        if not raw:
            raise BadRequest("empty request body; expected a JSON object")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    # ------------------------------------------------------------ replies

    def send_json(self, status: int, obj: Any) -> None:
        """A complete JSON reply."""
        data = json.dumps(obj).encode()
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake")
        self.end_headers()
        self.wfile.write(data)

    def start_sse(self) -> None:
        """Headers of a server-sent-event stream; it ends when the connection closes (HTTP/1.0)."""
        self._answered = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("request-id", "req_fake")
        self.end_headers()

    def send_event(self, name: str, data: dict[str, Any]) -> None:
        """One SSE event, flushed at once so a client sees it as it would from a real API."""
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet: every request is in the JSONL log, unknown ones on stderr."""


def split_in_two(text: str) -> list[str]:
    """`text` in two pieces (one if too short): streams send deltas that must be joined, as real APIs do."""
    mid = len(text) // 2
    return [text[:mid], text[mid:]] if mid else [text]


def start_server(
    handler: type[FakeHandler],
    workdir: Path,
    *,
    steps: int = 3,
    base_tokens: int = 1000,
    tokens_per_turn: int = 200,
    step_output: int = 0,
    log: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> tuple[FakeServer, int]:
    """Serve `handler` in a daemon thread; returns the server (stop it with `.shutdown()`) and its port."""
    scenario = Scenario(Path(workdir), steps, base_tokens, tokens_per_turn, step_output)
    server = FakeServer((host, port), handler, scenario, RequestLog(log))
    # A short poll interval keeps `.shutdown()` quick between tests.
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-model-server", daemon=True
    ).start()
    return server, server.server_address[1]


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(handler: type[FakeHandler], description: str, argv: list[str] | None = None) -> int:
    """Command-line entry point: serve until interrupted, after printing (and writing) the port."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=_positive, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workdir", type=Path, required=True, help="where steps.txt lives")
    parser.add_argument("--steps", type=_positive, default=3)
    parser.add_argument("--base-tokens", type=_positive, default=1000)
    parser.add_argument("--tokens-per-turn", type=_positive, default=200)
    parser.add_argument(
        "--step-output", type=_positive, default=0, help="lines each step's command also prints (seq 1 N)"
    )
    parser.add_argument("--port-file", type=Path, help="also write the bound port here")
    parser.add_argument("--log", type=Path, help="append one JSON line per request here")
    args = parser.parse_args(argv)
    if not args.workdir.is_dir():
        parser.error(f"--workdir {args.workdir} is not a directory")
    scenario = Scenario(
        args.workdir.resolve(), args.steps, args.base_tokens, args.tokens_per_turn, args.step_output
    )
    try:
        server = FakeServer((args.host, args.port), handler, scenario, RequestLog(args.log))
    except OSError as exc:
        parser.exit(1, f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {exc}\n")
    port = server.server_address[1]
    print(port, flush=True)
    if args.port_file:
        # Written whole then renamed, so a waiting reader never sees half a number.
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
