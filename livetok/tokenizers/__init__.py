"""Audio and video tokenizers: streaming front ends, projections, RVQ codebooks."""

from livetok.tokenizers.audio import AudioStream, AudioTokenizer
from livetok.tokenizers.codebooks import CodebookSet, load_codebooks
from livetok.tokenizers.config import AudioConfig, TokenizerConfig, VideoConfig
from livetok.tokenizers.session import MediaTokenizer, Tokenizers
from livetok.tokenizers.video import VideoStream, VideoTokenizer

__all__ = [
    "AudioConfig", "AudioStream", "AudioTokenizer", "CodebookSet", "MediaTokenizer", "TokenizerConfig",
    "Tokenizers", "VideoConfig", "VideoStream", "VideoTokenizer", "load_codebooks",
]
