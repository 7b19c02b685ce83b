"""Configuration of the plug-in tokenizer kinds: the log-mel front end, quantizers, spectrogram patches.

Pure pydantic (extra keys forbidden, units and bounds on every field): the configuration check imports
it without torch. :meth:`LogMelParams.audio_config` gives the :class:`AudioConfig` that
:class:`~livetok.tokenizers.audio_frontend.StreamingLogMel` takes, so the plug-ins compute exactly the
log-mel frames of the built-in audio tokenizer. The model contract is in ``models/contract.py``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, model_validator

from livetok.config.base import Strict
from livetok.config.tokenizer import AudioConfig


class LogMelParams(Strict):
    window_ms: float = Field(25.0, gt=0, le=100, description="STFT window length (ms)")
    hop_ms: float = Field(10.0, gt=0, le=50, description="STFT hop, one log-mel frame per hop (ms)")
    n_fft: int = Field(512, ge=64, le=8192, description="FFT size (samples), at least the window")
    n_mels: int = Field(80, ge=8, le=256, description="mel bands (count)")
    f_min: float = Field(0.0, ge=0, description="lowest mel band edge (Hz)")
    f_max: float | None = Field(None, gt=0, description="highest mel band edge (Hz); null = sample_rate / 2")

    def audio_config(self, sample_rate: int) -> AudioConfig:
        """The built-in audio configuration with these front-end values (its RVQ fields unused).
        Raises ValueError, one line, when the values do not fit ``sample_rate``."""
        try:
            return AudioConfig(sample_rate=sample_rate, window_ms=self.window_ms, hop_ms=self.hop_ms,
                               n_fft=self.n_fft, n_mels=self.n_mels, f_min=self.f_min, f_max=self.f_max)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"log-mel at {sample_rate} Hz: {where + ': ' if where else ''}{first['msg']}") from None

    def as_dict(self, sample_rate: int) -> dict[str, float | int]:
        """The values a fitted codebook depends on, in samples and Hz (``f_max`` resolved)."""
        a = self.audio_config(sample_rate)
        return {"sample_rate": sample_rate, "win_length": a.win_length, "hop_length": a.hop_length,
                "n_fft": a.n_fft, "n_mels": a.n_mels, "f_min": a.f_min,
                "f_max": a.f_max if a.f_max is not None else sample_rate / 2}


class QuantizerConfig(Strict):
    """How embeddings become codes: residual VQ (``rvq``), or single-level k-means (``kmeans``, HuBERT-
    style units: K clusters over the encoder's frame embeddings), after an optional PCA projection."""

    kind: Literal["rvq", "kmeans"] = Field("rvq", description="rvq: residual levels; kmeans: one level")
    levels: int | None = Field(
        None, ge=1, le=16, description="RVQ depth at run time (count); null = 4 (rvq), 1 (kmeans)")
    codebook_size: int = Field(1024, ge=2, le=65536, description="codes per level (count), K")
    dim: int | None = Field(
        64, ge=1, le=8192, description="PCA projection to this many values before quantizing (count); "
        "null = none (the embeddings as they are, centred)")
    iters: int = Field(20, ge=1, le=1000, description="Lloyd iterations per level when fitting (count)")

    @model_validator(mode="after")
    def _check(self) -> QuantizerConfig:
        if self.kind == "kmeans" and self.levels not in (None, 1):
            raise ValueError(f"kind: kmeans has one level, not levels={self.levels}")
        return self

    @property
    def depth(self) -> int:
        """Levels used at run time."""
        return self.levels if self.levels is not None else (4 if self.kind == "rvq" else 1)


class SpectroPatchConfig(Strict):
    """``spectrogram-patches``: the causal log-mel spectrogram cut into ``patch_mels x patch_frames``
    patches (AST-style), one column of ``n_mels / mel_stride`` patches every ``stride_frames`` frames,
    each projected and quantized (one shared quantizer, the grid row telling the band)."""

    sample_rate: int = Field(16000, ge=8000, le=48000, description="model sample rate (Hz); input is resampled to it")
    logmel: LogMelParams = Field(
        LogMelParams(n_mels=128, n_fft=1024),
        description="log-mel front end: 128 bands as AST; a 1024-point FFT so that no band is empty")
    patch_mels: int = Field(16, ge=1, le=256, description="mel bands per patch (count)")
    patch_frames: int = Field(16, ge=1, le=256, description="log-mel frames per patch (count)")
    stride_frames: int = Field(8, ge=1, le=256, description="frames between patch columns, one step (count)")
    mel_stride: int | None = Field(
        None, ge=1, le=256, description="bands between patch rows (count); null = patch_mels")
    quantizer: QuantizerConfig = Field(QuantizerConfig(), description="projection and RVQ of the patch vectors")
    vectors: bool = Field(False, description="also emit the projected patch vectors")

    @model_validator(mode="after")
    def _check(self) -> SpectroPatchConfig:
        self.logmel.audio_config(self.sample_rate)
        n_mels = self.logmel.n_mels
        if self.patch_mels > n_mels:
            raise ValueError(f"patch_mels ({self.patch_mels}) is more than logmel.n_mels ({n_mels})")
        if self.stride_frames > self.patch_frames:
            raise ValueError(f"stride_frames ({self.stride_frames}) is more than patch_frames ({self.patch_frames}): "
                             "frames between patches would never be seen")
        if (n_mels - self.patch_mels) % self.band_stride:
            raise ValueError(f"patches of {self.patch_mels} bands every {self.band_stride} do not end at "
                             f"logmel.n_mels ({n_mels}): the top bands would never be seen")
        q = self.quantizer
        if q.dim is not None and q.dim > self.patch_mels * self.patch_frames:
            raise ValueError(f"quantizer.dim ({q.dim}) is more than a patch's {self.patch_size} values")
        return self

    @property
    def band_stride(self) -> int:
        return self.mel_stride if self.mel_stride is not None else self.patch_mels

    @property
    def rows(self) -> int:
        """Patches per column (grid rows), lowest bands first."""
        return (self.logmel.n_mels - self.patch_mels) // self.band_stride + 1

    @property
    def patch_size(self) -> int:
        """Values per patch vector."""
        return self.patch_mels * self.patch_frames
