"""No command destroys a file: outputs are written to a temporary file beside the destination and
renamed into place only on success (livetok/outputs/atomic.py); an output that cannot be created is one
line and exit 73."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import skimage
from busgen import wait_for
from mediagen import ffmpeg
from unprivileged import read_only_dir, run_livetok

from livetok.cli import main
from livetok.errors import OutputError
from livetok.outputs import atomic_output, check_output, interrupts


def one_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("livetok: error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


# --- the mechanism ---------------------------------------------------------------------------


def test_success_replaces_and_keeps_permissions(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    dest.chmod(0o640)
    with atomic_output(dest) as tmp:
        assert tmp.parent == tmp_path and tmp != dest and tmp.name.startswith(".out.") and tmp.suffix == ".bin"
        tmp.write_bytes(b"new")
        assert dest.read_bytes() == b"old"  # untouched until the end
    assert dest.read_bytes() == b"new" and stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_the_destination_and_no_temporary_file(tmp_path: Path, exc: BaseException) -> None:
    dest = tmp_path / "keep.ltk"
    dest.write_bytes(b"precious")
    with pytest.raises(type(exc)), atomic_output(dest) as tmp:
        tmp.write_bytes(b"half-written")
        raise exc
    assert dest.read_bytes() == b"precious"
    assert leftovers(tmp_path) == []


def test_new_file_gets_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with atomic_output(tmp_path / "new.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640


def test_symlink_is_kept_and_its_target_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.ltk"
    target.write_bytes(b"a")
    link = tmp_path / "link.ltk"
    link.symlink_to(target)
    with atomic_output(link) as tmp:
        tmp.write_bytes(b"b")
    assert link.is_symlink() and target.read_bytes() == b"b"


def test_device_is_written_in_place() -> None:
    with atomic_output("/dev/null") as tmp:
        assert str(tmp) == "/dev/null"
        tmp.write_bytes(b"discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("case", ["missing_dir", "under_a_file", "is_a_directory"])
def test_uncreatable_outputs(tmp_path: Path, case: str) -> None:
    (tmp_path / "afile").write_text("x")
    dest = {"missing_dir": tmp_path / "nope" / "o.ltk", "under_a_file": tmp_path / "afile" / "o.ltk",
            "is_a_directory": tmp_path}[case]
    for attempt in (check_output, lambda p: atomic_output(p).__enter__()):
        with pytest.raises(OutputError) as info:
            attempt(dest)
        assert info.value.exit_code == 73 and str(dest) in str(info.value)
    assert (tmp_path / "afile").read_text() == "x"


# --- the commands ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_ltk(av_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("good") / "good.ltk"
    assert main(["tokenize", str(av_clip), "-o", str(out)]) == 0
    return out.read_bytes()


def test_failed_tokenize_keeps_the_existing_output(good_ltk: bytes, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Before: exit 66 and keep.ltk became an 8-byte header that probed as a valid empty file."""
    keep = tmp_path / "keep.ltk"
    keep.write_bytes(good_ltk)
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n")
    capsys.readouterr()
    assert main(["tokenize", str(text), "-o", str(keep)]) == 66
    one_line(capsys, "text.mp4")
    assert keep.read_bytes() == good_ltk
    assert leftovers(tmp_path) == []


