"""A TCP relay on loopback that the fault test can hold and cut (between the bridge and Pub/Sub).

The Pub/Sub emulator keeps messages in memory only, so killing it also loses
what it had confirmed but not yet delivered to the test's reader - a loss of
the emulator, not of the bridge. Before the emulator is restarted, the gate
holds the bridge's traffic (its publishes stall, as on a network outage) while
the reader drains the emulator; then the emulator is killed, the gate drops
every connection (the bridge sees them reset) and opens again.

The same relay sits between the devices and mosquitto: mosquitto 2.0 does not
restore shared subscriptions from its persistence file after a restart (see
test_mosquitto_restart_forgets_shared_subscriptions), so devices are let back
in only once the bridge has subscribed again.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class TcpGate:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._accepting = threading.Event()
        self._accepting.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-gate", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def hold(self) -> None:
        """Stop forwarding (bytes already read wait); connections stay up."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def refuse(self) -> None:
        """Close new connections at once (clients see a broken connection and retry)."""
        self._accepting.clear()

    def accept(self) -> None:
        self._accepting.set()

    def drop(self) -> None:
        """Reset every relayed connection."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()

    def close(self) -> None:
        self._closed = True
        self._open.set()
        self.drop()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._accepting.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._open.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()
