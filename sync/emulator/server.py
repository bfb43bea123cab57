"""The local NP6 stand-in: a real HTTP server on loopback, with NP6's rules and injectable faults.

Used by the test-suite, the benchmark and the ``np6-sync emulator`` / ``np6-sync demo`` commands.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hmac
import json
import math
import os
import random
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

ALL_FAULTS: tuple[str, ...] = ("429", "429-retry-after", "500", "503", "drop", "lost")
MAX_TARGETS = 50
DEFAULT_KEY = "emulator-key"
DEFAULT_PORT = 8650

_JSON = "application/json"
_MAX_BODY = 1 << 20
_SEGMENT_PATH = re.compile(r"/segments/([1-9][0-9]{0,17})/(targets|normalization)")
_TARGET_PATH = re.compile(r"/targets/([^/]+)/segments/([1-9][0-9]{0,17})")
_COUNTRY = re.compile(r"[A-Z]{3}")
_ALLOWED = {"targets": ("PUT", "DELETE", "GET"), "normalization": ("POST",), "member": ("DELETE",)}
_FAULT_ANSWERS = {
    "429": (429, b""),
    "500": (500, b"internal error\n"),
    "503": (503, b"maintenance\n"),
}


@dataclass(frozen=True)
class Call:
    """One request as the emulator saw it."""

    method: str
    path: str
    segment_id: int | None
    status: int | None  # None: the connection was closed without an answer
    targets: tuple[str, ...] | None  # a PUT body that was a JSON array of strings
    fault: str | None
    at: float


@dataclass
class _Answer:
    status: int | None  # None: close the connection without answering
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Route:
    resource: str  # a key of _ALLOWED
    segment_id: int
    target: str | None = None


class Emulator:
    """NP6's segment calls, held in memory. Start it (or use ``with``) and point a client at
    ``url``; ``members``, ``calls`` and ``inject`` let a test see and steer what happens."""

    def __init__(
        self,
        api_key: str = DEFAULT_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        segments: Iterable[int] | None = None,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] = ALL_FAULTS,
        seed: int = 0,
        retry_after_s: int = 1,
        rate_limit_per_s: int | None = None,
        echo_headers_on_error: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_faults(fault_kinds)
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, not {fault_rate}")
        if fault_rate and not fault_kinds:
            raise ValueError("fault_rate needs at least one fault kind")
        if latency_s < 0 or retry_after_s < 0:
            raise ValueError("latency_s and retry_after_s cannot be negative")
        if rate_limit_per_s is not None and rate_limit_per_s < 1:
            raise ValueError(f"rate_limit_per_s must be at least 1, not {rate_limit_per_s}")
        self.api_key = api_key
        self.host = host
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self.retry_after_s = retry_after_s
        self.rate_limit_per_s = rate_limit_per_s
        self.echo_headers_on_error = echo_headers_on_error
        self._port = port
        self._clock = clock
        self._known = None if segments is None else {int(s) for s in segments}
        self._members: dict[int, set[str]] = {s: set() for s in self._known or ()}
        self._normalizations: dict[int, list[dict[str, Any]]] = {}
        self._calls: list[Call] = []
        self._injected: deque[str] = deque()
        self._window: deque[float] = deque()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def bind(self) -> Emulator:
        """Open the listening socket (so ``url`` is known) without serving yet."""
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        self._server = _Server((self.host, self._port), self)
        return self

    def start(self) -> Emulator:
        """Serve from a daemon thread."""
        server = self.bind()._server
        assert server is not None
        # A short poll interval: stop() waits up to one of them, once per test.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from this thread until interrupted (the CLI)."""
        if self._server is None:
            self.bind()
        assert self._server is not None
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        if self._thread is not None and self._server is not None:
            self._server.shutdown()
            self._thread.join()
        self._thread = None
        self._close()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            # Otherwise a client's pooled keep-alive connection would still be answered.
            server.close_connections()
            server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- what tests see and steer ------------------------------------------------------

    def members(self, segment_id: int) -> set[str]:
        with self._lock:
            return set(self._members.get(segment_id, ()))

    def set_members(self, segment_id: int, targets: Iterable[str]) -> None:
        """Replace what a segment holds; the segment exists from then on."""
        with self._lock:
            if self._known is not None:
                self._known.add(segment_id)
            self._members[segment_id] = set(targets)

    def normalizations(self, segment_id: int) -> list[dict[str, Any]]:
        """The accepted normalization bodies, oldest first."""
        with self._lock:
            return copy.deepcopy(self._normalizations.get(segment_id, []))

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            # Handlers record on completion; concurrent requests can finish out of order.
            return sorted(self._calls, key=lambda call: call.at)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def inject(self, *faults: str) -> None:
        """The next ``len(faults)`` authenticated requests get these faults, in order."""
        _check_faults(faults)
        with self._lock:
            self._injected.extend(faults)

    # --- the API -----------------------------------------------------------------------

    def _respond(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None, at: float
    ) -> _Answer:
        route = _route(path)
        targets = _as_targets(body) if route and route.resource == "targets" else None
        fault = None
        if not hmac.compare_digest(headers.get("x-key", "").encode(), self.api_key.encode()):
            answer = _Answer(401)
        else:
            quota, limited = self._take_slot()
            if limited:
                answer = _Answer(429)
            else:
                fault = self._draw_fault()
                answer = self._fault_answer(fault) or self._serve(
                    method, route, headers, body, targets
                )
                if fault == "lost":
                    answer = _Answer(None)
            answer.headers.update(quota)
        if self.echo_headers_on_error and answer.status is not None and answer.status >= 400:
            answer.body = json.dumps({"status": answer.status, "request_headers": headers}).encode()
            answer.content_type = _JSON
        segment_id = route.segment_id if route else None
        call = Call(method, path, segment_id, answer.status, targets, fault, at)
        with self._lock:
            self._calls.append(call)
        return answer

    def _serve(
        self,
        method: str,
        route: _Route | None,
        headers: Mapping[str, str],
        body: bytes | None,
        targets: tuple[str, ...] | None,
    ) -> _Answer:
        if route is None:
            return _Answer(404)
        allowed = _ALLOWED[route.resource]
        if method not in allowed:
            return _Answer(405, headers={"Allow": ", ".join(allowed)})
        if route.resource == "member":
            return self._remove(route.segment_id, route.target or "")
        if method == "GET":
            return self._list(route.segment_id)
        if method == "DELETE":
            return self._clear(route.segment_id)
        if not _is_json(headers):
            return _Answer(415, b"Content-Type must be application/json\n")
        if body is None:
            return _Answer(411, b"Content-Length required\n")
        if method == "PUT":
            return self._add(route.segment_id, targets)
        return self._normalize(route.segment_id, _load_json(body))

    def _add(self, segment_id: int, targets: tuple[str, ...] | None) -> _Answer:
        if targets is None:
            return _Answer(400, b"the body must be a JSON array of strings\n")
        if not 1 <= len(targets) <= MAX_TARGETS or "" in targets:
            return _Answer(400, f"send 1 to {MAX_TARGETS} non-empty identifiers\n".encode())
        with self._lock:
            members = self._segment(segment_id)
            if members is None:
                return _Answer(404)
            before = len(members)
            members.update(targets)
            added = len(members) - before
        return _Answer(200, str(added).encode(), _JSON)

    def _normalize(self, segment_id: int, payload: object) -> _Answer:
        fields = _normalization_fields(payload)
        if fields is None:
            return _Answer(400, b'expected {"fields": {"<fieldId>": ["FRA", ...]}}\n')
        with self._lock:
            if self._segment(segment_id) is None:
                return _Answer(404)
            self._normalizations.setdefault(segment_id, []).append({"fields": fields})
        return _Answer(204)

    def _list(self, segment_id: int) -> _Answer:
        with self._lock:
            members = self._segment(segment_id)
            listed = None if members is None else sorted(members)
        if listed is None:
            return _Answer(404)
        return _Answer(200, json.dumps(listed).encode(), _JSON)

    def _clear(self, segment_id: int) -> _Answer:
        with self._lock:
            members = self._segment(segment_id)
            if members is None:
                return _Answer(404)
            members.clear()
        return _Answer(204)

    def _remove(self, segment_id: int, target: str) -> _Answer:
        with self._lock:
            members = self._segment(segment_id)
            if members is None or target not in members:
                return _Answer(404)
            members.remove(target)
        return _Answer(204)

    def _segment(self, segment_id: int) -> set[str] | None:
        """The live member set (call with the lock held); None for an unknown segment."""
        if self._known is not None and segment_id not in self._known:
            return None
        return self._members.setdefault(segment_id, set())

    def _take_slot(self) -> tuple[dict[str, str], bool]:
        """Count this request in the sliding one-second window: (quota headers, refused)."""
        limit = self.rate_limit_per_s
        if limit is None:
            return {}, False
        with self._lock:
            now = self._clock()
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            refused = len(self._window) >= limit
            if not refused:
                self._window.append(now)
            remaining = limit - len(self._window)
            reset = max(1, math.ceil(self._window[0] + 1.0 - now))
        quota = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}
        return {**quota, "X-RateLimit-Reset": str(reset)}, refused

    def _draw_fault(self) -> str | None:
        with self._lock:
            if self._injected:
                return self._injected.popleft()
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.fault_kinds)
        return None

    def _fault_answer(self, fault: str | None) -> _Answer | None:
        if fault == "drop":
            return _Answer(None)
        if fault == "429-retry-after":
            return _Answer(429, headers={"Retry-After": str(self.retry_after_s)})
        if fault in _FAULT_ANSWERS:
            return _Answer(*_FAULT_ANSWERS[fault])
        return None