def test_second_input_failing_keeps_the_existing_output(good_ltk: bytes, av_clip: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "keep.ltk"
    keep.write_bytes(good_ltk)
    capsys.readouterr()
    assert main(["tokenize", str(av_clip), str(tmp_path / "missing.wav"), "-o", str(keep)]) == 66
    assert keep.read_bytes() == good_ltk and leftovers(tmp_path) == []


def test_tokenize_refuses_to_overwrite_its_input(av_clip: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(av_clip.read_bytes())
    capsys.readouterr()
    assert main(["tokenize", str(clip), "-o", str(clip)]) == 73
    one_line(capsys, str(clip), "input")
    assert clip.read_bytes() == av_clip.read_bytes()


@pytest.mark.parametrize("case", ["missing_dir", "under_a_file", "is_a_directory"])
def test_tokenize_uncreatable_output_is_exit_73(case: str, av_clip: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Before: a clear line but exit 1, which is not a documented code."""
    (tmp_path / "afile").write_text("x")
    out = {"missing_dir": tmp_path / "nope" / "o.ltk", "under_a_file": tmp_path / "afile" / "o.ltk",
           "is_a_directory": tmp_path}[case]
    capsys.readouterr()
    assert main(["tokenize", str(av_clip), "-o", str(out)]) == 73
    one_line(capsys, str(out))


@pytest.mark.slow
@pytest.mark.usefixtures("unprivileged_user")
def test_tokenize_into_a_read_only_directory(av_clip: Path) -> None:
    """As a user who cannot write there (root is run as nobody): one line, exit 73."""
    with read_only_dir() as top:
        clip = top / "scratch" / "clip.mp4"
        clip.write_bytes(av_clip.read_bytes())
        clip.chmod(0o644)
        out = top / "ro" / "o.ltk"
        r = run_livetok(["tokenize", str(clip), "-o", str(out)], cwd=top / "scratch", scratch=top / "scratch")
        assert r.returncode == 73, r.stderr
        assert r.stderr == f"livetok: error: {out}: cannot create it: permission denied\n"
        assert list((top / "ro").iterdir()) == []


@pytest.mark.slow
def test_inspect_output_is_atomic(good_ltk: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ltk = tmp_path / "t.ltk"
    ltk.write_bytes(good_ltk)
    png = tmp_path / "look.png"
    png.write_bytes(b"an older picture")
    missing_source = tmp_path / "gone.mp4"
    capsys.readouterr()
    assert main(["inspect", str(ltk), "-o", str(png), "--source", str(missing_source)]) == 66
    one_line(capsys, "gone.mp4")
    assert png.read_bytes() == b"an older picture" and leftovers(tmp_path) == []
    assert main(["inspect", str(ltk), "-o", str(tmp_path / "nope" / "x.png")]) == 73
    one_line(capsys, "nope")
    assert main(["inspect", str(ltk), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_fit_output_is_atomic_and_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media = tmp_path / "m"
    media.mkdir()
    skimage.io.imsave(media / "a.png", skimage.data.chelsea())
    cfg = tmp_path / "small.yaml"
    cfg.write_text("tokenizer:\n  video:\n    fine: {levels: 2, codebook_size: 32, dim: 8}\n"
                   "    coarse: {levels: 1, codebook_size: 16, dim: 8}\n")
    capsys.readouterr()
    assert main(["fit", str(media), "-o", str(tmp_path / "nope" / "cb.safetensors"), "-c", str(cfg)]) == 73
    one_line(capsys, "nope")
    out = tmp_path / "cb.safetensors"
    out.write_bytes(b"older codebooks")
    assert main(["fit", str(tmp_path / "none.png"), "-o", str(out), "-c", str(cfg)]) == 66
    one_line(capsys, "none.png")
    assert out.read_bytes() == b"older codebooks"
    assert main(["fit", str(media), "-o", str(out), "-c", str(cfg), "--iters", "1"]) == 0
    assert out.read_bytes()[:8] != b"older co" and leftovers(tmp_path) == []


# --- interrupted: SIGINT, SIGTERM, SIGHUP at start-up and mid-run --------------------------------------


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of 320x240 video and audio: a tokenize that is still running when it is interrupted."""
    out = tmp_path_factory.mktemp("long") / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=60",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out))
    return out


def _mapped(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True  # it has ended: the signal below finds nothing, and the test says so


def _tokenizing(directory: Path) -> bool:
    """The hidden temporary output exists and holds tokens (the writer's first buffer went out)."""
    return any(p.stat().st_size > 0 for p in directory.glob(".out.*.tmp.ltk"))


MOMENTS = {
    # while numpy's core is loaded from inside torch's C start-up (the interrupt that became
    # "internal error: AttributeError: module 'numpy._core'..." or was ignored altogether)
    "importing numpy": lambda pid, d: _mapped(pid, "_multiarray_umath"),
    "importing torch": lambda pid, d: _mapped(pid, "libtorch_cpu"),
    "mid-run": lambda pid, d: _tokenizing(d),
}


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "moment"), [
    (signal.SIGINT, "importing numpy"), (signal.SIGINT, "importing torch"), (signal.SIGINT, "mid-run"),
    (signal.SIGTERM, "importing torch"), (signal.SIGTERM, "mid-run"),
    (signal.SIGHUP, "importing numpy"), (signal.SIGHUP, "mid-run"),
])
def test_an_interrupted_tokenize_says_so_and_leaves_nothing(sig: signal.Signals, moment: str, long_clip: Path,
                                                           good_ltk: bytes, tmp_path: Path) -> None:
    """Before: SIGINT during start-up was exit 1 "internal error: ..." (or no effect at all), and
    SIGTERM or SIGHUP killed it with the hidden .out.*.tmp.ltk left beside the output."""
    out = tmp_path / "out.ltk"
    out.write_bytes(good_ltk)
    proc = subprocess.Popen([sys.executable, "-m", "livetok.cli", "tokenize", str(long_clip), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert wait_for(lambda: MOMENTS[moment](proc.pid, tmp_path), 120, 0.001), moment
        assert proc.poll() is None, f"ended before {moment}: {proc.stderr.read() if proc.stderr else ''}"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert (proc.returncode, err) == (128 + sig, f"livetok: interrupted ({sig.name})\n")
    assert out.read_bytes() == good_ltk and leftovers(tmp_path) == []


def test_a_signal_while_the_output_is_created_or_placed_leaves_no_temporary_file(tmp_path: Path) -> None:
    """The steps that create and rename the temporary file hold a signal until they are done; then
    it is raised, and the temporary file is gone either way."""
    dest = tmp_path / "o.bin"
    with interrupts.catching(), pytest.raises(interrupts.Interrupted), atomic_output(dest) as tmp:
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGTERM)
            assert tmp.exists()  # held: nothing raised yet
        pytest.fail("the held signal was not raised at the end of the block")
    assert leftovers(tmp_path) == [] and not dest.exists()
    # one swallowed before the rename (as torch's C start-up does): the output is not placed
    with interrupts.catching(), pytest.raises(interrupts.Interrupted), atomic_output(dest) as tmp:
        tmp.write_bytes(b"x")
        with contextlib.suppress(interrupts.Interrupted):
            os.kill(os.getpid(), signal.SIGHUP)
    assert leftovers(tmp_path) == [] and not dest.exists()
