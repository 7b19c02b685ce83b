"""Live capture: threads that read cameras, microphones, network streams and files and hand
timestamped video frames and audio blocks to the event loop through bounded ``Handoff`` queues.

Modules: ``types`` and ``handoff`` (the contract), ``av_source`` and ``av_options`` (anything
FFmpeg opens), ``mic`` (PortAudio), ``synthetic`` (a test source with sync markers), ``devices``
(listing), ``timeline`` (a microphone's sample clock), ``worker``/``pacing``/``interrupt`` (shared
machinery; retry delays: ``livetok.runtime.backoff``). See docs/sources.md.
``mic`` is not imported here: importing sounddevice needs the PortAudio library.
"""

from livetok.streams.handoff import Handoff
from livetok.streams.types import AudioCapture, SourceState, SourceStats, VideoCapture

__all__ = ["AudioCapture", "Handoff", "SourceState", "SourceStats", "VideoCapture"]
