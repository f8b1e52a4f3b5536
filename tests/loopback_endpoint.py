"""A chat-completions server on 127.0.0.1 whose answers a test scripts, for the OpenAI-compatible
policy, opponent and oracle tests."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Endpoint:
    """A chat-completions server on 127.0.0.1 whose answers a test scripts: ``answer(body)``
    returns (status, json body)."""

    def __init__(self, answer):
        self.requests, self.answer = [], answer
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append((self.path, self.headers["Authorization"], body))
                status, payload = endpoint.answer(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def serve():
    started = []

    def start(answer):
        started.append(Endpoint(answer))
        return started[-1]

    yield start
    for endpoint in started:
        endpoint.close()


def completion(text: str, finish: str) -> dict:
    return {"object": "chat.completion", "usage": {"prompt_tokens": 7, "completion_tokens": 3},
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text}}]}
