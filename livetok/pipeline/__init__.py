"""The data path: captures in, token packets and aligned steps out to the sinks.

* ``engine``: the pure core (tokenization, clocks, alignment) the worker thread runs;
* ``outbound``: host time -> wire time and encoding, once (:class:`~livetok.pipeline.outbound.WireStamper`);
* ``sources``: the configured sources as capture threads with hand-over queues;
* ``datapath``: the worker's jobs, the fan-out to the sinks' channels, the producers, the sinks' tasks;
* ``reload``: what a new configuration changes, and changing it between two messages;
* ``runner``: :class:`~livetok.pipeline.runner.Pipeline`, the run's life (start, shutdown, snapshots);
* ``outlets`` and ``books``: the sinks in the fan-out, and the books that prove nothing was lost;
* ``metrics`` and ``snapshot``: what is measured, and the one snapshot per interval it is read as.

Below the daemon (:mod:`livetok.daemon`): nothing here knows about systemd, Prometheus or SIGHUP.
"""
