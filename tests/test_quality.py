"""``livetok eval``: report shape, the measures themselves, reference codecs, and the command line."""

from __future__ import annotations

import io
import itertools
import json
import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from livetok.cli import main
from livetok.commands.quality import (
    JPEG_TABLE_MARKERS,
    encode_at_budget,
    evaluate,
    format_report,
    opus_round_trip,
    payload_bytes,
    perplexity,
    psnr_db,
    snr_db,
    source_logmel,
    video_grids,
)
from livetok.commands.tokenize import TokenizeReport, tokenize_file
from livetok.config.tokenizer import DeltaConfig, VideoConfig
from livetok.errors import MediaError
from livetok.tokenizers import TokenizerConfig, Tokenizers
from livetok.wire import Clock, Flag, Modality, Scale, TokenPacket

SCALE_KEYS = {"video": {"psnr_db", "bits_per_pixel", "perplexity"},
              "audio": {"logmel_snr_db", "bits_per_second", "perplexity"}}
CODEBOOK = "0123456789abcdef"


def levels(toks: Tokenizers, modality: str, scale: str) -> int:
    return getattr(toks, modality).quantizers[scale].levels


def expected_bpp(toks: Tokenizers, scale: str) -> float:
    q = toks.video.quantizers[scale]
    size = toks.cfg.video.size
    positions = (size // toks.video.patch[scale]) ** 2
    return positions * q.levels * math.log2(q.codebook_size) / (size * size)


def strictly_increasing(xs: list[float]) -> bool:
    return all(b > a for a, b in itertools.pairwise(xs))


@pytest.fixture(scope="module")
def av_report(av_clip: Path, toks: Tokenizers) -> dict[str, Any]:
    return evaluate(av_clip, toks, compare=True)


@pytest.fixture(scope="module")
def photo_png(media_dir: Path) -> Path:
    """A natural photo (skimage's cat) as a PNG: a still image."""
    from skimage import data

    out = media_dir / "chelsea.png"
    Image.fromarray(data.chelsea()).save(out)
    return out


@pytest.fixture(scope="module")
def photo_report(photo_png: Path, toks: Tokenizers) -> dict[str, Any]:
    return evaluate(photo_png, toks, compare=True)


@pytest.fixture(scope="module")
def chirp_wav(media_dir: Path) -> Path:
    """1.5 s of a rising, amplitude-modulated chirp at 22.05 kHz: non-stationary, unlike a tone."""
    rate = 22050
    t = np.arange(int(1.5 * rate)) / rate
    x = 0.4 * np.sin(2 * np.pi * (200 * t + 600 * t * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    out = media_dir / "chirp.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return out


# --- report shape and figures ---------------------------------------------------------------


@pytest.mark.slow
def test_av_report_has_exactly_the_documented_shape(av_report: dict[str, Any], toks: Tokenizers) -> None:
    assert set(av_report) == {"video", "audio"}
    for modality in ("video", "audio"):
        section = av_report[modality]
        extra = {"reference_coarse"} if modality == "video" else set()
        assert set(section) == {"fine", "coarse", "reference"} | extra
        for scale in ("fine", "coarse"):
            assert set(section[scale]) == SCALE_KEYS[modality]
            n = levels(toks, modality, scale)
            quality_key = "psnr_db" if modality == "video" else "logmel_snr_db"
            assert len(section[scale][quality_key]) == n
            assert len(section[scale]["perplexity"]) == n
    for key in ("reference", "reference_coarse"):
        assert set(av_report["video"][key]) == {"jpeg", "webp"}
        for entry in av_report["video"][key].values():
            assert set(entry) == {"bits_per_pixel", "psnr_db"}
    assert set(av_report["audio"]["reference"]) == {"opus"}
    assert set(av_report["audio"]["reference"]["opus"]) == {"bits_per_second", "logmel_snr_db"}
    json.dumps(av_report, allow_nan=False)  # plain floats and lists only


def test_video_psnr_increases_with_depth(av_report: dict[str, Any], photo_report: dict[str, Any]) -> None:
    for report in (av_report, photo_report):
        for scale in ("fine", "coarse"):
            psnr = report["video"][scale]["psnr_db"]
            assert strictly_increasing(psnr), (scale, psnr)
            assert all(0 < v < 100 for v in psnr)


def test_bits_follow_the_formula(av_report: dict[str, Any], toks: Tokenizers) -> None:
    for scale in ("fine", "coarse"):
        assert av_report["video"][scale]["bits_per_pixel"] == pytest.approx(expected_bpp(toks, scale))
    # 224 px, 16 px patches: 196 x 4 levels x 10 bits / 224^2; 32 px: 49 x 2 x 10 / 224^2
    assert av_report["video"]["fine"]["bits_per_pixel"] == pytest.approx(196 * 4 * 10 / 224**2)
    assert av_report["video"]["coarse"]["bits_per_pixel"] == pytest.approx(49 * 2 * 10 / 224**2)
    # 50 steps/s x 4 x 10 bits and 12.5 steps/s x 2 x 10 bits
    assert av_report["audio"]["fine"]["bits_per_second"] == pytest.approx(2000.0)
    assert av_report["audio"]["coarse"]["bits_per_second"] == pytest.approx(250.0)


def test_perplexities_are_within_one_and_k(av_report: dict[str, Any], photo_report: dict[str, Any]) -> None:
    for report in (av_report, photo_report):
        for section in report.values():
            for scale in ("fine", "coarse"):
                assert all(1.0 <= p <= 1024.0 for p in section[scale]["perplexity"])
    # a still image has 196 fine positions, so no level can use more than 196 codes
    assert all(p <= 196 for p in photo_report["video"]["fine"]["perplexity"])


def test_still_image_is_one_video_frame(photo_report: dict[str, Any], toks: Tokenizers) -> None:
    assert set(photo_report) == {"video"}
    assert photo_report["video"]["fine"]["bits_per_pixel"] == pytest.approx(expected_bpp(toks, "fine"))
    assert photo_report["video"]["fine"]["psnr_db"][-1] > 18  # a natural photo the codebooks cover


def test_reference_image_codecs_stay_within_our_bits(av_report: dict[str, Any], photo_report: dict[str, Any]) -> None:
    for report in (av_report, photo_report):
        for scale, key in (("fine", "reference"), ("coarse", "reference_coarse")):
            ours = report["video"][scale]["bits_per_pixel"]
            for name, entry in report["video"][key].items():
                assert 0 < entry["bits_per_pixel"] <= ours, (scale, name)
                assert entry["psnr_db"] > 5, (scale, name)
        # the coarse budget (980 bits) is an eighth of the fine one: the codecs lose picture there
        for name in ("jpeg", "webp"):
            assert report["video"]["reference_coarse"][name]["psnr_db"] < report["video"]["reference"][name]["psnr_db"]


def test_opus_reference_runs_at_its_minimum_rate(av_report: dict[str, Any]) -> None:
    opus = av_report["audio"]["reference"]["opus"]
    # our 2 kb/s is below Opus' 6 kb/s floor: VBR lands near 6 kb/s
    assert 3000 < opus["bits_per_second"] < 9000
    assert math.isfinite(opus["logmel_snr_db"])


def test_audio_only_wav_gives_only_audio(chirp_wav: Path, toks: Tokenizers) -> None:
    report = evaluate(chirp_wav, toks, compare=False)
    assert set(report) == {"audio"}
    assert set(report["audio"]) == {"fine", "coarse"}  # no reference without compare
    snr = report["audio"]["fine"]["logmel_snr_db"]
    assert snr[-1] > snr[0]  # more levels, less error
    assert snr[-1] > 0  # better than the per-mel mean alone


def test_speech_report_with_opus(speech_wav: Path, toks: Tokenizers) -> None:
    report = evaluate(speech_wav, toks, compare=True)
    assert set(report) == {"audio"}
    fine = report["audio"]["fine"]["logmel_snr_db"]
    assert strictly_increasing(fine)
    assert report["audio"]["reference"]["opus"]["bits_per_second"] >= 3000


def test_eval_log_mel_is_the_one_the_stream_tokenized(speech_wav: Path, toks: Tokenizers) -> None:
    """The original log-mel eval measures against gives back exactly the streamed codes."""
    packets = tokenize_file(speech_wav, toks, "s", None, TokenizeReport())
    mel = source_logmel(speech_wav, toks)
    assert mel is not None
    for scale in ("fine", "coarse"):
        mine = sorted((p for p in packets if p.scale.name.lower() == scale), key=lambda p: p.seq)
        fps = toks.audio.frames_per_step[scale]
        n = len(mine)
        assert mel.shape[0] >= n * fps
        codes = toks.audio.quantizers[scale].encode_np(mel[: n * fps].reshape(n, -1)).codes
        np.testing.assert_array_equal(codes, np.concatenate([p.codes for p in mine]))


@pytest.mark.slow
def test_delta_mode_counts_only_sent_positions(av_clip: Path) -> None:
    cfg = TokenizerConfig(device="cpu", video=VideoConfig(delta=DeltaConfig(enabled=True, threshold=3.0)))
    toks = Tokenizers.from_config(cfg)
    delta = evaluate(av_clip, toks, compare=False)["video"]
    full = evaluate(av_clip, Tokenizers.from_config(TokenizerConfig(device="cpu")), compare=False)["video"]
    # testsrc2's colour bars stand still: most patches are not re-sent
    assert delta["fine"]["bits_per_pixel"] < 0.8 * full["fine"]["bits_per_pixel"]
    assert strictly_increasing(delta["fine"]["psnr_db"])
    # the rebuilt grids reconstruct nearly as well as full grids
    assert delta["fine"]["psnr_db"][-1] > full["fine"]["psnr_db"][-1] - 1.5


# --- the measures -----------------------------------------------------------------------------


def test_psnr_and_snr_values() -> None:
    assert psnr_db(255.0**2 / 100) == pytest.approx(20.0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 80))
    noise = 0.1 * rng.standard_normal((50, 80))
    expected = 10 * math.log10(np.sum((x - x.mean(0)) ** 2) / np.sum(noise**2))
    assert snr_db(x, x + noise) == pytest.approx(expected)
    # a constant log offset (quiet recording) neither adds signal nor changes the figure
    assert snr_db(x - 10, x - 10 + noise) == pytest.approx(expected)


def test_perplexity_extremes() -> None:
    uniform = np.arange(1024, dtype=np.uint16).repeat(3)[:, None]
    constant = np.full((500, 1), 7, np.uint16)
    two = np.array([[0], [1]] * 10, np.uint16)
    assert perplexity(uniform, 1024) == [pytest.approx(1024.0)]
    assert perplexity(constant, 1024) == [pytest.approx(1.0)]
    assert perplexity(two, 1024) == [pytest.approx(2.0)]


def _video_packet(seq: int, codes: np.ndarray, positions: np.ndarray | None) -> TokenPacket:
    return TokenPacket(source="cam", modality=Modality.VIDEO, scale=Scale.FINE, seq=seq, start_ns=seq * 40,
                       end_ns=seq * 40 + 40, clock=Clock.MEDIA, codebook_id=CODEBOOK,
                       flags=Flag.KEYFRAME if positions is None else Flag.DELTA, grid=(2, 2),
                       codes=codes.astype(np.uint16), positions=positions)


def test_video_grids_apply_deltas_on_top_of_the_last_codes() -> None:
    key = _video_packet(0, np.arange(8).reshape(4, 2), None)
    delta = _video_packet(1, np.array([[90, 91]]), np.array([2], np.uint16))
    delta2 = _video_packet(2, np.array([[70, 71], [80, 81]]), np.array([0, 3], np.uint16))
    frames = video_grids([delta2, key, delta])[("cam", "fine")]  # any order in: seq order out
    assert [f.seq for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(frames[1].codes, [[0, 1], [2, 3], [90, 91], [6, 7]])
    np.testing.assert_array_equal(frames[2].codes, [[70, 71], [2, 3], [90, 91], [80, 81]])
    assert [f.sent for f in frames] == [4, 1, 2]
    # a delta with no full grid before it has nothing to apply to
    assert video_grids([delta])[("cam", "fine")] == []


def test_encode_at_budget_respects_the_budget(photo_png: Path) -> None:
    image = np.asarray(Image.open(photo_png).convert("RGB").resize((224, 224)))
    for codec in ("jpeg", "webp"):
        small_bytes, small = encode_at_budget(image, codec, 900)
        big_bytes, big = encode_at_budget(image, codec, 8000)
        assert small_bytes <= 900 and big_bytes <= 8000
        assert big_bytes > 2 * small_bytes  # the search used the room it had
        err = [float(np.mean((image.astype(float) - d.astype(float)) ** 2)) for d in (small, big)]
        assert err[1] < err[0]


def jpeg_segments(data: bytes) -> list[bytes]:
    """The marker segments of a JPEG before its scan (SOI excluded)."""
    out, i = [], 2
    while data[i + 1] != 0xDA:
        length = 2 + (data[i + 2] << 8 | data[i + 3])
        out.append(data[i : i + length])
        i += length
    return out


def test_payload_leaves_out_only_what_every_image_shares(photo_png: Path) -> None:
    """What payload_bytes does not count (JPEG's DQT, DHT and APP0 segments at a quality setting,
    WebP's RIFF container) is the same bytes for any two pictures, so a decoder can hold it as it
    holds our codebooks; everything else is counted."""
    a = np.asarray(Image.open(photo_png).convert("RGB").resize((224, 224)))
    b = np.ascontiguousarray(a[::-1, ::-1] // 2 + 40)
    for quality in (5, 50):
        files = []
        for image in (a, b):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, "JPEG", quality=quality, optimize=False)
            files.append(buf.getvalue())
        fixed = [[seg for seg in jpeg_segments(f) if seg[1] in JPEG_TABLE_MARKERS] for f in files]
        assert fixed[0] == fixed[1] and len(fixed[0]) >= 3  # APP0, DQT, DHT
        for f, segs in zip(files, fixed, strict=True):
            assert payload_bytes(f, "jpeg") == len(f) - sum(len(seg) for seg in segs) + 1
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "WEBP", quality=10, method=6)
    data = buf.getvalue()
    assert data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8 "  # the simple lossy format: one chunk
    assert int.from_bytes(data[16:20], "little") <= payload_bytes(data, "webp") <= len(data) - 20


def test_encode_at_budget_fits_the_coarse_budget(photo_png: Path) -> None:
    """980 bits (122 bytes) per 224 x 224 frame, the coarse scale's: before, JPEG's tables alone
    (about 600 bytes) were over it and the over-budget smallest output was used."""
    image = np.asarray(Image.open(photo_png).convert("RGB").resize((224, 224)))
    for codec in ("jpeg", "webp"):
        nbytes, decoded = encode_at_budget(image, codec, 122)
        assert 40 < nbytes <= 122, codec
        assert decoded.shape == image.shape
        assert psnr_db(float(np.mean((image.astype(float) - decoded.astype(float)) ** 2))) > 12


def test_opus_round_trip_is_time_aligned() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    x = (0.3 * np.sin(2 * np.pi * (300 * t + 400 * t * t)) * np.hanning(t.size)).astype(np.float32)
    nbytes, y = opus_round_trip(x, rate, 24000)
    assert y.shape == x.shape and nbytes > 0
    lags = range(-40, 41)
    corr = [float(np.dot(x[100:-100], np.roll(y, -lag)[100:-100])) for lag in lags]
    assert abs(list(lags)[int(np.argmax(corr))]) <= 2  # Ogg pre-skip removed: no codec delay


def test_missing_input_is_a_one_line_media_error(tmp_path: Path, toks: Tokenizers) -> None:
    with pytest.raises(MediaError) as info:
        evaluate(tmp_path / "nope.mp4", toks)
    assert "nope.mp4" in str(info.value) and "\n" not in str(info.value)


# --- format_report and the command line -------------------------------------------------------


def test_format_report_lists_every_row(av_report: dict[str, Any]) -> None:
    text = format_report(av_report)
    for needle in ("video", "audio", "bits/pixel", "bits/second", "PSNR dB", "log-mel SNR dB",
                   "jpeg (reference)", "webp (reference)", "opus (reference)",
                   "jpeg (coarse ref.)", "webp (coarse ref.)"):
        assert needle in text
    fine_line = next(line for line in text.splitlines() if line.strip().startswith("fine"))
    assert f"{av_report['video']['fine']['psnr_db'][-1]:.2f}" in fine_line


def test_cli_eval_prints_a_table(chirp_wav: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(chirp_wav), "--no-compare"]) == 0
    out = capsys.readouterr().out
    assert "audio" in out and "bits/second" in out and "video" not in out
    assert "2000" in out and "250" in out


def test_cli_eval_json(chirp_wav: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(chirp_wav), "--json", "--no-compare"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"audio"}
    assert set(report["audio"]["fine"]) == SCALE_KEYS["audio"]


def test_cli_eval_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.wav"
    code = main(["eval", str(missing)])
    captured = capsys.readouterr()
    assert code != 0
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livetok: error:") and "missing.wav" in lines[0]
