"""An HTTP proxy in front of the real PanDA server that injects faults on chosen API calls.

`plan` maps an API path suffix (e.g. "pilot/update_job") to a list of faults used one per request, in order;
when a list is empty, requests pass through. Faults: "500", "hang" (no answer for `hang_seconds`), "close"
(connection dropped without a reply), "truncated" (half of the real JSON), "false" (a v1 envelope with
success false), "slow" (the real answer, `slow_seconds` late).
"""

import http.server
import json
import threading
import time
import urllib.request


class FaultProxy:
    def __init__(self, upstream, hang_seconds=10.0, slow_seconds=1.0):
        self.upstream = upstream.rstrip("/")
        self.plan = {}
        self.log = []  # (time, path, fault or "pass")
        self.hang_seconds, self.slow_seconds = hang_seconds, slow_seconds
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy._handle(self, None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                proxy._handle(self, self.rfile.read(length))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def calls(self, suffix):
        return [entry for entry in self.log if entry[1].endswith(suffix)]

    def _next_fault(self, path):
        with self._lock:
            for suffix, faults in self.plan.items():
                if path.endswith(suffix) and faults:
                    return faults.pop(0)
        return "pass"

    def _forward(self, handler, body):
        request = urllib.request.Request(self.upstream + handler.path, data=body, method=handler.command)
        for key in ("Content-Type", "Accept", "Authorization", "Origin", "Content-Encoding", "User-Agent"):
            if handler.headers.get(key):
                request.add_header(key, handler.headers[key])
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, reply.read()

    def _handle(self, handler, body):
        fault = self._next_fault(handler.path)
        self.log.append((time.monotonic(), handler.path, fault))
        if fault == "close":
            handler.close_connection = True
            handler.connection.close()
            return
        if fault == "hang":
            time.sleep(self.hang_seconds)
            return self._reply(handler, 504, b"gateway timeout")
        if fault == "500":
            return self._reply(handler, 500, b"Internal Server Error")
        if fault == "false":
            return self._reply(handler, 200, json.dumps({"success": False, "message": "injected refusal",
                                                         "data": None}).encode())
        status, data = self._forward(handler, body)
        if fault == "truncated":
            data = data[: len(data) // 2]
        if fault == "slow":
            time.sleep(self.slow_seconds)
        self._reply(handler, status, data)

    @staticmethod
    def _reply(handler, status, data):
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
