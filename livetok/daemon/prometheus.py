"""The Prometheus endpoint: off by default, on with ``metrics: {listen: "127.0.0.1:9464"}``.

The exposition is rendered **once per metrics interval, on the event loop**, from that interval's
run snapshot (:class:`View` takes what it shows from it; :func:`render`: prometheus-client's families
and text format), and the server only
hands out the latest bytes. A scrape therefore costs a request parse and a socket write in the
server's thread, whatever the scrape rate: it never formats a number and never reads a structure the
loop is changing, so scrapers cannot compete with capture and the tokenizers for the interpreter
(16 parallel scrapers rendering on every request had raised the video p99 from ~20 to 117 ms;
bench/bench_scrape.py measures it). At most :data:`MAX_CONNECTIONS` requests are served at once
(beyond, a connection is closed at once) and each has :data:`REQUEST_TIMEOUT_S` to send its request.

Names follow Prometheus conventions (``livetok_..._seconds``, ``..._total``); docs/service.md lists
them with what each alert means. Labels come from structured metric keys (``("latency", "emit",
source, modality, scale)``), so a source or sink named ``cam.front`` keeps its series and labels.
"""

from __future__ import annotations

import errno
import socket
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from livetok.errors import ConfigError
from livetok.pipeline.metrics import BUCKETS_S, Key
from livetok.pipeline.snapshot import RunSnapshot, SeriesSnap
from livetok.streams.types import SourceState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_CONNECTIONS = 32  # requests served at once; more are closed at once (a scrape storm, slowloris)
REQUEST_TIMEOUT_S = 10.0  # to send the request line and headers
# Addresses this process serves /metrics on: a reload's preflight must not see our own port as taken.
LISTENING: set[tuple[str, int]] = set()


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) -> (host, port); ConfigError naming ``metrics.listen``."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"metrics.listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host, int(port)


