"""A small TCP proxy on a free loopback port, in front of a broker, to make network faults on demand.

    with NetProxy(broker.port) as proxy:            # or the ``netproxy_factory`` fixture
        client connects to proxy.url / proxy.port
        proxy.cut()          # close both sides of every connection now (a dropped connection)
        proxy.blackhole()    # stop forwarding both ways, keep the sockets open, send no FIN
        proxy.restore()      # forward again (what the kernel buffered meanwhile flows on)

In blackhole mode nothing is read from any socket, so data piles up in the kernel buffers and the
peers see silence, as on a path that drops every packet; new connections are accepted and held
the same way. ``restore()`` forwards again, including what was buffered (TCP would have
retransmitted it), unless a peer gave up and closed meanwhile.

One thread runs it with ``select`` and 50 ms ticks; every operation waits at most a couple of
seconds, and the proxy stops by itself after ``lifetime_s`` (a safety net) or when closed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

_CHUNK = 65536
_MAX_PENDING = 1 << 20  # per direction: stop reading a side while this much waits to be written


@dataclass
class _Pair:
    down: socket.socket  # the client's side
    up: socket.socket | None  # the broker's side (None while a blackholed accept waits)
    to_up: bytearray = field(default_factory=bytearray)
    to_down: bytearray = field(default_factory=bytearray)

    def sockets(self) -> list[socket.socket]:
        return [self.down] if self.up is None else [self.down, self.up]


class NetProxy:
    """Forward 127.0.0.1:``port`` to ``target_host``:``target_port`` (module doc)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", lifetime_s: float = 600.0) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._commands: list[tuple[Callable[[], None], threading.Event]] = []
        self._blackholed = False
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime_s
        self.accepted = 0
        self.cuts = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._thread = threading.Thread(target=self._run, name=f"netproxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Connections open now."""
        with self._lock:
            return len(self._pairs)

    # -- faults --------------------------------------------------------------------------------

    def cut(self, reset: bool = False) -> int:
        """Close both sides of every open connection now (with a TCP RST when ``reset``); new
        connections are forwarded as before. Returns how many were cut."""
        count = [0]

        def do() -> None:
            count[0] = len(self._pairs)
            for pair in self._pairs:
                self._close_pair(pair, reset)
            self._pairs.clear()
            self.cuts += count[0]

        self._call(do)
        return count[0]

    def blackhole(self) -> None:
        """Stop forwarding in both directions; keep every socket open (no FIN, no RST)."""
        self._call(lambda: setattr(self, "_blackholed", True))

    def restore(self) -> None:
        """Forward again."""
        self._call(lambda: setattr(self, "_blackholed", False))

    @property
    def blackholed(self) -> bool:
        return self._blackholed

    def close(self) -> None:
        """Close every socket and stop the thread (bounded wait)."""
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> NetProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the thread ----------------------------------------------------------------------------

    def _call(self, fn: Callable[[], None], timeout_s: float = 5.0) -> None:
        """Run ``fn`` on the proxy thread between two ticks, and wait for it."""
        done = threading.Event()
        with self._lock:
            self._commands.append((fn, done))
        if not done.wait(timeout_s):
            raise RuntimeError("netproxy: the proxy thread did not answer")

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                with self._lock:
                    commands, self._commands = self._commands, []
                for fn, done in commands:
                    fn()
                    done.set()
                self._tick()
        finally:
            with self._lock:
                for pair in self._pairs:
                    self._close_pair(pair, False)
                self._pairs.clear()
                for _, done in self._commands:
                    done.set()
            self._listener.close()

    def _tick(self) -> None:
        readers: list[socket.socket] = [self._listener]
        writers: list[socket.socket] = []
        if not self._blackholed:
            for pair in self._pairs:
                if pair.up is None:
                    continue
                if len(pair.to_up) < _MAX_PENDING:
                    readers.append(pair.down)
                if len(pair.to_down) < _MAX_PENDING:
                    readers.append(pair.up)
                if pair.to_up:
                    writers.append(pair.up)
                if pair.to_down:
                    writers.append(pair.down)
        readable, writable, _ = select.select(readers, writers, [], 0.05)
        if self._listener in readable:
            self._accept()
        if self._blackholed:
            return
        dead: list[_Pair] = []
        for pair in list(self._pairs):
            if pair.up is None:
                pair.up = self._connect_up(pair)
                if pair.up is None:
                    dead.append(pair)
                continue
            ok = True
            if pair.down in readable:
                ok = self._pump(pair.down, pair.to_up, up=True)
            if ok and pair.up in readable:
                ok = self._pump(pair.up, pair.to_down, up=False)
            if ok and pair.up in writable:
                ok = self._flush(pair.up, pair.to_up)
            if ok and pair.down in writable:
                ok = self._flush(pair.down, pair.to_down)
            if not ok:
                dead.append(pair)
        if dead:
            with self._lock:
                for pair in dead:
                    self._close_pair(pair, False)
                    if pair in self._pairs:
                        self._pairs.remove(pair)

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                conn, _ = self._listener.accept()
                conn.setblocking(False)
                self.accepted += 1
                pair = _Pair(conn, None)
                if not self._blackholed:
                    pair.up = self._connect_up(pair)
                    if pair.up is None:
                        self._close_pair(pair, False)
                        continue
                with self._lock:
                    self._pairs.append(pair)

    def _connect_up(self, pair: _Pair) -> socket.socket | None:
        try:
            up = socket.create_connection(self.target, timeout=2)
        except OSError:
            return None  # the broker is down: the client sees its connection closed
        up.setblocking(False)
        return up

    def _pump(self, src: socket.socket, buf: bytearray, up: bool) -> bool:
        try:
            data = src.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False  # EOF from one side: close both, as a proxy that does not half-close
        buf += data
        if up:
            self.bytes_up += len(data)
        else:
            self.bytes_down += len(data)
        return True

    @staticmethod
    def _flush(dst: socket.socket, buf: bytearray) -> bool:
        try:
            sent = dst.send(buf)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        del buf[:sent]
        return True

    @staticmethod
    def _close_pair(pair: _Pair, reset: bool) -> None:
        for s in pair.sockets():
            if reset:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def netproxy_factory() -> Iterator[Callable[..., NetProxy]]:
    """``netproxy_factory(broker.port)``: proxies that are closed when the test ends."""
    made: list[NetProxy] = []

    def make(target_port: int, target_host: str = "127.0.0.1") -> NetProxy:
        proxy = NetProxy(target_port, target_host)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()
