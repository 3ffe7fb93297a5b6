"""Receivers on loopback that misbehave below HTTP: they write their answer by hand.

``RecordingServer`` answers whole responses; these take a request, then send bytes a piece at
a time, or break TLS after it, to show what the client does with that.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def read_request(conn: socket.socket) -> bytes:
    """One request, headers and Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@contextmanager
def one_shot_receiver(
    handle: Callable[[socket.socket, list[bytes]], None],
) -> Iterator[tuple[int, list[bytes]]]:
    """(port, requests received); ``handle`` takes the first connection's request and answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:  # closed before anyone came
            return
        with conn:
            try:
                handle(conn, received)
            except OSError:  # the client gave up, as it should
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        listener.close()
        thread.join(5)


def dribble(pieces: list[bytes], every: float) -> Callable[[socket.socket, list[bytes]], None]:
    """An answer written one piece every ``every`` seconds: each read is quick, the whole is not."""

    def handle(conn: socket.socket, received: list[bytes]) -> None:
        received.append(read_request(conn))
        for piece in pieces:
            conn.sendall(piece)
            time.sleep(every)

    return handle


def tls_then_garbage(context: ssl.SSLContext) -> Callable[[socket.socket, list[bytes]], None]:
    """Complete the handshake, take the request, then send a TLS record that fails its MAC."""

    def handle(conn: socket.socket, received: list[bytes]) -> None:
        tls = context.wrap_socket(conn, server_side=True)
        received.append(read_request(tls))
        raw = socket.socket(fileno=tls.detach())
        # application_data, TLS 1.2 framing, 32 bytes no key decrypts.
        raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        time.sleep(0.5)
        raw.close()

    return handle
