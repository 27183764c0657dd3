"""A TCP relay on the control side, so that one test host can reach another.

Test hosts reach nothing but their own veth peer (the control side's ``.1`` of their /24):
no routing between them, no forwarding on this machine. A relay listening on the control
side of host A's link and connecting to host B is the one path from A to B, and one the
test controls: stopping the relay is the upstream going away. Only addresses of hosts the
tests booted are ever used.
"""

from __future__ import annotations

import socket
import threading


class Relay:
    """Accepts on (listen_address, port; 0: any free one) and pipes each connection to target."""

    def __init__(self, listen_address: str, target: tuple[str, int], port: int = 0):
        self.target = target
        self._server = socket.create_server((listen_address, port))
        self.address, self.port = self._server.getsockname()[:2]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.received = 0           # bytes the target sent back (a kept-alive connection too)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for a, b, back in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, back), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, back: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if back:
                    with self._lock:
                        self.received += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop accepting and cut every open connection: the upstream is gone."""
        try:                    # wakes the accept() of the other thread (close alone does not)
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()
        self._thread.join(5)
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._conns.clear()
