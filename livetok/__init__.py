"""livetok: a streaming, real-time media tokenizer (audio and video to coarse/fine RVQ tokens).

The package in layers, bottom first; a package imports only its own modules and lower layers
(``tests/test_architecture.py`` holds the table and checks it, with no import circle anywhere):

0. ``errors`` — the exception tree and its exit codes;
1. ``wire`` (packets, ``.ltk`` files), ``media`` (decoding, frame and audio conversion, audio
   continuity), ``outputs`` (whole-or-absent outputs, interrupts), ``runtime`` (event lines,
   blocking lanes, the stop);
2. ``config`` — one pydantic model per section of config.yaml, and reading it;
3. ``tokenizers``, ``streams`` (capture), ``sync`` (clocks, alignment, markers), ``vocab`` (the
   joint vocabulary);
4. ``bus`` — what the daemon's MQTT sink and the client share (topics, meta, URLs, TLS, secrets);
5. ``sinks`` (token files and the MQTT bus behind one protocol), ``client`` (the subscriber);
6. ``pipeline`` — the data path: engine, fan-out, books, reload, the run snapshot;
7. ``daemon`` — the process around it: preflight, READY/STATUS/watchdog, Prometheus, stats;
8. ``service`` (the systemd unit and its install), ``monitor`` (the terminal dashboard);
9. ``commands`` — one module per command;
10. ``cli`` — the entry point (``livetok = "livetok.cli:main"``).
"""

__version__ = "0.1.0"
