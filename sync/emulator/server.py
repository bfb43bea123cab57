"""The emulator's HTTP layer: a threaded server on loopback, request framing, answers.

What an answer says is decided elsewhere (``App.respond``); here it is read and written.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from sync.emulator.routes import Answer, Request

_MAX_BODY = 1 << 20


class App(Protocol):
    latency_s: float

    def clock(self) -> float: ...

    def respond(self, request: Request, at: float) -> Answer: ...


class FramingError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

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

    @property
    def idle(self) -> bool:
        """No client's connection is open: whatever a client sent before it went away (a
        killed run's requests in flight) has been read and answered."""
        with self._connections_lock:
            return not self._connections

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, each answer waits ~40 ms for the
    # client's delayed ACK of the first.
    disable_nagle_algorithm = True
    server: Server

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
        self._write(Answer(code))

    def _dispatch(self) -> None:
        app = self.server.app
        at = app.clock()
        try:
            body = self._read_body()
        except FramingError as error:
            self.close_connection = True
            self._write(Answer(error.status))
            return
        if app.latency_s:
            time.sleep(app.latency_s)
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._write(app.respond(Request(self.command, self.path, headers, body), at))

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
            raise FramingError(400) from None
        if not 0 <= length <= _MAX_BODY:
            raise FramingError(400 if length < 0 else 413)
        body = self.rfile.read(length)
        if len(body) < length:
            raise FramingError(400)
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
                raise FramingError(400) from None
            total += size
            if size < 0 or total > _MAX_BODY:
                raise FramingError(413)
            if size == 0:
                break
            self.rfile.read(size + 2)
        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields

    def _write(self, answer: Answer) -> None:
        if answer.status is None:
            self.close_connection = True
            return
        self.send_response(answer.status)
        # On every answer, a dashed UUID: what NP6 support asks for. [S]
        self.send_header("x-request-id", str(uuid.uuid4()))
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
