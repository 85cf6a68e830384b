"""A tiny OpenAI-protocol chat server for tests and benchmarks; it can misbehave on purpose."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = "江岸签约了三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目[1]。"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAI:
    """``mode``: ok | plain (ignores stream) | slow | garbage | garbage_json | bad_cite | uncited | error; ``requests`` holds the bodies seen."""

    def __init__(self, mode: str = "ok", delay: float = 0.02) -> None:
        self.mode = mode
        self.delay = delay  # seconds between streamed tokens
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                try:
                    self._reply()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def _reply(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server.requests.append(body)
                mode = server.mode
                if mode == "slow":
                    time.sleep(3)
                if mode == "error":
                    self._send(500, "application/json", b'{"error": "boom"}')
                    return
                if mode == "garbage_json":
                    self._send(200, "application/json", b"{not json")
                    return
                reply = {
                    "bad_cite": "江岸签约了6个项目[1]。总投资超过100亿元[9]。",
                    "uncited": "江岸签约了很多项目。",
                }.get(mode, REPLY)
                if not body.get("stream") or mode == "plain":
                    msg = {"choices": [{"message": {"role": "assistant", "content": reply}}]}
                    self._send(200, "application/json", json.dumps(msg, ensure_ascii=False).encode())
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                if mode == "garbage":
                    self.wfile.write(b"data: <html>oops</html>\n\n")
                    return
                step = 4
                for i in range(0, len(reply), step):
                    chunk = {"choices": [{"index": 0, "delta": {"content": reply[i : i + step]}}]}
                    self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(server.delay)
                self.wfile.write(b"data: [DONE]\n\n")

            def _send(self, code: int, ctype: str, data: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
