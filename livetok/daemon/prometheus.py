"""The Prometheus endpoint: off by default, on with ``metrics: {listen: "127.0.0.1:9464"}``.

prometheus-client serves ``/metrics`` from its own daemon thread. The daemon's counters live on the
event loop, so the loop builds a complete set of metric families every second
(:meth:`Exporter.refresh`) and the server thread only hands out the latest set: it never reads a
structure the loop is changing. Names follow Prometheus conventions (``livetok_..._seconds``,
``..._total``); docs/service.md lists them with what each alert means.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from livetok.daemon.metrics import BUCKETS_S, Series
from livetok.errors import ConfigError

if TYPE_CHECKING:
    from livetok.daemon.runner import Daemon


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) -> (host, port); ConfigError naming ``metrics.listen``."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"metrics.listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host, int(port)


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _add_series(fam: HistogramMetricFamily, values: list[str], s: Series) -> None:
    cumulative, running = [], 0
    for bound, n in zip(BUCKETS_S, s.buckets, strict=False):
        running += n
        cumulative.append((repr(bound), running))
    cumulative.append(("+Inf", s.count))
    fam.add_metric(values, cumulative, s.total_ns / 1e9)


class Exporter(Collector):
    """Holds the latest families built on the loop; the server thread collects them."""

    def __init__(self, daemon: Daemon, listen: str) -> None:
        self.daemon = daemon
        self.host, self.port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._families: list[Metric] = []
        self._server: Any = None

    def start(self) -> None:
        try:
            self._server, _ = start_http_server(self.port, self.host, registry=self.registry)
        except OSError as err:
            raise ConfigError(f"metrics.listen {self.host}:{self.port}: cannot listen "
                              f"({err.strerror or err})") from None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def collect(self) -> Iterator[Metric]:
        yield from self._families  # a reference read: the loop replaces the list, never changes it

    def refresh(self) -> None:
        """Build every family from the daemon's state (on the event loop)."""
        self._families = list(self._build())

    def _build(self) -> Iterable[Metric]:
        d = self.daemon
        m = d.metrics
        series = m.series
        emit = _histogram("livetok_capture_to_emit_seconds",
                          "Capture to the tokens reaching the event loop, per source, modality and scale",
                          ["source", "modality", "scale"])
        publish = _histogram("livetok_capture_to_publish_seconds",
                             "Capture to the tokens handed to the MQTT broker's connection",
                             ["source", "modality", "scale"])
        write = _histogram("livetok_capture_to_write_seconds", "Capture to written, per sink (all its messages)",
                           ["sink"])
        step = _histogram("livetok_step_latency_seconds", "End of an aligned step to its emission, per group",
                          ["group"])
        for key, s in series.items():
            parts = key.split(".")
            if parts[:2] == ["latency", "emit"] and len(parts) == 5:
                _add_series(emit, parts[2:], s)
            elif parts[:2] == ["latency", "publish"] and len(parts) == 6:
                _add_series(publish, parts[3:], s)
            elif parts[:2] == ["latency", "write"] and len(parts) == 3:
                _add_series(write, [parts[2]], s)
            elif parts[:2] == ["latency", "step"] and len(parts) == 3:
                _add_series(step, [parts[2]], s)
        yield from (emit, publish, write, step)

        skew = GaugeMetricFamily("livetok_av_skew_seconds", "A/V skew measured from sync markers (audio minus "
                                 "video), running median", labels=["group"])
        for key, s in series.items():
            if key.startswith("skew.") and s.last is not None:
                skew.add_metric([key[5:]], s.last / 1e9)
        drift = GaugeMetricFamily("livetok_clock_drift_ppm", "Fitted drift of a source's clock against the host",
                                  labels=["source"])
        slew = GaugeMetricFamily("livetok_clock_slewing_seconds", "Start-up error of a source's clock still being "
                                 "slewed away", labels=["source"])
        for key, v in m.gauges.items():
            if key.startswith("drift_ppm."):
                drift.add_metric([key[10:]], v)
            elif key.startswith("clock_slewing_ms."):
                slew.add_metric([key[17:]], v / 1e3)
        yield from (skew, drift, slew)

        up = GaugeMetricFamily("livetok_source_up", "1 while a source delivers", labels=["source"])
        captured = CounterMetricFamily("livetok_captured", "Frames and audio blocks handed over by capture",
                                       labels=["source", "modality"])
        tokenized = CounterMetricFamily("livetok_tokenized", "Frames and audio blocks tokenized",
                                        labels=["source", "modality"])
        dropped = CounterMetricFamily("livetok_dropped", "Frames and audio blocks dropped, by stage",
                                      labels=["source", "modality", "stage"])
        reconnects = CounterMetricFamily("livetok_source_reconnects", "Reconnections of a source", labels=["source"])
        stalls = CounterMetricFamily("livetok_source_stalls", "Reads that timed out", labels=["source"])
        errors = CounterMetricFamily("livetok_source_errors", "Source faults other than stalls", labels=["source"])
        for src in d.sources:
            up.add_metric([src.name], 1.0 if src.stats.state.value == "running" else 0.0)
            reconnects.add_metric([src.name], src.stats.reconnects)
            stalls.add_metric([src.name], src.stats.stalls)
            errors.add_metric([src.name], src.stats.errors)
        books = d.accounting()["captures"]
        for key, row in books.items():
            source, modality = key.rsplit(".", 1)
            captured.add_metric([source, modality], row["captured"])
            tokenized.add_metric([source, modality], row["tokenized"])
            dropped.add_metric([source, modality, "capture"], row["dropped_queue"])
            dropped.add_metric([source, modality, "shutdown"], row["dropped_shutdown"])
            dropped.add_metric([source, modality, "error"], row["failed"])
        gaps = CounterMetricFamily("livetok_gaps", "Input losses flagged in the tokens (GAP)",
                                   labels=["source", "modality"])
        for key, n in m.counters.items():
            if key.startswith("gaps."):
                source, modality = key[5:].rsplit(".", 1)
                gaps.add_metric([source, modality], n)
        yield from (up, captured, tokenized, dropped, reconnects, stalls, errors, gaps)

        outcome = CounterMetricFamily("livetok_sink_messages", "Messages per sink and outcome (written, dropped: "
                                      "its queue was full or cut off, failed: refused or not confirmed)",
                                      labels=["sink", "outcome"])
        depth = GaugeMetricFamily("livetok_sink_queue_messages", "Messages waiting in a sink's queue", labels=["sink"])
        for sink in d.sinks:
            for what in ("written", "dropped", "failed"):
                outcome.add_metric([sink.name, what], getattr(sink.stats, what))
            ch = d.channels.get(sink.name)
            depth.add_metric([sink.name], ch.depth if ch is not None else 0)
        yield from (outcome, depth)

        bus = next((s for s in d.sinks if s.latency_kind == "publish"), None)
        if bus is not None:
            g = bus.gauges()
            yield GaugeMetricFamily("livetok_bus_connected", "1 while connected to the broker", value=g["connected"])
            yield CounterMetricFamily("livetok_bus_reconnects", "Connections to the broker after the first",
                                      value=g["reconnects"])
            yield CounterMetricFamily("livetok_bus_connect_failures", "Failed connection attempts",
                                      value=g["connect_failures"])
            ch = d.channels.get(bus.name)
            yield GaugeMetricFamily("livetok_bus_buffer_messages", "Messages held for the broker (outage buffer)",
                                    value=(ch.depth if ch is not None else 0) + g["resend_depth"])
            yield GaugeMetricFamily("livetok_bus_in_flight_messages", "Messages sent, not yet acknowledged",
                                    value=g["in_flight"])
            pub = CounterMetricFamily("livetok_bus_publish", "Token and step messages by outcome: acknowledged, "
                                      "refused (by the broker, or too large), dropped (buffer full)",
                                      labels=["outcome"])
            pub.add_metric(["acknowledged"], bus.stats.written)
            pub.add_metric(["refused"], g["refused"])
            pub.add_metric(["dropped"], bus.stats.dropped)
            yield pub
        info = GaugeMetricFamily("livetok_info", "The running daemon", labels=["run_id"])
        info.add_metric([d.run_id or "none"], 1.0)
        yield info
        yield GaugeMetricFamily("livetok_uptime_seconds", "Since the daemon started", value=d.uptime_s())
