"""An HTTP server on 127.0.0.1 for the download tests: a random free port, one daemon thread per request,
stopped by ``close()`` (the tests' fixtures call it, so no server outlives its test)."""

from __future__ import annotations

import http.server
import threading


class Quiet(http.server.BaseHTTPRequestHandler):
    """A request handler that keeps the test output clean (no access log on stderr)."""

    def log_message(self, *args):
        pass


class LocalServer:
    """Serves ``handler`` (a ``Quiet`` subclass) on 127.0.0.1 until ``close()``."""

    def start(self, handler: type[Quiet]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
