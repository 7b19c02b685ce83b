"""Loading users' models: the contract (declared or read from the file), and every way a model or a
contract can be wrong, each one line naming the tokenizer and the key, at load and never mid-stream;
a model that fails while running raises ModelRunError for its tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from plugin_models import (
    STATELESS_IO,
    ExtraFrame,
    NaNOut,
    NaNWhenLoud,
    RaisesWhenLoud,
    export,
    seeded,
    stateful_io,
    stateful_model,
    stateless_model,
    video_model,
    with_codebooks,
)
from pydantic import ValidationError
from requires import not_on_this_machine

from livetok.errors import CodebookError, ConfigError, LivetokError, ModelError, ModelRunError
from livetok.tokenizers.models.audio import AudioModelEncoder
from livetok.tokenizers.models.batching import candidate_sizes
from livetok.tokenizers.models.contract import AudioModelIO, ModelConfig, VideoModelIO
from livetok.tokenizers.models.video import VideoModelEncoder
from livetok.tokenizers.protocol import process

FORMATS = ["torchscript", "onnx"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plugin-models")


def load_error(cfg: ModelConfig, fmt: str, modality: str = "audio") -> LivetokError:
    loader = AudioModelEncoder.load if modality == "audio" else VideoModelEncoder.load
    with pytest.raises(LivetokError) as info:
        loader("tok", cfg, fmt)  # type: ignore[arg-type]
    err = info.value
    assert "\n" not in str(err) and str(err).startswith("tokenizer 'tok': ")
    return err


@pytest.mark.parametrize("fmt", FORMATS)
def test_contract_read_from_the_file(model_dir: Path, fmt: str) -> None:
    path = stateless_model(model_dir, fmt)
    enc = AudioModelEncoder.load("tok", ModelConfig(path=path), fmt)  # type: ignore[arg-type]
    assert enc.io == AudioModelIO.model_validate(STATELESS_IO)
    assert enc.runner.sha256 == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert enc.calibration is not None and enc.calibration.exact
    assert set(enc.caller.sizes) <= set(candidate_sizes(8)) and 8 in enc.caller.sizes


def test_declared_contract_wins_over_the_file(model_dir: Path) -> None:
    path = stateless_model(model_dir, "onnx")
    io = dict(STATELESS_IO, frames_per_call=2)
    enc = AudioModelEncoder.load("tok", ModelConfig(path=path, io=io), "onnx")  # type: ignore[arg-type]
    assert enc.io.frames_per_call == 2 and enc.io.window == 560


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_contract_anywhere(model_dir: Path, fmt: str) -> None:
    path = stateless_model(model_dir, fmt, embed=False)
    err = load_error(ModelConfig(path=path), fmt)
    assert isinstance(err, ConfigError) and err.exit_code == 78
    assert "model.io: not declared" in str(err) and "livetok.json" in str(err)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_directory_corrupt_and_foreign_files(model_dir: Path, fmt: str) -> None:
    junk = model_dir / "junk.bin"
    junk.write_bytes(b"\x00garbage" * 100)
    state_dict = model_dir / "weights.pt"
    torch.save({"w": torch.zeros(3)}, state_dict)
    other = stateless_model(model_dir, "onnx" if fmt == "torchscript" else "torchscript")
    kind = "TorchScript" if fmt == "torchscript" else "ONNX"
    cases = {
        model_dir / "nope.onnx": "no such file",
        model_dir: "is a directory, not a model file",
        junk: f"not a loadable {kind} model",
        state_dict: f"not a loadable {kind} model",
        other: f"not a loadable {kind} model",
    }
    for path, words in cases.items():
        err = load_error(ModelConfig(path=path, io=STATELESS_IO), fmt)
        assert isinstance(err, ModelError) and isinstance(err, CodebookError) and err.exit_code == 65
        assert f"model.path: {path}" in str(err) and words in str(err), str(err)


@pytest.mark.parametrize("fmt", FORMATS)
def test_embedded_contract_that_is_wrong(model_dir: Path, fmt: str) -> None:
    bad = dict(STATELESS_IO, lookahead=400)
    path = export(seeded(torch.nn.Identity), model_dir / f"badmeta.{fmt}", fmt, (torch.randn(2, 880),),
                  ["input"], ["output"], bad)
    err = load_error(ModelConfig(path=path), fmt)
    assert isinstance(err, ModelError)
    assert "livetok.json contract: lookahead" in str(err) or "livetok.json contract: " in str(err)
    assert "lookahead (400) is more than receptive_field - hop (240)" in str(err)


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_names(model_dir: Path, fmt: str) -> None:
    path = stateless_model(model_dir, fmt)
    err = load_error(ModelConfig(path=path, io=dict(STATELESS_IO, input_name="audio")), fmt)
    assert isinstance(err, ModelError)
    want = "model.io.input_name: the model has no input named 'audio' (it takes: input)"
    assert want in str(err)
    err = load_error(ModelConfig(path=path, io=dict(STATELESS_IO, output_name="emb")), fmt)
    assert isinstance(err, ModelError) and "'emb'" in str(err) and "output" in str(err)


def test_an_undeclared_model_input(model_dir: Path) -> None:
    """The stateful model takes a state ``h``: a contract that leaves it out is refused at load."""
    path = stateful_model(model_dir, "onnx")
    io = {k: v for k, v in stateful_io("onnx").items() if k != "state"}
    err = load_error(ModelConfig(path=path, io=io), "onnx")
    assert "model.io: the model's input 'h' is not in the contract" in str(err)


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_shapes(model_dir: Path, fmt: str) -> None:
    path = stateless_model(model_dir, fmt)
    err = load_error(ModelConfig(path=path, io=dict(STATELESS_IO, dim=16)), fmt)
    assert isinstance(err, ModelError)
    assert "output 'output' has shape [8, 12, 4]; the contract wants [B=8, dim=16, frames=4]" in str(err)
    assert "(at the load probe, with test input)" in str(err)
    # a window too short for the declared frames: one frame fewer comes out
    err = load_error(ModelConfig(path=path, io=dict(STATELESS_IO, receptive_field=240, lookahead=0)), fmt)
    assert "has shape [8, 12, 3]" in str(err)


def test_wrong_state_shape(model_dir: Path) -> None:
    path = stateful_model(model_dir, "onnx")
    io = stateful_io("onnx")
    io["state"] = [{"input": "h", "output": "h2", "shape": [1, "B", 32]}]
    err = load_error(ModelConfig(path=path, io=io), "onnx")
    assert "model.io.state[0]: the model's input 'h' takes shape [1, B, 24], the contract feeds [1, B, 32]" in str(err)


def test_wrong_dtype(model_dir: Path) -> None:
    path = stateless_model(model_dir, "onnx")
    err = load_error(ModelConfig(path=path, io=dict(STATELESS_IO, input_dtype="float64")), "onnx")
    assert "model.io.input_name: the model's input 'input' takes float32, the contract feeds float64" in str(err)
    # embeddings declared, integer codes given
    vpath = video_model(model_dir, "onnx", "codes")
    from plugin_models import video_io

    io = dict(video_io("codes"), output="embeddings", codebook_size=None)
    err = load_error(ModelConfig(path=vpath, io=io), "onnx", "video")
    assert "output 'output' has dtype int64; the contract wants floating-point values" in str(err)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_hop_that_is_not_the_models(model_dir: Path, fmt: str) -> None:
    path = stateless_model(model_dir, fmt, ExtraFrame, embed=False)
    io = dict(STATELESS_IO, frames_per_call=1, receptive_field=400, output_layout="BDT")
    # ExtraFrame gives one frame more than declared: the probe names the shape
    err = load_error(ModelConfig(path=path, io=io), fmt)
    assert "has shape [8, 12, 2]" in str(err)
    # a hop declared as 320 where the model steps by 160: a longer window shows it
    plain = stateless_model(model_dir, fmt)
    io = dict(STATELESS_IO, hop=320, receptive_field=400, lookahead=80, frames_per_call=1)
    err = load_error(ModelConfig(path=plain, io=io), fmt)
    assert ("model.io.hop: the contract says 320 input steps per frame, but a window 320 steps longer gave 3 frames "
            "instead of 2") in str(err)


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_outputs_at_load(model_dir: Path, fmt: str) -> None:
    path = stateless_model(model_dir, fmt, NaNOut)
    err = load_error(ModelConfig(path=path), fmt)
    assert isinstance(err, ModelError) and "output 'output' has 384 NaN or infinite values of 384" in str(err)


def test_codes_out_of_range_at_load(model_dir: Path) -> None:
    path = stateful_model(model_dir, "onnx")
    io = dict(stateful_io("onnx", "codes"), codebook_size=2)  # the heads choose among 16
    err = load_error(ModelConfig(path=path, io=io), "onnx")
    assert "output 'codes' has codes outside 0..1" in str(err)


@pytest.mark.parametrize(("fmt", "cls", "words"), [
    ("onnx", NaNWhenLoud, "NaN or infinite values"),
    ("torchscript", NaNWhenLoud, "NaN or infinite values"),
    ("torchscript", RaisesWhenLoud, "the model raised: builtins.ValueError: input too loud for this model"),
])
def test_a_model_failing_while_running(model_dir: Path, fmt: str, cls: type, words: str) -> None:
    """It loads (the probe is quiet input); a loud input then fails that batch with ModelRunError naming
    the tokenizer; the streams that took the jobs are told (abandon), flag a gap, and go on."""
    path = stateless_model(model_dir, fmt, cls)
    enc = with_codebooks(AudioModelEncoder.load("loud", ModelConfig(path=path), fmt))  # type: ignore[arg-type]
    quiet = np.full(4000, 0.1, np.float32)
    s = enc.stream("a")
    with pytest.raises(ModelRunError) as info:
        process(enc, s.take(np.concatenate([quiet, np.full(2000, 9.0, np.float32), quiet])))
    assert info.value.tokenizer == "loud" and info.value.exit_code == 65
    assert str(info.value).startswith("tokenizer 'loud': ") and words in str(info.value)
    assert "\n" not in str(info.value)
    steps = process(enc, s.take(np.zeros(4000, np.float32)))  # the stream goes on after the failure
    assert steps and steps[0].gap and not any(x.gap for x in steps[1:])


def test_contract_validation_lines() -> None:
    """What the configuration alone shows is a pydantic error on the key (check-config: exit 78)."""
    base: dict[str, Any] = dict(STATELESS_IO)
    bad = [
        (dict(base, chunk=320), "give receptive_field (a stateless model) or chunk"),
        (dict(base, lookahead=300), "lookahead (300) is more than receptive_field - hop (240)"),
        (dict(base, receptive_field=100), "receptive_field (100) is shorter than hop (160)"),
        (dict(base, output_layout="BD"), "output_layout BD (no frame axis) needs one frame per call, not 4"),
        (dict(base, output="codes"), "output: codes needs codebook_size"),
        (dict(base, input="logmel"), "logmel (the front end) is needed with input: logmel"),
        (dict(base, sample_rate=4000), "greater than or equal to 8000"),
        (dict(base, frames=3), "Extra inputs are not permitted"),
        (dict(base, constants=[{"name": "input", "value": 1}]), "input 'input' is named more than once"),
    ]
    for data, words in bad:
        with pytest.raises(ValidationError) as info:
            AudioModelIO.model_validate(data)
        assert words in str(info.value), str(info.value)
    stateful = stateful_io("onnx")
    with pytest.raises(ValidationError, match="chunk \\(300\\) is not a whole number of hops"):
        AudioModelIO.model_validate(dict(stateful, chunk=300))
    with pytest.raises(ValidationError, match="exactly one batch axis"):
        AudioModelIO.model_validate(dict(stateful, state=[{"input": "h", "output": "h2", "shape": [1, 2, 24]}]))
    with pytest.raises(ValidationError, match="std"):
        VideoModelIO.model_validate({"height": 32, "width": 32, "grid": [4, 4], "dim": 8, "std": [1, 0, 1]})
    with pytest.raises(ValidationError, match="submodule"):
        ModelConfig.model_validate({"path": "m.pt", "submodule": "a..b"})
    # io.modality may be left out: a picture size says video
    no_tag = {k: v for k, v in STATELESS_IO.items() if k != "modality"}
    assert isinstance(ModelConfig.model_validate({"path": "m", "io": no_tag}).io, AudioModelIO)
    video = {"height": 32, "width": 32, "grid": [4, 4], "dim": 8}
    assert isinstance(ModelConfig.model_validate({"path": "m", "io": video}).io, VideoModelIO)
    from livetok.tokenizers.models.load import validation_line

    with pytest.raises(ValidationError) as info:
        ModelConfig.model_validate({"path": "m", "io": dict(no_tag, hop_ms=3)})
    assert validation_line(info.value) == "io.hop_ms: Extra inputs are not permitted"


def test_modality_and_format_mismatch(model_dir: Path) -> None:
    path = video_model(model_dir, "onnx")
    err = load_error(ModelConfig(path=path), "onnx")  # a video model given to an audio tokenizer
    assert isinstance(err, ConfigError)
    assert "model.io.modality: the contract is for video, but the tokenizer is a audio tokenizer" in str(err)
    err = load_error(ModelConfig(path=stateless_model(path.parent, "onnx"), submodule="enc"), "onnx")
    assert "model.submodule is for TorchScript models only" in str(err)
    err = load_error(ModelConfig(path=stateless_model(path.parent, "torchscript"), submodule="enc"), "torchscript")
    assert "model.submodule: the model has no submodule 'enc'" in str(err)


def test_cuda_asked_for_but_absent(model_dir: Path) -> None:
    if torch.cuda.is_available():
        not_on_this_machine("this machine has CUDA: the test is about a machine without it")
    err = load_error(ModelConfig(path=stateless_model(model_dir, "torchscript"), device="cuda"), "torchscript")
    assert isinstance(err, ConfigError) and "model.device: cuda, but torch sees no CUDA device" in str(err)


def test_the_contract_imports_without_torch() -> None:
    """check-config validates model contracts without importing torch or onnxruntime."""
    io = json.dumps(json.dumps(STATELESS_IO))
    code = ("import sys, json; from livetok.tokenizers.models.contract import ModelConfig; "
            "from livetok.tokenizers.plugin_config import SpectroPatchConfig; "
            "from livetok.tokenizers.spec import StreamSpec; "
            f"ModelConfig.model_validate({{'path': 'm.onnx', 'io': json.loads({io})}})"
            "; "
            "SpectroPatchConfig(); "
            "print([m for m in ('torch', 'onnxruntime', 'numba', 'torchaudio') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_calibrated_sizes_agree_for_every_row(model_dir: Path) -> None:
    """Whatever sizes calibration kept, a row gives the same bits at each of them and in every slot."""
    for fmt in FORMATS:
        enc = AudioModelEncoder.load("tok", ModelConfig(path=stateless_model(model_dir, fmt)), fmt)  # type: ignore[arg-type]
        rng = np.random.default_rng(9)
        rows = [enc._probe_row(rng) for _ in range(8)]
        ref = enc.caller.call(rows[:1] + rows[1:enc.caller.sizes[0]], enc.caller.sizes[0])[0]
        for size in enc.caller.sizes:
            for slot in range(size):
                group = rows[1:size] if size > 1 else []
                group.insert(slot, rows[0])
                got = enc.caller.call(group, size)[slot]
                assert all(np.array_equal(got[k], ref[k]) for k in ref)


@pytest.mark.slow
def test_probing_an_onnx_model_needs_no_torch(model_dir: Path) -> None:
    """Loading and probing an ONNX waveform model (what check-config and start do) imports onnxruntime
    and NumPy, not torch: torch comes only with log-mel input or codebooks."""
    path = stateless_model(model_dir, "onnx")
    code = ("import sys; from pathlib import Path; "
            "from livetok.tokenizers.models.audio import AudioModelEncoder; "
            "from livetok.tokenizers.models.contract import ModelConfig; "
            f"e = AudioModelEncoder.load('t', ModelConfig(path=Path({str(path)!r})), 'onnx'); "
            "assert e.calibration is not None; "
            "print([m for m in ('torch', 'torchaudio', 'numba') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
