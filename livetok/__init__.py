"""livetok: a streaming, real-time media tokenizer (audio and video to coarse/fine RVQ tokens)."""

__version__ = "0.1.0"