def _check_faults(faults: Iterable[str]) -> None:
    unknown = sorted(set(faults) - set(ALL_FAULTS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(ALL_FAULTS)}")


def _route(path: str) -> _Route | None:
    path = urlsplit(path).path
    if match := _SEGMENT_PATH.fullmatch(path):
        return _Route(match[2], int(match[1]))
    if match := _TARGET_PATH.fullmatch(path):
        return _Route("member", int(match[2]), unquote(match[1]))
    return None


def _is_json(headers: Mapping[str, str]) -> bool:
    media_type = headers.get("content-type", "").partition(";")[0]
    return media_type.strip().lower() == _JSON


def _load_json(body: bytes | None) -> object:
    """The parsed body; None when absent or not JSON (never a valid payload here)."""
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _as_targets(body: bytes | None) -> tuple[str, ...] | None:
    payload = _load_json(body)
    if isinstance(payload, list) and all(isinstance(t, str) for t in payload):
        return tuple(payload)
    return None


def _normalization_fields(payload: object) -> dict[str, list[str]] | None:
    """The ``fields`` of a valid normalization body, else None."""
    if not isinstance(payload, dict) or set(payload) != {"fields"}:
        return None
    fields = payload["fields"]
    if not isinstance(fields, dict) or not fields:
        return None
    for key, codes in fields.items():
        if not (key.isdigit() and isinstance(codes, list) and codes):
            return None
        if not all(isinstance(code, str) and _COUNTRY.fullmatch(code) for code in codes):
            return None
    return {key: list(codes) for key, codes in fields.items()}


class _FramingError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which can take seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # Shutting down (not closing) wakes the handler thread, which owns the socket.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client went away mid-answer: routine for a test server
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, each answer waits ~40 ms for the
    # client's delayed ACK of the first.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the test and CLI output

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Only http.server calls this, for a request it could not parse: the stream is lost.
        self.close_connection = True
        self._write(_Answer(code))

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        at = emulator._clock()
        try:
            body = self._read_body()
        except _FramingError as error:
            self.close_connection = True
            self._write(_Answer(error.status))
            return
        if emulator.latency_s:
            time.sleep(emulator.latency_s)
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._write(emulator._respond(self.command, self.path, headers, body, at))

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes | None:
        """The body; None when the request has no Content-Length (a chunked one is drained)."""
        declared = self.headers.get("Content-Length")
        if declared is None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self._drain_chunked()
            return None
        try:
            length = int(declared)
        except ValueError:
            raise _FramingError(400) from None
        if not 0 <= length <= _MAX_BODY:
            raise _FramingError(400 if length < 0 else 413)
        body = self.rfile.read(length)
        if len(body) < length:
            raise _FramingError(400)
        return body

    def _drain_chunked(self) -> None:
        # Answering before the body is read would make the kernel reset the connection, and
        # the client would see that instead of the 411.
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                raise _FramingError(400) from None
            total += size
            if size < 0 or total > _MAX_BODY:
                raise _FramingError(413)
            if size == 0:
                break
            self.rfile.read(size + 2)
        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields

    def _write(self, answer: _Answer) -> None:
        if answer.status is None:
            self.close_connection = True
            return
        self.send_response(answer.status)
        self.send_header("x-request-id", uuid.uuid4().hex)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.status != 204:  # RFC 9110 forbids Content-Length on a 204
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if answer.body and self.command != "HEAD":
            self.wfile.write(answer.body)


# --- np6-sync emulator -----------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port (0: any free port; default: %(default)s)",
    )
    parser.add_argument(
        "--key", help=f"the API key to accept (default: $NP6_API_KEY, else {DEFAULT_KEY!r})"
    )
    parser.add_argument(
        "--segments", type=_ids, help="comma-separated segment ids that exist (default: any)"
    )
    parser.add_argument("--latency-ms", type=_non_negative, default=0.0, help="delay per answer")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests given a fault (0..1)"
    )
    parser.add_argument(
        "--faults", type=_kinds, default=ALL_FAULTS, help=f"comma-separated: {','.join(ALL_FAULTS)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the random faults")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After of 429-retry-after")
    parser.add_argument("--rate-limit", type=int, help="requests per second before answering 429")


def run_cli(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("NP6_API_KEY") or DEFAULT_KEY
    try:
        emulator = Emulator(
            key,
            host=args.host,
            port=args.port,
            segments=args.segments,
            latency_s=args.latency_ms / 1000,
            fault_rate=args.fault_rate,
            fault_kinds=args.faults,
            seed=args.seed,
            retry_after_s=args.retry_after,
            rate_limit_per_s=args.rate_limit,
        ).bind()
    except ValueError as error:
        print(f"np6-sync emulator: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(
            f"np6-sync emulator: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr
        )
        return 1
    print(f"NP6 emulator listening on {emulator.url}", flush=True)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # SIGINT too: a shell starts background jobs with it ignored, and Ctrl-C must still work.
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sync.emulator``: the same as ``np6-sync emulator``."""
    parser = argparse.ArgumentParser(prog="np6-sync emulator", description=__doc__)
    configure_parser(parser)
    return run_cli(parser.parse_args(argv))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # stop serve_forever the way Ctrl-C does


def _ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of segment ids: {text!r}") from None
    if not ids or min(ids) < 1:
        raise argparse.ArgumentTypeError(f"segment ids must be positive integers: {text!r}")
    return ids


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        _check_faults(kinds)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return kinds


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value
