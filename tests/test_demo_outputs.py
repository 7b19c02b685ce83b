"""``livetok demo``'s outputs: a bad ``--out-dir`` is one line and exit 73 before anything runs; the
token file and the picture are written atomically; the default directory is ignored by git."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from unprivileged import read_only_dir, run_livetok

from livetok.cli import main
from livetok.commands import demo

REPO = Path(__file__).resolve().parent.parent


def error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("livetok: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


@pytest.fixture
def no_live_run(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The demo's live run replaced: these tests are about where its outputs go, not the daemon."""
    calls: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("the demo ran although its output directory is unusable")

    monkeypatch.setattr(demo, "live_run", refuse)
    return calls


@pytest.mark.parametrize("case", ["a_file", "under_a_file"])
def test_unusable_out_dir_is_exit_73(case: str, tmp_path: Path, no_live_run: list[object],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Before: tracebacks."""
    blocker = tmp_path / "results"
    blocker.write_text("not a directory")
    out_dir = blocker if case == "a_file" else blocker / "demo" / "run1"
    capsys.readouterr()
    assert main(["demo", "--out-dir", str(out_dir)]) == 73
    error_line(capsys, str(out_dir), "not a directory")
    assert blocker.read_text() == "not a directory" and no_live_run == []


@pytest.mark.slow
@pytest.mark.usefixtures("unprivileged_user")
def test_read_only_directory_is_exit_73() -> None:
    """``livetok demo`` in a directory the user cannot write (root is run as nobody): the default
    ``livetok-demo/`` cannot be made; one line, exit 73, before anything runs. Before: a traceback."""
    with read_only_dir() as top:
        r = run_livetok(["demo"], cwd=top / "ro", scratch=top / "scratch")
        assert r.returncode == 73, r.stderr
        out_dir = top / "ro" / "livetok-demo"
        assert r.stderr == f"livetok: error: --out-dir {out_dir}: cannot create it: permission denied\n"
        assert r.stdout == ""


def fake_run(tokens_from: Path, fail: BaseException | None = None
             ) -> Callable[[object, str, float], tuple[SimpleNamespace, demo.Received]]:
    def live_run(cfg: object, url: str, seconds: float) -> tuple[SimpleNamespace, demo.Received]:
        sink = Path(cfg.sinks[0].path)  # type: ignore[attr-defined]
        sink.write_bytes(tokens_from.read_bytes() if fail is None else b"LTKF\x01\x00\x00\x00partial")
        if fail is not None:
            raise fail
        report = SimpleNamespace(steps=3, sinks={}, balanced=True, metrics={"series_ms": {}, "gauges": {}})
        return report, demo.Received()
    return live_run


@pytest.fixture(scope="module")
def clip_ltk(av_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "clip.ltk"
    assert main(["tokenize", str(av_clip), "-o", str(out)]) == 0
    return out


@pytest.mark.slow
def test_outputs_are_atomic_and_named(clip_ltk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "d"
    monkeypatch.setattr(demo, "live_run", fake_run(clip_ltk))
    assert main(["demo", "--out-dir", str(out_dir), "--seconds", "1"]) == 0
    assert (out_dir / "demo.ltk").read_bytes() == clip_ltk.read_bytes()
    assert (out_dir / "demo-inspect.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out_dir.iterdir()) == ["demo-inspect.png", "demo.ltk"]
    assert f"outputs (tokens, picture) are in {out_dir}" in capsys.readouterr().out
    # a run that is interrupted leaves the last run's tokens as they were, and no temporary file
    monkeypatch.setattr(demo, "live_run", fake_run(clip_ltk, fail=KeyboardInterrupt()))
    assert main(["demo", "--out-dir", str(out_dir), "--seconds", "1"]) == 130
    assert (out_dir / "demo.ltk").read_bytes() == clip_ltk.read_bytes()
    assert sorted(p.name for p in out_dir.iterdir()) == ["demo-inspect.png", "demo.ltk"]


def test_default_out_dir_is_ignored_by_git() -> None:
    """Before: `livetok demo` in the checkout left livetok-demo/ in `git status`."""
    for path in ("livetok-demo/demo.ltk", "livetok-demo/demo-inspect.png", "docs/livetok-demo/demo.ltk"):
        r = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False)
        assert r.returncode == 0, path
