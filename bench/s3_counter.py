"""A counting HTTP proxy in front of the S3 endpoint: what every process downloaded, per object.

It measures from the outside, so the same figure comes out for any version of frameq (one
that records the bytes each task read and one that does not alike).
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class S3Counter:
    """Forwards to `upstream` (http://host:port); counts GET response bytes by object path."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.downloaded: Counter[str] = Counter()  # path -> bytes
        self.gets: Counter[str] = Counter()  # path -> requests
        self._lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(
                    counter.upstream.hostname, counter.upstream.port, timeout=120
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if self.command == "GET" and response.status in (200, 206):
                    counter.count(urlsplit(self.path).path, len(data))
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_HEADERS and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def count(self, path: str, size: int) -> None:
        with self._lock:
            self.downloaded[path] += size
            self.gets[path] += 1

    def reset(self) -> None:
        with self._lock:
            self.downloaded.clear()
            self.gets.clear()

    def __enter__(self) -> S3Counter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
