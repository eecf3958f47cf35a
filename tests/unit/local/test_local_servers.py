"""The local stack's servers: the port probe of ``sightline local up``, rebinding after a stop, bursts of clients."""
from __future__ import annotations

import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from sightline_local.apigateway import ApiFront
from sightline_local.cli import port_is_free
from sightline_local.lambda_runtime import InvocationResult

HOST = "127.0.0.1"
HEALTH_ONLY_API = {
    "paths": {
        "/v1/health": {"get": {"x-amazon-apigateway-integration": {"uri": "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/arn:aws:lambda:r:1:function:api/invocations"}}},
    },
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def binds_without_address_reuse(port: int) -> bool:
    """Whether a plain bind succeeds: False while a connection on the port sits in TIME_WAIT."""
    with socket.socket() as plain:
        try:
            plain.bind((HOST, port))
        except OSError:
            return False
    return True


def request_until_the_server_closes(port: int, request: bytes) -> bytes:
    """Send a request and read to EOF before closing, so the server closes first and its side keeps TIME_WAIT."""
    with socket.create_connection((HOST, port), timeout=30) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def test_a_port_in_time_wait_is_free_and_a_listening_port_is_not():
    with socket.socket() as listener:
        # Servers bind with SO_REUSEADDR (http.server, werkzeug), so their connections' TIME_WAIT does too.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(HOST, port)
        with socket.create_connection((HOST, port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the server side closes first: its end of the connection goes to TIME_WAIT
            assert client.recv(1) == b""
    assert not binds_without_address_reuse(port), "the test needs a connection in TIME_WAIT on the port"
    assert port_is_free(HOST, port)


class SlowRuntime:
    """A function that takes a little while, as a real handler does."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.invocations = 0

    def invoke(self, name: str, event: dict) -> InvocationResult:
        time.sleep(0.02)
        with self.lock:
            self.invocations += 1
        return InvocationResult({"statusCode": 200, "headers": {"content-type": "application/json"}, "body": '{"status": "ok"}'})


def test_the_api_front_can_be_restarted_on_its_port_right_after_a_stop():
    port = free_port()
    server = ApiFront(HEALTH_ONLY_API, SlowRuntime(), set, "prod").serve(HOST, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    answer = request_until_the_server_closes(port, b"GET /v1/health HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    server.shutdown()  # as LocalStack.stop does
    server.server_close()
    thread.join(timeout=10)
    assert not binds_without_address_reuse(port), "the test needs the front's connection in TIME_WAIT"
    assert port_is_free(HOST, port)
    ApiFront(HEALTH_ONLY_API, SlowRuntime(), set, "prod").serve(HOST, port).server_close()


def test_moto_can_be_restarted_on_its_port_right_after_a_stop():
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    port = free_port()
    moto = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    moto.start()
    answer = request_until_the_server_closes(port, b"GET /moto-api/ HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    moto.stop()  # as LocalStack.stop does
    assert not binds_without_address_reuse(port), "the test needs moto's connection in TIME_WAIT"
    assert port_is_free(HOST, port)
    # Bind as ThreadedMotoServer does, in this thread: a failed bind here exits instead of hanging its start().
    make_server(HOST, port, lambda environ, start_response: [], threaded=True).server_close()


def test_the_api_front_answers_a_burst_of_new_connections():
    clients = 50
    runtime = SlowRuntime()
    server = ApiFront(HEALTH_ONLY_API, runtime, set, "prod").serve(HOST, 0)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    start_together = threading.Barrier(clients)

    def get() -> int | str:
        start_together.wait(timeout=30)
        try:
            # urllib opens a new connection per request.
            with urllib.request.urlopen(f"http://{HOST}:{port}/v1/health", timeout=30) as response:
                return response.status
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            return repr(error)

    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            answers = list(pool.map(lambda _: get(), range(clients)))
    finally:
        server.shutdown()
        server.server_close()
    assert answers == [200] * clients
    assert runtime.invocations == clients


def test_the_api_front_holds_a_burst_of_connections_until_it_can_accept_them():
    clients = 50
    server = ApiFront(HEALTH_ONLY_API, SlowRuntime(), set, "prod").serve(HOST, 0)
    port = server.server_address[1]
    connections: list[socket.socket] = []
    serving = False
    try:
        # Nothing accepts yet, as when the front is slow to get to them: the listen backlog must hold them all
        # (the kernel drops SYNs past a full backlog, so the client's connect would not complete).
        for _ in range(clients):
            connections.append(socket.create_connection((HOST, port), timeout=10))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        serving = True
        for connection in connections:
            connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
        answers = []
        for connection in connections:
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
            answers.append(answer.split(b"\r\n", 1)[0])
    finally:
        for connection in connections:
            connection.close()
        if serving:
            server.shutdown()
        server.server_close()
    assert answers == [b"HTTP/1.1 200 OK"] * clients


def test_methods_no_route_has_are_refused_as_api_gateway_does():
    server = ApiFront(HEALTH_ONLY_API, SlowRuntime(), set, "prod").serve(HOST, 0)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for method in ("TRACE", "CONNECT", "BREW"):
            answer = request_until_the_server_closes(
                port, f"{method} /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 403"), (method, answer[:200])
            assert b"Missing Authentication Token" in answer
    finally:
        server.shutdown()
        server.server_close()
