"""``Emulator``: the local NP6 stand-in as one object to start, point a client at, steer
and inspect. It checks the key, applies quotas and faults, records every call, and lets
``routes`` answer from the ``world``."""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from sync.emulator.contacts import Contacts
from sync.emulator.limits import ALL_FAULTS, Faults, Window
from sync.emulator.routes import JSON, Answer, Request, as_targets, route, serve
from sync.emulator.server import Server
from sync.emulator.world import World

DEFAULT_KEY = "emulator-key"
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
    accept: str | None = None  # the Accept header, to tell which media type was asked for


class Emulator:
    """NP6's segment and target calls, held in memory. Start it (or use ``with``) and point
    a client at ``url``; ``members``, ``calls`` and ``inject`` let a test see and steer.

    ``segments``: the ids that exist (a mapping gives their names); None: any id exists.
    ``dynamic``: segments whose members cannot change (they exist). ``contacts``: the
    account's contacts (``make_contacts``, ``load_contacts``, or ``{id: [unicity, ...]}``);
    None: every value names a contact whose id is the value itself. ``lookup_route``:
    False for an account without ``GET /targets?unicity=`` (it answers 404, as a route
    NP6 does not have); ``no_route_body``: the words of that 404 (a proxy's, or an older
    NP6's "No route found for GET /targets", which speak of targets). ``fold_case``:
    whether unicity values name contacts whatever their case (True, as e-mail matching
    commonly does; False for an account that matches them exactly).
    ``echo_request_on_error``: every error answer quotes the request
    (its path as sent and with lower-case percent escapes, its body as sent and
    JSON-escaped), as some servers do: to prove that no such echo reaches an output.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        segments: Iterable[int] | Mapping[int, str] | None = None,
        dynamic: Iterable[int] = (),
        contacts: Contacts | Mapping[str, Iterable[str]] | None = None,
        require_unicity_media_type: bool = False,
        lookup_route: bool = True,
        no_route_body: bytes = b"",
        fold_case: bool = True,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] = ALL_FAULTS,
        seed: int = 0,
        retry_after_s: int = 1,
        rate_limit_per_s: int | None = None,
        quota: int | None = None,
        quota_window_s: float = 60.0,
        quota_reset_epoch: bool = False,
        echo_headers_on_error: bool = False,
        echo_request_on_error: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if latency_s < 0 or retry_after_s < 0:
            raise ValueError("latency_s and retry_after_s cannot be negative")
        if rate_limit_per_s is not None and rate_limit_per_s < 1:
            raise ValueError(f"rate_limit_per_s must be at least 1, not {rate_limit_per_s}")
        if contacts is not None and not isinstance(contacts, Contacts):
            contacts = Contacts(contacts)
        self.faults = Faults(fault_rate, fault_kinds, seed)
        self.world = World(segments, dynamic=dynamic, contacts=contacts, fold_case=fold_case)
        self.api_key = api_key
        self.host = host
        self.latency_s = latency_s
        self.retry_after_s = retry_after_s
        self.require_unicity_media_type = require_unicity_media_type
        self.lookup_route = lookup_route
        self.no_route_body = no_route_body
        self.echo_headers_on_error = echo_headers_on_error
        self.echo_request_on_error = echo_request_on_error
        self.clock = clock
        self._windows = [
            Window(limit, seconds, epoch=epoch, clock=clock)
            for limit, seconds, epoch in [
                (rate_limit_per_s, 1.0, False),
                (quota, quota_window_s, quota_reset_epoch),
            ]
            if limit is not None
        ]
        self._port = port
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def bind(self) -> Emulator:
        """Open the listening socket (so ``url`` is known) without serving yet."""
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        self._server = Server((self.host, self._port), self)
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

    @property
    def contacts(self) -> Contacts | None:
        return self.world.contacts

    def members(self, segment_id: int) -> set[str]:
        return self.world.members(segment_id)

    def set_members(self, segment_id: int, targets: Iterable[str]) -> None:
        """Replace what a segment holds (ids, taken as given); the segment exists from then on."""
        self.world.set_members(segment_id, targets)

    def normalizations(self, segment_id: int) -> list[dict[str, Any]]:
        """The accepted normalization bodies, oldest first."""
        return self.world.normalizations(segment_id)

    @property
    def idle(self) -> bool:
        """No client is connected: what a killed client had in flight has been answered."""
        return self._server is None or self._server.idle

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            # Handlers record on completion; concurrent requests can finish out of order.
            return sorted(self._calls, key=lambda call: call.at)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def inject(self, *faults: str, call: str | None = None) -> None:
        """The next ``len(faults)`` authenticated requests get these faults, in order
        (``"none"``: that request is served as usual); with ``call`` (a prefix of method
        and path, ``"GET /targets?"``), the next requests of that call only."""
        self.faults.inject(faults, call)

    # --- answering ---------------------------------------------------------------------

    def respond(self, request: Request, at: float) -> Answer:
        where = route(request.path)
        targets = as_targets(request.body) if where and where.resource == "targets" else None
        fault = None
        key = request.headers.get("x-key", "").encode()
        if not hmac.compare_digest(key, self.api_key.encode()):
            answer = Answer(401)  # [S]
        else:
            quota, limited = self._take_slot()
            if limited:
                answer = Answer(429)  # no Retry-After is documented [S]
            else:
                fault = self.faults.draw(f"{request.method} {request.path}")
                answer = self._fault_answer(fault) or serve(
                    self.world,
                    request,
                    require_unicity_media_type=self.require_unicity_media_type,
                    lookup_route=self.lookup_route,
                    no_route_body=self.no_route_body,
                )
                if fault == "lost":
                    answer = Answer(None)
            answer.headers.update(quota)
        if self.echo_headers_on_error and answer.status is not None and answer.status >= 400:
            body = {"status": answer.status, "request_headers": dict(request.headers)}
            answer.body, answer.content_type = json.dumps(body).encode(), JSON
        if self.echo_request_on_error and answer.status is not None and answer.status >= 400:
            answer.body, answer.content_type = _echo(request, answer.body), "text/plain"
        segment_id = where.segment_id if where else None
        accept = request.headers.get("accept")
        call = Call(
            request.method, request.path, segment_id, answer.status, targets, fault, at, accept
        )
        with self._lock:
            self._calls.append(call)
        return answer

    def _take_slot(self) -> tuple[dict[str, str], bool]:
        """Count the request in every window: (the last window's headers, refused by any)."""
        headers: dict[str, str] = {}
        refused = False
        for window in self._windows:
            quota, limited = window.take()
            headers.update(quota)
            refused = refused or limited
        return headers, refused

    def _fault_answer(self, fault: str | None) -> Answer | None:
        if fault == "drop":
            return Answer(None)
        if fault == "429-retry-after":
            return Answer(429, headers={"Retry-After": str(self.retry_after_s)})
        if fault in _FAULT_ANSWERS:
            return Answer(*_FAULT_ANSWERS[fault])
        return None


def _echo(request: Request, said: bytes) -> bytes:
    """An error body quoting the request in the forms servers echo it in."""
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), request.path)
    body = (request.body or b"").decode("utf-8", "replace")
    quoted = json.dumps({"path": request.path, "body": body})  # non-ASCII escaped
    text = f"{said.decode('utf-8', 'replace').strip()} for {request.method} {request.path}"
    return f"{text} ({lower}, {unquote(request.path)}): {body} {quoted}\n".encode()
