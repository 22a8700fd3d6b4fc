"""The diagnostic HTTP listener, apart from the gRPC port: /metrics and /healthz."""

from __future__ import annotations

import io
import logging
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger(__name__)

CLIENT_TIMEOUT_S = 10.0  # a client that sends nothing for this long is dropped
# Requests served at once; one more is closed as it is accepted. A descriptor and a thread
# each: with no cap, a flood of connections here took the descriptors the state needs
# (grpc/server.py keeps RESERVED_DESCRIPTORS for this endpoint and the state).
MAX_CLIENTS = 32


class _ToLog(io.StringIO):
    """wsgiref's `wsgi.errors` (sys.stderr by default): an application's traceback, logged.
    Nothing here writes to stderr itself: with stderr unread, that write would hold the
    request's thread and its place for good (review 45a)."""

    def flush(self) -> None:
        if text := self.getvalue().strip():
            log.error("metrics endpoint: %s", text)
        self.seek(0)
        self.truncate()


class _QuietHandler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # one line per scrape on stderr is noise; errors reach the WSGI app's log

    def get_stderr(self) -> io.StringIO:
        return _ToLog()


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    # A thread per request, so a stuck client never holds up /healthz; MAX_CLIENTS at once.
    daemon_threads = True
    allow_reuse_address = True
    timeout = 0  # handle_request is only called once the socket is readable: never wait
    request_queue_size = 128  # the listen backlog (socketserver's 5 held a burst in SYN retries)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._serving = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self._serving.acquire(blocking=False)  # False: closed at once

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)  # starts its thread
        except BaseException:
            self._serving.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._serving.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up mid-request: its own doing. socketserver's
        # default printed a traceback to stderr from this thread (review 45a: one per
        # idle client, and with stderr unread every place was held, /healthz refused).
        log.debug("metrics request from %s failed", client_address[0], exc_info=True)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's full name (socket.getfqdn),
        # which can stall; the name only serves CGI variables nobody reads here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


def split_listen(listen: str) -> tuple[str, int]:
    """"host:port", "[v6]:port" or ":port" (every interface). Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"metrics listen address {listen!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    """Serves GET /metrics from `registry` and GET /healthz (200 SERVING, 503
    NOT_SERVING, from `health`) on its own address, in a daemon thread."""

    def __init__(self, listen: str, registry: CollectorRegistry,
                 health: Callable[[], bool]) -> None:
        self.listen = listen
        self._host, self._port = split_listen(listen)
        self._metrics = make_wsgi_app(registry)
        # One collection at a time: the OpenTelemetry reader hands each collection over
        # through one shared queue, so two at once could swap or lose their data.
        self._collecting = threading.Lock()
        self._health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake: socket.socket | None = None  # stop() writes here to end the thread

    @property
    def address(self) -> str:
        """host:port actually bound (the port chosen when listen asked for 0)."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not started")
        host, port = self._server.server_address[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def start(self) -> None:
        """Bind and serve. Raises OSError naming the address when it cannot bind."""
        server_class = _Server6 if ":" in self._host else _Server
        try:
            self._server = make_server(self._host, self._port, self._app,
                                       server_class=server_class, handler_class=_QuietHandler)
        except OSError as error:
            raise OSError(error.errno, f"telemetry.metrics_listen: cannot serve metrics on"
                          f" {self.listen}: {error.strerror or error}") from error
        self._wake, wake = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, args=(self._server, wake),
                                        name=f"metrics {self.address}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; requests in flight are abandoned."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None or thread is None:
            return
        assert self._wake is not None
        self._wake.send(b"x")
        thread.join(timeout=5.0)
        self._wake.close()
        server.server_close()

    @staticmethod
    def _serve(server: _Server, wake: socket.socket) -> None:
        # Not serve_forever: it polls (wakes the process every poll interval, and makes
        # stop wait for one); here the thread sleeps until a client or stop() writes.
        with selectors.DefaultSelector() as selector, wake:
            selector.register(server, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    try:
                        server.handle_request()  # accepts, then a thread per request
                    except Exception:  # never end the endpoint over one request
                        log.exception("metrics request failed")

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]
             ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            with self._collecting:
                return self._metrics(environ, start_response)
        if path == "/healthz":
            serving = self._serving()
            body = b"SERVING\n" if serving else b"NOT_SERVING\n"
            start_response("200 OK" if serving else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))])
            return [body]
        body = b"not found: try /metrics or /healthz\n"
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]

    def _serving(self) -> bool:
        try:
            return bool(self._health())
        except Exception:  # a health reader's bug reads as not serving, never a 500
            log.exception("health check for /healthz failed")
            return False
