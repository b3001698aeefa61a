"""JSON-RPC over one persistent HTTP/1.1 connection to a local node.

One request per call, in order, on a kept-alive connection: anvil answers each before the next
is sent, so the order in which transactions reach its pool is the order they were sent (batch
requests are not used: anvil does not keep their order). The HTTP exchange is written by hand
on a ``TCP_NODELAY`` socket, each request in one write: ``http.client`` sends headers and body
in two writes, which Nagle's algorithm and delayed ACKs turn into waits (about 0.4 ms a request
here). Transport failures are handed to ``on_transport_error``, which says what they mean (the
process died, or something else).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

from sim.chain.interface import ChainError

REQUEST_TIMEOUT_S = 300.0  # a forked chain may fetch state from a slow endpoint


class TransportError(OSError):
    """The HTTP exchange broke (connection closed, malformed answer)."""


class RpcError(ChainError):
    """The node answered a request with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str, data: Any) -> None:
        super().__init__(f"{method}: {message} (JSON-RPC error {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class RpcClient:
    """Calls ``method(*params)`` on ``host:port``; returns the result or raises ``RpcError``."""

    def __init__(
        self,
        host: str,
        port: int,
        on_transport_error: Callable[[str, Exception], Exception],
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self._host, self._port, self._timeout = host, port, timeout_s
        self._on_transport_error = on_transport_error
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._head = (
            f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n"
        ).encode()
        self._next_id = 0

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._buffer = sock, bytearray()
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _read_more(self, sock: socket.socket) -> None:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise TransportError("the node closed the connection")
        self._buffer += chunk

    def _post(self, body: bytes) -> bytes:
        sock = self._socket()
        sock.sendall(self._head % len(body) + body)
        buffer = self._buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            self._read_more(sock)
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        status = head[0].split(" ", 2)
        length = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise TransportError(f"answer without Content-Length: {head[0]}")
        while len(buffer) < end + 4 + length:
            self._read_more(sock)
        data = bytes(buffer[end + 4 : end + 4 + length])
        del buffer[: end + 4 + length]
        if len(status) < 2 or status[1] != "200":
            raise ChainError(f"the node answered {head[0]}: {data[:200]!r}")
        return data

    def raw(self, method: str, params: list[Any]) -> dict[str, Any]:
        """The whole JSON-RPC response object (``result`` or ``error``)."""
        self._next_id += 1
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params},
            separators=(",", ":"),
        ).encode()
        try:
            data = self._post(body)
        except OSError as first:
            # a dropped keep-alive connection is reopened once; a dead node is reported
            self.close()
            try:
                data = self._post(body)
            except OSError:
                self.close()
                raise self._on_transport_error(method, first) from first
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ChainError(
                f"{method}: the node answered with invalid JSON: {data[:200]!r}"
            ) from exc

    def request(self, method: str, *params: Any) -> Any:
        """``method(*params)``'s result; :class:`RpcError` when the node refuses it."""
        answer = self.raw(method, list(params))
        error = answer.get("error")
        if error is not None:
            raise RpcError(
                method, int(error.get("code", 0)), str(error.get("message", "")), error.get("data")
            )
        return answer.get("result")
