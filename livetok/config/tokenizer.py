"""Tokenizer configuration: pydantic models that mirror the ``tokenizer:`` section of config.yaml.

Every field states its unit, bound and meaning. These models hold configuration only, never
runtime state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from livetok.config.base import Strict

COARSE_BEAM = 4  # the coarse scale's default beam: measured in docs/performance.md, section 12


class RVQConfig(Strict):
    levels: int = Field(4, ge=1, le=16, description="RVQ depth used at run time (levels); at most the fitted depth")
    codebook_size: int = Field(1024, ge=2, le=65536, description="codes per level (count); must match the codebooks")
    dim: int = Field(64, ge=4, le=1024, description="projected vector size the RVQ works on (count); used by `fit`")


class VideoRVQConfig(RVQConfig):
    beam: int = Field(
        1, ge=1, le=32, description="partial sums the RVQ encoder keeps per level (count): 1 = greedy; B > 1 = "
        "beam search: a better reconstruction with the same codebooks, for more CPU as B grows "
        "(docs/performance.md, section 12)")


class CoarseRVQConfig(VideoRVQConfig):
    """The coarse scale's defaults, so that a partial section (``coarse: {beam: 1}``) keeps them."""

    levels: int = Field(2, ge=1, le=16, description="RVQ depth used at run time (levels); at most the fitted depth")
    beam: int = Field(
        COARSE_BEAM, ge=1, le=32, description="partial sums the RVQ encoder keeps per level (count): 1 = greedy; "
        "B > 1 = beam search (the coarse default: docs/performance.md, section 12)")


class AudioConfig(Strict):
    sample_rate: int = Field(16000, ge=8000, le=48000, description="model sample rate (Hz); input is resampled to it")
    window_ms: float = Field(25.0, gt=0, le=100, description="STFT window length (ms)")
    hop_ms: float = Field(10.0, gt=0, le=50, description="STFT hop, one log-mel frame per hop (ms)")
    n_fft: int = Field(512, ge=64, le=8192, description="FFT size (samples), at least the window")
    n_mels: int = Field(80, ge=8, le=256, description="mel bands (count)")
    f_min: float = Field(0.0, ge=0, description="lowest mel band edge (Hz)")
    f_max: float | None = Field(None, gt=0, description="highest mel band edge (Hz); null = sample_rate / 2")
    fine_frames: int = Field(
        2, ge=1, le=64, description="log-mel frames per fine token step (count): 2 x 10 ms = 20 ms, 50 Hz")
    coarse_frames: int = Field(
        8, ge=1, le=256, description="log-mel frames per coarse token step (count): 8 x 10 ms = 80 ms, 12.5 Hz")
    fine: RVQConfig = Field(RVQConfig(levels=4, dim=64), description="fine-scale RVQ")
    coarse: RVQConfig = Field(RVQConfig(levels=2, dim=128), description="coarse-scale RVQ")

    @model_validator(mode="after")
    def _check(self) -> AudioConfig:
        if self.n_fft < self.win_length:
            raise ValueError(f"n_fft ({self.n_fft}) must be at least the window ({self.win_length} samples)")
        if self.coarse_frames % self.fine_frames:
            raise ValueError("coarse_frames must be a multiple of fine_frames")
        nyquist = self.sample_rate / 2
        if self.f_max is not None and self.f_max > nyquist:
            raise ValueError(f"f_max ({self.f_max:g} Hz) is above half the sample rate ({nyquist:g} Hz)")
        if self.f_min >= (self.f_max if self.f_max is not None else nyquist):
            raise ValueError(f"f_min ({self.f_min:g} Hz) must be below f_max")
        return self

    @property
    def win_length(self) -> int:
        """Window length in samples."""
        return round(self.window_ms * self.sample_rate / 1000)

    @property
    def hop_length(self) -> int:
        """Hop length in samples."""
        return round(self.hop_ms * self.sample_rate / 1000)


class DeltaConfig(Strict):
    enabled: bool = Field(False, description="send only patches that changed since they were last sent")
    threshold: float = Field(
        3.0, ge=0, le=255, description="mean absolute pixel change (0-255 levels) above which a patch is re-sent")
    keyframe_interval_s: float = Field(2.0, gt=0, le=3600, description="a full grid (keyframe) at least this often (s)")


class VideoConfig(Strict):
    size: int = Field(224, ge=32, le=1024, description="model resolution, square (px); a multiple of coarse_patch")
    aspect: Literal["crop", "pad", "stretch"] = Field(
        "crop",
        description="crop: scale the short side to `size` and centre-crop; pad: letterbox in grey; "
        "stretch: ignore aspect")
    fine_patch: int = Field(16, ge=4, le=128, description="fine patch side (px): 14 x 14 = 196 patches at 224")
    coarse_patch: int = Field(32, ge=8, le=256, description="coarse patch side (px): 7 x 7 = 49 patches at 224")
    fine: VideoRVQConfig = Field(VideoRVQConfig(levels=4, dim=64), description="fine-scale RVQ")
    coarse: CoarseRVQConfig = Field(CoarseRVQConfig(levels=2, dim=64), description="coarse-scale RVQ")
    vectors: bool = Field(False, description="also emit the continuous projected patch vectors (float16)")
    delta: DeltaConfig = Field(DeltaConfig(), description="incremental (delta) mode")
    batch_size: int = Field(8, ge=1, le=256, description="frames per tokenizer call (count), across all sources")

    @field_validator("fine", "coarse", mode="before")
    @classmethod
    def _video_rvq(cls, value: Any) -> Any:
        """A plain :class:`RVQConfig` (the audio scales' model, as callers built it before ``beam``
        existed) is taken with the scale's default beam."""
        if isinstance(value, RVQConfig) and not isinstance(value, VideoRVQConfig):
            return value.model_dump()
        return value

    @model_validator(mode="after")
    def _check(self) -> VideoConfig:
        for name, p in (("fine_patch", self.fine_patch), ("coarse_patch", self.coarse_patch)):
            if self.size % p:
                raise ValueError(f"size ({self.size}) must be a multiple of {name} ({p})")
        return self


class TokenizerConfig(Strict):
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where video tokenization runs; auto = cuda when torch sees a GPU")
    codebooks: Path | None = Field(
        None, description="safetensors codebook file; null = the codebooks packaged with livetok")
    audio: AudioConfig = Field(AudioConfig(), description="audio tokenizer")
    video: VideoConfig = Field(VideoConfig(), description="video tokenizer")
