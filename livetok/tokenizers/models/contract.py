"""The input/output contract of a user's model (TorchScript or ONNX), as configuration.

A contract says what the model takes, what it gives and at what rate, so that livetok can feed it
live media and check it at load. It is declared in the configuration (``model.io``) or carried by
the model file itself as JSON of the same schema (ONNX: ``metadata_props`` key ``livetok.json``;
TorchScript: the extra file ``livetok.json``). Pure pydantic: ``check-config`` imports it without
torch or onnxruntime.

Units: audio *input steps* are samples (``input: waveform``) or log-mel frames (``input: logmel``);
``hop``, ``receptive_field``, ``lookahead``, ``chunk`` and ``context`` count input steps. Shapes
name the batch axis ``B``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from livetok.tokenizers.plugin_config import LogMelParams, Strict

Dim = int | Literal["B"]
FloatType = Literal["float32", "float16", "float64"]
ConstType = Literal["float32", "float64", "int64", "int32", "bool"]


class StateTensor(Strict):
    """One recurrent state tensor of a streaming model: fed in, given back, fed in again next call."""

    input: str = Field(description="the model input that takes the state")
    output: str = Field(description="the model output that gives the next state")
    shape: list[Dim] = Field(min_length=1, max_length=8, description="its shape, with exactly one axis 'B' (batch)")
    dtype: FloatType = Field("float32", description="element type")
    init: float = Field(0.0, description="every value of the state before the first call")

    @model_validator(mode="after")
    def _check(self) -> StateTensor:
        if self.shape.count("B") != 1:
            raise ValueError(f"shape {self.shape} needs exactly one batch axis 'B'")
        if any(d != "B" and int(d) < 1 for d in self.shape):
            raise ValueError(f"shape {self.shape}: every size but 'B' must be at least 1")
        return self

    @property
    def batch_axis(self) -> int:
        return self.shape.index("B")


class ConstantInput(Strict):
    """An input that takes the same scalar every call (a sample rate, a flag)."""

    name: str = Field(description="the model input")
    value: float | int | bool = Field(description="its value")
    dtype: ConstType = Field("int64", description="element type (a 0-dimensional tensor)")


class _IO(Strict):
    input_name: str = Field("input", description="the model input that takes the media")
    input_dtype: FloatType = Field("float32", description="element type of the media fed in")
    output_name: str = Field("output", description="the model output that gives embeddings or codes")
    output: Literal["embeddings", "codes"] = Field(
        "embeddings", description="embeddings: float vectors, quantized by livetok; codes: integer codes")
    dim: int = Field(ge=1, le=65536, description="embedding size D, or code levels L per cell (count)")
    codebook_size: int | None = Field(
        None, ge=2, le=65536, description="codes only: every code is below it (count)")
    constants: list[ConstantInput] = Field([], max_length=16, description="inputs with a fixed scalar value")

    def _check_io(self, extra_inputs: list[str]) -> None:
        if self.output == "codes" and self.codebook_size is None:
            raise ValueError("output: codes needs codebook_size")
        if self.output == "embeddings" and self.codebook_size is not None:
            raise ValueError("codebook_size is for output: codes (embeddings are quantized by livetok)")
        names = [self.input_name, *extra_inputs, *(c.name for c in self.constants)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"input {dup[0]!r} is named more than once")


class AudioModelIO(_IO):
    """Waveform or log-mel in, embeddings or codes out at ``sample_rate / (hop x input step)`` frames/s.

    Stateless models (``receptive_field``): each call takes a window of ``receptive_field +
    (frames_per_call - 1) x hop`` input steps and gives ``frames_per_call`` frames; frame t depends on
    input steps ``[t hop + hop + lookahead - receptive_field, t hop + hop + lookahead)`` (before the
    start: silence). Stateful models (``chunk``): each call takes the ``context`` steps before a chunk,
    the chunk of ``chunk`` steps and the ``state`` tensors; it gives ``chunk / hop`` frames and the next
    state.
    """

    modality: Literal["audio"] = "audio"
    sample_rate: int = Field(ge=8000, le=48000, description="the model's sample rate (Hz); input is resampled to it")
    input: Literal["waveform", "logmel"] = Field(
        "waveform", description="waveform: mono float32 samples; logmel: livetok's causal log-mel frames")
    logmel: LogMelParams | None = Field(None, description="input: logmel only: the log-mel front end")
    input_layout: Literal["BT", "BTC", "BCT"] = Field(
        "BT", description="waveform: BT; logmel: BTC ([B, frames, n_mels]) or BCT ([B, n_mels, frames])")
    output_layout: Literal["BTD", "BDT", "BD", "BT"] = Field(
        "BTD", description="BTD/BDT: frames and D (or L) values; BD: one frame per call; BT: one value per frame")
    hop: int = Field(ge=1, le=1_000_000, description="input steps per output frame (count)")
    receptive_field: int | None = Field(
        None, ge=1, le=10_000_000, description="stateless: input steps one output frame depends on (count)")
    lookahead: int = Field(0, ge=0, description="stateless: input steps past a frame's end that it depends on (count)")
    frames_per_call: int = Field(1, ge=1, le=4096, description="stateless: output frames per window (count)")
    chunk: int | None = Field(None, ge=1, le=10_000_000, description="stateful: input steps per call (count)")
    context: int = Field(0, ge=0, le=10_000_000,
                         description="stateful: input steps before the chunk passed with it (count; silence first)")
    state: list[StateTensor] = Field([], max_length=16, description="stateful: recurrent state tensors")

    @model_validator(mode="after")
    def _check(self) -> AudioModelIO:
        self._check_io([s.input for s in self.state])
        if (self.input == "logmel") != (self.logmel is not None):
            raise ValueError("logmel (the front end) is needed with input: logmel, and only then")
        if self.logmel is not None:
            self.logmel.audio_config(self.sample_rate)
        if self.input == "waveform" and self.input_layout != "BT":
            raise ValueError(f"input_layout {self.input_layout} is for log-mel input; waveform is BT")
        if self.input == "logmel" and self.input_layout == "BT":
            raise ValueError("input_layout BT is for waveform; log-mel input is BTC or BCT")
        if (self.receptive_field is None) == (self.chunk is None):
            raise ValueError("give receptive_field (a stateless model) or chunk (a stateful one), not both")
        if self.receptive_field is not None:
            self._check_stateless(self.receptive_field)
        elif self.chunk is not None:
            self._check_stateful(self.chunk)
        if self.output_layout == "BD" and self.frames != 1:
            raise ValueError(f"output_layout BD (no frame axis) needs one frame per call, not {self.frames}")
        if self.output_layout == "BT" and self.dim != 1:
            raise ValueError(f"output_layout BT (one value per frame) needs dim 1, not {self.dim}")
        return self

    def _check_stateless(self, rf: int) -> None:
        if self.state or self.context:
            raise ValueError("state and context are for stateful models (chunk)")
        if rf < self.hop:
            raise ValueError(f"receptive_field ({rf}) is shorter than hop ({self.hop})")
        if self.lookahead > rf - self.hop:
            raise ValueError(f"lookahead ({self.lookahead}) is more than receptive_field - hop ({rf - self.hop})")

    def _check_stateful(self, chunk: int) -> None:
        if chunk % self.hop:
            raise ValueError(f"chunk ({chunk}) is not a whole number of hops ({self.hop})")
        if self.lookahead or self.frames_per_call != 1:
            raise ValueError("lookahead and frames_per_call are for stateless models (receptive_field)")

    @property
    def stateful(self) -> bool:
        return self.chunk is not None

    @property
    def frames(self) -> int:
        """Output frames per call."""
        return self.chunk // self.hop if self.chunk is not None else self.frames_per_call

    @property
    def window(self) -> int:
        """Input steps per call: ``context + chunk``, or ``receptive_field + (frames - 1) x hop``."""
        if self.chunk is not None:
            return self.context + self.chunk
        assert self.receptive_field is not None
        return self.receptive_field + (self.frames_per_call - 1) * self.hop

    @property
    def advance(self) -> int:
        """Input steps between the starts of consecutive calls."""
        return self.frames * self.hop

    @property
    def history(self) -> int:
        """Input steps of silence the stream starts with, so that frame 0 has its full window."""
        if self.chunk is not None:
            return self.context
        assert self.receptive_field is not None
        return self.receptive_field - self.hop - self.lookahead

    @property
    def channels(self) -> int:
        """Values per input step: 1 (waveform) or n_mels."""
        return 1 if self.logmel is None else self.logmel.n_mels

    @property
    def step_samples(self) -> int:
        """Samples per input step at the model rate: 1, or the log-mel hop."""
        return 1 if self.logmel is None else self.logmel.audio_config(self.sample_rate).hop_length


class VideoModelIO(_IO):
    """Frames ``[B, 3, height, width]`` float in, per frame an embedding or code grid out."""

    modality: Literal["video"] = "video"
    height: int = Field(ge=8, le=4096, description="model input height (px)")
    width: int = Field(ge=8, le=4096, description="model input width (px)")
    normalize: Literal["unit", "meanstd"] = Field(
        "unit", description="unit: RGB / 255 in [0, 1]; meanstd: (RGB / 255 - mean) / std per channel")
    mean: tuple[float, float, float] = Field((0.485, 0.456, 0.406), description="meanstd: per channel R, G, B")
    std: tuple[float, float, float] = Field((0.229, 0.224, 0.225), description="meanstd: per channel R, G, B (> 0)")
    grid: tuple[int, int] = Field(description="(rows, cols) of the output grid (count)")
    output_layout: Literal["BDHW", "BHWD", "BND", "BHW"] = Field(
        "BDHW", description="BDHW / BHWD: a grid of D values; BND: N = rows x cols cells, row-major; "
        "BHW: one value per cell")

    @model_validator(mode="after")
    def _check(self) -> VideoModelIO:
        self._check_io([])
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std {self.std}: every value must be above 0")
        if min(self.grid) < 1 or self.grid[0] * self.grid[1] > 65536:
            raise ValueError(f"grid {self.grid}: 1 .. 65536 cells")
        if self.output_layout == "BHW" and self.dim != 1:
            raise ValueError(f"output_layout BHW (one value per cell) needs dim 1, not {self.dim}")
        return self


def _modality(value: Any) -> str:
    """``io.modality``, or, when it is left out, video for a contract with a picture size, else audio."""
    if isinstance(value, dict):
        return str(value.get("modality", "video" if "height" in value or "grid" in value else "audio"))
    return str(getattr(value, "modality", "audio"))


ModelIO = Annotated[Annotated[AudioModelIO, Tag("audio")] | Annotated[VideoModelIO, Tag("video")],
                    Discriminator(_modality)]


class ModelConfig(Strict):
    """A user's model file and how to run it; ``io`` is the contract (None: read from the file)."""

    path: Path = Field(description="the model file (TorchScript .pt/.jit, or ONNX .onnx)")
    submodule: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="TorchScript only: call this (dotted) submodule's forward instead of the model's own")
    io: ModelIO | None = Field(None, description="the input/output contract; null = the file's livetok.json")
    batch: int = Field(8, ge=1, le=256, description="the most rows (windows, chunks, frames) per model call (count)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when torch sees one (TorchScript) or the CUDA provider exists (ONNX)")
    threads: int | None = Field(None, ge=1, le=256, description="CPU threads per call; null = the runtime's default")
