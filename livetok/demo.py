"""``livetok demo``: the synthetic source, live, through the whole pipeline — no camera,
microphone or broker needed.

The synthetic source shows a moving pattern and plays a tone, with a white flash and a 1 kHz beep
every 2 s; the demo delays the beep by ``OFFSET_MS`` so that the measured A/V skew has something
to find. Tokens go to a .ltk file; the demo then prints the token table, the latencies and the
skew, and draws the inspection picture. Outputs go to ``--out-dir`` (default ``livetok-demo/``
in the current directory, ignored by git), each written atomically.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from livetok.config import LivetokConfig
from livetok.errors import OutputError
from livetok.outputs import atomic_output, check_writable_dir, describe_oserror

OFFSET_MS = 40.0


def demo_config(tokens: Path) -> LivetokConfig:
    return LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "synthetic", "audio_offset_ms": OFFSET_MS}],
        "sinks": [{"kind": "file", "path": str(tokens)}],
    })


def run_demo(out_dir: Path, seconds: float) -> int:
    from livetok import probe
    from livetok.daemon.main import run_blocking
    from livetok.inspect_picture import inspect
    from livetok.tokenizers import Tokenizers

    out_dir = prepare_out_dir(out_dir)
    tokens, picture = out_dir / "demo.ltk", out_dir / "demo-inspect.png"
    print(f"livetok demo: the synthetic source live for {seconds:g} s (flash + beep every 2 s, beep "
          f"{OFFSET_MS:g} ms late) -> {tokens}")
    with atomic_output(tokens) as tmp:  # a failed run leaves the last demo's tokens as they were
        cfg = demo_config(tmp)
        report = run_blocking(cfg, seconds)
    print(f"\n{report.steps} aligned steps; token summary ({tokens}):")
    probe.print_table(probe.probe_file(tokens), sys.stdout)
    series = report.metrics.get("series_ms", {})
    assert isinstance(series, dict)
    print("\ncapture-to-emit latency (ms):")
    for key in ("latency.video.fine", "latency.audio.fine", "latency.step.synthetic"):
        s = series.get(key)
        if s:
            print(f"  {key.removeprefix('latency.'):<16} p50 {s['p50']:7.1f}  p95 {s['p95']:7.1f}  p99 {s['p99']:7.1f}")
    skew = series.get("skew.synthetic")
    if skew:
        print(f"A/V skew from the markers: {skew['p50']:.1f} ms (the beep was made {OFFSET_MS:g} ms late)")
    gauges = report.metrics.get("gauges", {})
    assert isinstance(gauges, dict)
    drops = {k: v for k, v in gauges.items() if k.startswith("dropped.")}
    print("dropped: " + (", ".join(f"{k.removeprefix('dropped.')} {v}" for k, v in drops.items()) or "none"))
    inspect(tokens, picture, Tokenizers.from_config(cfg.tokenizer), None)
    print(f"\ninspection picture: {picture}")
    print(f"outputs (tokens, picture) are in {out_dir}; `--out-dir DIR` puts them elsewhere")
    return 0


def prepare_out_dir(out_dir: Path) -> Path:
    """``out_dir`` made (with its parents) and checked writable, as an absolute path; OutputError
    (exit 73) in one line when it cannot be: a file in the way, a read-only or missing parent."""
    out_dir = Path(os.path.abspath(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out-dir {out_dir}: exists and is not a directory")
    blocker = next((p for p in out_dir.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"--out-dir {out_dir}: cannot create it: {blocker} is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"--out-dir {out_dir}: cannot create it: {describe_oserror(err)}") from None
    check_writable_dir(out_dir)
    return out_dir
