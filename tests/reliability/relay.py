"""A TCP relay on 127.0.0.1 that a test can freeze: a network stall on demand.

    with Relay(target_port) as relay:      # listens on 127.0.0.1:relay.port
        ...                                 # connections to relay.port reach the target
        relay.freeze()                      # bytes stop flowing; both sockets stay open
        relay.thaw()

Frozen, the relay neither reads nor writes: the peer's packets pile up in kernel buffers
and nothing arrives, exactly what a partitioned or hung peer looks like (no FIN, no RST).
New connections are still accepted while frozen, so "frozen during connect" is a TCP
connection whose SSH banner never comes. Threads only; every loop wakes at least every
``TICK`` seconds to check for close, so ``close()`` is bounded.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

TICK = 0.05
CHUNK = 65536


class Relay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TICK)
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self.bytes_forwarded = 0
        self._spawn(self._accept_loop, "relay-accept")

    # -- control -----------------------------------------------------------------------

    def freeze(self) -> None:
        """Stop forwarding in both directions; keep every socket open."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    def close(self, timeout: float = 5.0) -> None:
        """Close every socket and join every thread (each wakes within ``TICK``)."""
        self._closed.set()
        self._flowing.set()
        with self._lock:
            socks, threads = list(self._sockets), list(self._threads)
        for s in [self._listener, *socks]:
            with contextlib.suppress(OSError):
                s.close()
        for t in threads:
            t.join(timeout)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pumps ---------------------------------------------------------------------

    def _spawn(self, target: object, name: str, *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.accepted += 1
            self._spawn(self._pump, "relay-up", client, upstream)
            self._spawn(self._pump, "relay-down", upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._closed.is_set():
            if not self._flowing.wait(TICK):
                continue  # frozen: read nothing, so nothing moves
            try:
                ready, _, _ = select.select([src], [], [], TICK)
                if not ready:
                    continue
                if not self._flowing.is_set():
                    continue  # froze while waiting: do not forward this chunk
                data = src.recv(CHUNK)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
                with self._lock:
                    self.bytes_forwarded += len(data)
            except (OSError, ValueError):
                return
