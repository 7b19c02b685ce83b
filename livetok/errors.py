"""The one exception tree of livetok.

Every error the package raises on purpose derives from :class:`LivetokError`; third-party
errors (PyAV, safetensors, OSError) are translated at the boundary with ``raise ... from err``
so that the command line can print one clear line and exit non-zero.

    LivetokError
    ├── ConfigError        bad configuration (key, value, line)          exit 78
    ├── MediaError         a media file or stream cannot be opened/decoded exit 66
    ├── CodebookError      missing, corrupt or mismatched codebooks      exit 65
    │   └── ModelError     a tokenizer's model file is missing, corrupt, foreign, or breaks its
    │                      declared contract at the load probe (shapes, dtype, rate, NaN)   exit 65
    ├── ModelRunError      a tokenizer's model raised or returned bad output while running  exit 65
    │                      (``tokenizer``: whose; the caller counts it per tokenizer and goes on)
    ├── DecodeError        bad bytes in a wire packet or a .ltk file     exit 65
    ├── OutputError        an output file cannot be created or written   exit 73
    └── BusError           the MQTT broker is unreachable, refuses us, or was lost   exit 69
                           (``retryable``: whether trying again later can help)

Anything else that reaches the command line is a bug (exit 1). The CLI's exit codes: 0 success,
1 an unexpected error, 65 bad data (token file, codebooks), 66 unreadable input media, 73 an output
that cannot be created or written, 69 an MQTT broker unreachable or refusing us, 78 bad configuration,
130 interrupted (SIGINT), 141 broken pipe.
"""

from __future__ import annotations


class LivetokError(Exception):
    """Base of every error livetok raises on purpose; ``exit_code`` is the CLI's exit status."""

    exit_code = 1


class ConfigError(LivetokError):
    """The configuration is invalid: the message names the key and, when known, its line."""

    exit_code = 78  # EX_CONFIG


class MediaError(LivetokError):
    """A media input cannot be opened or decoded: the message names the file or URL."""

    exit_code = 66  # EX_NOINPUT


class CodebookError(LivetokError):
    """Codebooks are missing, corrupt, or do not match the configured front end."""

    exit_code = 65  # EX_DATAERR


class ModelError(CodebookError):
    """A tokenizer's model file (TorchScript, ONNX) cannot be used: missing, unreadable, not a model of
    its kind, or its inputs and outputs do not match the declared contract when probed at load. The
    message names the tokenizer and the key (``model.path``, ``model.io.hop``, ...)."""


class ModelRunError(LivetokError):
    """A tokenizer's model raised, or returned non-finite, out-of-range or misshapen output, while
    running. Raised for one batch; ``tokenizer`` names whose model it was, so that the caller can
    count it per tokenizer, flag the affected streams and go on."""

    exit_code = 65  # EX_DATAERR

    def __init__(self, message: str, *, tokenizer: str) -> None:
        super().__init__(message)
        self.tokenizer = tokenizer


class DecodeError(LivetokError):
    """Bytes are not a valid wire-format packet or token file (see docs/wire-format.md)."""

    exit_code = 65  # EX_DATAERR


class OutputError(LivetokError):
    """An output file cannot be created or written: a missing or read-only directory, a directory
    or a non-directory in the way, a full disk. The message names the path and the reason."""

    exit_code = 73  # EX_CANTCREAT


class BusError(LivetokError):
    """The MQTT bus failed: the broker is unreachable, refused the login, TLS or a subscription, or was lost.

    ``retryable`` is True when trying again later can help (unreachable, connection lost, timed out)
    and False when it cannot until someone changes something (bad password, untrusted certificate,
    a refused subscription). Messages never contain a password.
    """

    exit_code = 69  # EX_UNAVAILABLE

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