def address_family(host: str, port: int) -> socket.AddressFamily:
    """The family to listen with on ``host`` (IPv6 for ``::1``); OSError when the name does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return infos[0][0]


def livetok_serving(host: str, port: int) -> bool:
    """Whether a livetok daemon's endpoint answers on ``host:port`` (a running service's own port)."""
    try:
        with urllib.request.urlopen(f"http://{_bracketed(host)}:{port}/metrics", timeout=1.0) as r:
            return b"livetok_info" in r.read(1 << 20)
    except (OSError, ValueError):
        return False


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def listen_error(listen: str, err: OSError) -> str:
    """Why the endpoint cannot listen on ``listen``, in a few words."""
    why = err.strerror or str(err)
    if err.errno == errno.EADDRINUSE:
        host, port = parse_listen(listen)
        why = "in use by a running livetok daemon" if livetok_serving(host, port) else "in use by another process"
    return f"{listen}: cannot listen ({why})"


def check_listen(host: str, port: int) -> None:
    """Could the endpoint listen on ``host:port`` now? OSError when not (in use, no such address,
    not allowed). Binds the way the server will and lets go; our own endpoint's address passes."""
    if (host, port) in LISTENING:
        return
    with socket.socket(address_family(host, port), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(1)


# -- what is rendered --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceRow:
    name: str
    up: bool
    reconnects: int
    stalls: int
    errors: int
    nominal_fps: float | None = None
    token_fps: float | None = None


@dataclass(frozen=True)
class CaptureRow:
    """One source and modality's capture books (the run's accounting)."""

    source: str
    modality: str
    captured: int
    skipped_by_rate: int
    tokenized: int
    dropped_queue: int
    dropped_shutdown: int
    failed: int
    pending: int = 0  # in the hand-over or in the tokenizer now
    scales: dict[str, dict[str, int]] = field(default_factory=dict)  # the built-in video tokenizer's, per scale


@dataclass(frozen=True)
class SinkRow:
    name: str
    written: int
    dropped: int
    failed: int
    queued: int


@dataclass(frozen=True)
class BusRow:
    connected: bool
    reconnects: int
    connect_failures: int
    buffered: int
    in_flight: int
    acknowledged: int
    refused: int
    dropped: int


@dataclass
class View:
    """The numbers one rendering shows: a run snapshot's, in the exposition's rows (:meth:`of`)."""

    run_id: str
    uptime_s: float
    series: dict[Key, SeriesSnap] = field(default_factory=dict)
    gauges: dict[Key, float] = field(default_factory=dict)
    counters: dict[Key, int] = field(default_factory=dict)
    sources: list[SourceRow] = field(default_factory=list)
    captures: list[CaptureRow] = field(default_factory=list)
    sinks: list[SinkRow] = field(default_factory=list)
    bus: BusRow | None = None

    @classmethod
    def of(cls, snap: RunSnapshot) -> View:
        v = cls(snap.run_id, snap.uptime_s, snap.series, snap.gauges, snap.counters)
        v.sources = [SourceRow(s.name, s.state is SourceState.RUNNING, s.reconnects, s.stalls, s.errors,
                               s.nominal_fps, s.token_fps)
                     for s in snap.sources]
        v.captures = [CaptureRow(src, kind, r["captured"], r["skipped_by_rate"], r["tokenized"], r["dropped_queue"],
                                 r["dropped_shutdown"], r["failed"], r.get("queued", 0) + r.get("in_flight", 0),
                                 r.get("scales", {}))
                      for (src, kind), r in snap.captures.items()]
        for s in snap.sinks:
            v.sinks.append(SinkRow(s.name, s.written, s.dropped, s.failed, s.queue_depth))
            if s.is_bus:
                g = s.gauges
                v.bus = BusRow(bool(g["connected"]), int(g["reconnects"]), int(g["connect_failures"]),
                               s.queue_depth + int(g["resend_depth"]), int(g["in_flight"]), s.written,
                               int(g["refused"]), s.dropped)
        return v


def _add_series(fam: HistogramMetricFamily, values: list[str], s: SeriesSnap) -> None:
    cumulative, running = [], 0
    for bound, n in zip(BUCKETS_S, s.buckets, strict=False):
        running += n
        cumulative.append((repr(bound), running))
    cumulative.append(("+Inf", s.count))
    fam.add_metric(values, cumulative, s.total_ns / 1e9)


def _latencies(v: View) -> Iterable[Metric]:
    emit = HistogramMetricFamily("livetok_capture_to_emit_seconds", "Capture to the tokens reaching the event "
                                 "loop, per source, modality and scale", labels=["source", "modality", "scale"])
    publish = HistogramMetricFamily("livetok_capture_to_publish_seconds", "Capture to the tokens handed to the "
                                    "MQTT broker's connection", labels=["source", "modality", "scale"])
    write = HistogramMetricFamily("livetok_capture_to_write_seconds", "Capture to written, per sink (all its "
                                  "messages)", labels=["sink"])
    step = HistogramMetricFamily("livetok_step_latency_seconds", "End of an aligned step to its emission, per group",
                                 labels=["group"])
    for key, s in v.series.items():
        if isinstance(key, str) or key[0] != "latency":
            continue
        match key[1:]:
            case ("emit", source, modality, scale):
                _add_series(emit, [source, modality, scale], s)
            case ("publish", _sink, source, modality, scale):
                _add_series(publish, [source, modality, scale], s)
            case ("write", sink):
                _add_series(write, [sink], s)
            case ("step", group):
                _add_series(step, [group], s)
    return emit, publish, write, step


def _clocks(v: View) -> Iterable[Metric]:
    skew = GaugeMetricFamily("livetok_av_skew_seconds", "A/V skew measured from sync markers (audio minus video), "
                             "running median", labels=["group"])
    for key, s in v.series.items():
        if isinstance(key, tuple) and len(key) == 2 and key[0] == "skew" and s.last is not None:
            skew.add_metric([key[1]], s.last / 1e9)
    drift = GaugeMetricFamily("livetok_clock_drift_ppm", "Fitted drift of a source's clock against the host",
                              labels=["source"])
    slew = GaugeMetricFamily("livetok_clock_slewing_seconds", "Start-up error of a source's clock still being "
                             "slewed away", labels=["source"])
    for key, value in v.gauges.items():
        if isinstance(key, tuple) and len(key) == 2:
            if key[0] == "drift_ppm":
                drift.add_metric([key[1]], value)
            elif key[0] == "clock_slewing_ms":
                slew.add_metric([key[1]], value / 1e3)
    return skew, drift, slew


def _sources(v: View) -> Iterable[Metric]:
    up = GaugeMetricFamily("livetok_source_up", "1 while a source delivers", labels=["source"])
    reconnects = CounterMetricFamily("livetok_source_reconnects", "Reconnections of a source", labels=["source"])
    stalls = CounterMetricFamily("livetok_source_stalls", "Reads that timed out", labels=["source"])
    errors = CounterMetricFamily("livetok_source_errors", "Source faults other than stalls", labels=["source"])
    nominal = GaugeMetricFamily("livetok_source_nominal_fps", "The camera's nominal frame rate as its stream says "
                                "(frames/s), where known", labels=["source"])
    token = GaugeMetricFamily("livetok_source_token_fps", "The source's token rate (token_fps, frames/s), where set",
                              labels=["source"])
    for src in v.sources:
        up.add_metric([src.name], 1.0 if src.up else 0.0)
        if src.nominal_fps is not None:
            nominal.add_metric([src.name], src.nominal_fps)
        if src.token_fps is not None:
            token.add_metric([src.name], src.token_fps)
        reconnects.add_metric([src.name], src.reconnects)
        stalls.add_metric([src.name], src.stalls)
        errors.add_metric([src.name], src.errors)
    labels = ["source", "modality"]
    captured = CounterMetricFamily("livetok_captured", "Frames and audio blocks captured (those the token rate "
                                   "skipped included)", labels=labels)
    skipped = CounterMetricFamily("livetok_skipped_by_rate", "Frames captured and not tokenized by the source's "
                                  "token rate (token_fps); not a loss", labels=labels)
    tokenized = CounterMetricFamily("livetok_tokenized", "Frames and audio blocks tokenized", labels=labels)
    dropped = CounterMetricFamily("livetok_dropped", "Frames and audio blocks dropped, by stage",
                                  labels=[*labels, "stage"])
    for c in v.captures:
        captured.add_metric([c.source, c.modality], c.captured)
        skipped.add_metric([c.source, c.modality], c.skipped_by_rate)
        tokenized.add_metric([c.source, c.modality], c.tokenized)
        dropped.add_metric([c.source, c.modality, "capture"], c.dropped_queue)
        dropped.add_metric([c.source, c.modality, "shutdown"], c.dropped_shutdown)
        dropped.add_metric([c.source, c.modality, "error"], c.failed)
    return (up, nominal, token, captured, skipped, tokenized, dropped, *_scales(v), reconnects, stalls, errors,
            *_gaps(v))


def _scales(v: View) -> Iterable[Metric]:
    """Per scale of the built-in video tokenizer: captured = scale_tokenized + shed + dropped + pending."""
    labels = ["source", "modality", "scale"]
    made = CounterMetricFamily("livetok_scale_tokenized", "Frames whose tokens of this scale were made",
                               labels=labels)
    shed = CounterMetricFamily("livetok_shed", "Frames whose tokens of this scale were shed under overload (fine "
                               "only: coarse is never shed)", labels=labels)
    degraded = CounterMetricFamily("livetok_degraded", "Frames whose tokens of this scale were made cheaper under "
                                   "overload (fine: fewer levels; coarse: without the beam; a part of "
                                   "livetok_scale_tokenized)", labels=labels)
    pending = GaugeMetricFamily("livetok_pending", "Frames and audio blocks in the hand-over or the tokenizer now",
                                labels=["source", "modality"])
    for c in v.captures:
        pending.add_metric([c.source, c.modality], c.pending)
        for scale, r in c.scales.items():
            made.add_metric([c.source, c.modality, scale], r["tokenized"])
            shed.add_metric([c.source, c.modality, scale], r["shed"])
            if "degraded" in r:
                degraded.add_metric([c.source, c.modality, scale], r["degraded"])
    return made, shed, degraded, pending


def _gaps(v: View) -> Iterable[Metric]:
    gaps = CounterMetricFamily("livetok_gaps", "Input losses flagged in the tokens (GAP)",
                               labels=["source", "modality"])
    model_errors = CounterMetricFamily("livetok_model_errors", "A plug-in tokenizer's model calls that failed (the "
                                       "stream's next packet is flagged GAP)", labels=["tokenizer"])
    packets = CounterMetricFamily("livetok_stream_packets", "Token packets made per stream (a built-in scale or a "
                                  "plug-in tokenizer's named stream)", labels=["source", "modality", "stream"])
    gap_packets = CounterMetricFamily("livetok_stream_gap_packets", "Token packets flagged GAP per stream (an input "
                                      "loss, a shed fine frame, a failed model call)",
                                      labels=["source", "modality", "stream"])
    for key, n in v.counters.items():
        if isinstance(key, tuple) and len(key) == 3 and key[0] == "gaps":
            gaps.add_metric([key[1], key[2]], n)
        elif isinstance(key, tuple) and len(key) == 2 and key[0] == "model_errors":
            model_errors.add_metric([key[1]], n)
        elif isinstance(key, tuple) and len(key) == 4 and key[0] in ("packets", "gap_packets"):
            (packets if key[0] == "packets" else gap_packets).add_metric([str(k) for k in key[1:]], n)
    return gaps, model_errors, packets, gap_packets


def _sinks(v: View) -> Iterable[Metric]:
    outcome = CounterMetricFamily("livetok_sink_messages", "Messages per sink and outcome (written, dropped: its "
                                  "queue was full or cut off, failed: refused or not confirmed)",
                                  labels=["sink", "outcome"])
    depth = GaugeMetricFamily("livetok_sink_queue_messages", "Messages waiting in a sink's queue", labels=["sink"])
    for s in v.sinks:
        for what in ("written", "dropped", "failed"):
            outcome.add_metric([s.name, what], getattr(s, what))
        depth.add_metric([s.name], s.queued)
    yield from (outcome, depth)
    b = v.bus
    if b is not None:
        yield GaugeMetricFamily("livetok_bus_connected", "1 while connected to the broker", value=int(b.connected))
        yield CounterMetricFamily("livetok_bus_reconnects", "Connections to the broker after the first",
                                  value=b.reconnects)
        yield CounterMetricFamily("livetok_bus_connect_failures", "Failed connection attempts",
                                  value=b.connect_failures)
        yield GaugeMetricFamily("livetok_bus_buffer_messages", "Messages held for the broker (outage buffer)",
                                value=b.buffered)
        yield GaugeMetricFamily("livetok_bus_in_flight_messages", "Messages sent, not yet acknowledged",
                                value=b.in_flight)
        pub = CounterMetricFamily("livetok_bus_publish", "Token and step messages by outcome: acknowledged, refused "
                                  "(by the broker, or too large), dropped (buffer full)", labels=["outcome"])
        pub.add_metric(["acknowledged"], b.acknowledged)
        pub.add_metric(["refused"], b.refused)
        pub.add_metric(["dropped"], b.dropped)
        yield pub


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render(v: View) -> bytes:
    """The text exposition of ``v`` (on the event loop, once per interval)."""
    info = GaugeMetricFamily("livetok_info", "The running daemon", labels=["run_id"])
    info.add_metric([v.run_id or "none"], 1.0)
    families = [*_latencies(v), *_clocks(v), *_sources(v), *_sinks(v), info,
                GaugeMetricFamily("livetok_uptime_seconds", "Since the daemon started", value=v.uptime_s)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


# -- serving ---------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404, "only /metrics is served here")
            return
        body = self.server.body  # one reference read: the loop replaces the bytes, never changes them
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # a scrape is not an event


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck scraper never holds the daemon's exit
    body = b""

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):  # too many at once: this one is closed, not queued
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a scraper that went away (reset, timeout) is not the daemon's error


class Exporter:
    """``/metrics`` on ``listen``: :meth:`start` binds (ConfigError when it cannot), :meth:`publish`
    hands over the bytes of the latest rendering, :meth:`stop` closes."""

    def __init__(self, listen: str) -> None:
        self.listen = listen
        self.host, self.port = parse_listen(listen)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            server = _Server((self.host, self.port), address_family(self.host, self.port))
        except OSError as err:
            raise ConfigError(f"metrics.listen: {listen_error(self.listen, err)}") from None
        self._server = server
        LISTENING.add((self.host, self.port))
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="livetok-metrics", daemon=True)
        self._thread.start()

    def publish(self, body: bytes) -> None:
        if self._server is not None:
            self._server.body = body

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        LISTENING.discard((self.host, self.port))
        server.shutdown()
        server.server_close()
