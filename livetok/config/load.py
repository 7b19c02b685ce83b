"""Reading config.yaml: YAML with the line of every key, and the checks that make reading it safe.

A bad key or value is reported as ``FILE:LINE: key.path: problem`` (ConfigError, exit 78) before
anything starts. The file is refused before parsing when it is not a regular file of sane size, not
UTF-8, nested absurdly deep, or holds control characters; keys given twice are refused too.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from livetok.config.root import LivetokConfig, line_of
from livetok.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few kB; anything this large is something else


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key, by path."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[tuple[str | int, ...], int] = {}

    def construct_document(self, node: yaml.Node) -> Any:
        self._walk(node, (), set())
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's constructors raise plain Python errors for explicitly tagged values they cannot
        # read (``!!int abc``, ``!!bool maybe``, an integer of 5000 digits): make them YAML errors
        # with the value's line.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, LookupError, AttributeError, TypeError, OverflowError) as err:
            tag = str(node.tag).rsplit(":", 1)[-1]
            value = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
            shown = repr(value if len(value) <= 40 else value[:40] + "...")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown} as !!{tag}", node.start_mark) from err

    def _walk(self, node: yaml.Node, path: tuple[str | int, ...], seen: set[int]) -> None:
        # An alias is the same node object again: walk each node once, so that aliases that refer
        # to themselves, or a "billion laughs" of nested aliases, cost nothing.
        if id(node) in seen:
            return
        seen.add(id(node))
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                sub = (*path, str(key.value))
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    # PyYAML keeps the last of two equal keys: a second mqtt: section would silently
                    # replace the first.
                    if sub[-1] in first:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"{'.'.join(str(x) for x in sub)} is given twice (also on line "
                            f"{first[str(sub[-1])]})", key.start_mark)
                    first[str(sub[-1])] = key.start_mark.line + 1
                self._walk(value, sub, seen)
                self.lines[sub] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i), seen)



# Names, paths, URLs, FFmpeg graphs and options all end up as C strings or in protocols: a NUL cuts
# them short, other control characters are typing accidents. Tabs and line breaks (a block scalar)
# are text. Written as escapes ("\0", "\x07") or through !!binary: the reader refuses raw ones.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _find_control(data: Any) -> tuple[tuple[str | int, ...], str] | None:
    """The key path of the first key or value holding a control character, and that character.
    Each container is visited once: aliases make the data a graph, maybe with cycles."""
    seen: set[int] = set()
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            m = _CONTROL.search(value)
            if m is not None:
                return path, m.group()
        elif isinstance(value, bytes):
            mb = _CONTROL_BYTES.search(value)
            if mb is not None:
                return path, mb.group().decode("latin-1")
        elif isinstance(value, dict | list) and id(value) not in seen:
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in reversed(list(items)):
                key = k if isinstance(k, int) and isinstance(value, list) else str(k)
                stack.append((v, (*path, key)))
                if isinstance(k, str | bytes):
                    stack.append((k, (*path, key)))
    return None


MAX_FLOW_DEPTH = 64  # [ and { nested deeper than this: no configuration needs it


def _check_flow_depth(p: Path, text: str) -> None:
    """Refuse brackets nested absurdly deep before PyYAML sees them: its scanner takes time growing
    with the square of the depth (5000 levels: 1 s; a 1 MiB file of "[": hours). Brackets are
    counted without regard to quoting, which only ever overcounts by unbalanced brackets in strings."""
    if text.count("[") + text.count("{") <= MAX_FLOW_DEPTH:
        return
    depth = 0
    for i, c in enumerate(text):
        if c in "[{":
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                raise ConfigError(f"{p}:{text.count(chr(10), 0, i) + 1}: not valid YAML (brackets nested deeper than "
                                  f"{MAX_FLOW_DEPTH} levels)")
        elif c in "]}" and depth:
            depth -= 1


def _read_text(p: Path) -> str:
    """The file's text. Opened without blocking and checked to be a regular file of sane size first:
    a FIFO would block ``check-config`` forever, /dev/zero would fill the memory."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as err:  # ValueError: a NUL in the path
        raise ConfigError(f"{p}: cannot read config ({getattr(err, 'strerror', None) or err})") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket")
            raise ConfigError(f"{p}: cannot read config (it is {kind}, not a regular file)")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: cannot read config (larger than {MAX_CONFIG_BYTES >> 20} MiB: not a "
                              "configuration file)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config ({err.strerror or err})") from err
    finally:
        os.close(fd)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: cannot read config (not UTF-8 text: {err.reason} at byte {err.start})") from err


def load_config(path: str | Path | None) -> LivetokConfig:
    """Read and validate a config file; ``None`` gives the embedded defaults."""
    if path is None:
        return LivetokConfig()
    p = Path(path)
    text = _read_text(p)
    _check_flow_depth(p, text)
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)  # the reader refuses control characters here already
        data = loader.get_single_data()
        if data is None:  # an empty file (or only comments): the defaults; [] or 0 or "" are not mappings
            data = {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        problem = getattr(err, "problem", None) or err
        if isinstance(err, yaml.reader.ReaderError):  # a control character: its own message, one line
            where = f"{p}:{text.count(chr(10), 0, err.position) + 1}"
            ch = err.character
            problem = f"character {f'U+{ch:04X}' if isinstance(ch, int) else repr(ch)} is not allowed in YAML"
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(problem).split())})") from err
    except RecursionError:
        raise ConfigError(f"{p}: not valid YAML (nested too deeply)") from None
    finally:
        if loader is not None:
            loader.dispose()
    control = _find_control(data)
    if control is not None:
        at, char = control
        key = ".".join(str(x) for x in at) or "(top level)"
        what = "a NUL character" if char == "\0" else f"the control character U+{ord(char):04X}"
        raise ConfigError(f"{p}:{line_of(loader.lines, at)}: {key}: contains {what}")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}:1: the config must be a mapping of sections, got {type(data).__name__}")
    if data.get("tokenizers") is not None and "tokenizer" in data:
        raise ConfigError(f"{p}:{loader.lines.get(('tokenizers',), 1)}: tokenizers: give the tokenizer: section (line "
                          f"{loader.lines.get(('tokenizer',), 1)}) or the tokenizers: list, not both")
    try:
        cfg = LivetokConfig.model_validate(data)
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply") from None
    except ValidationError as err:
        first = err.errors()[0]
        loc = _yaml_path(loader.lines, tuple(first["loc"]))
        line = line_of(loader.lines, loc)
        key = ".".join(str(x) for x in loc) or "(top level)"
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        loc, msg = _key_in_message(loc, msg)
        line = line_of(loader.lines, loc)
        key = ".".join(str(x) for x in loc) or "(top level)"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{p}:{line}: {key}: {msg}{more}") from err
    cfg._path, cfg._lines = str(p), dict(loader.lines)
    return cfg


_KEY_FIRST = re.compile(r"([A-Za-z_]+(?:\.[A-Za-z0-9_]+)+): ")


def _key_in_message(loc: tuple[str | int, ...], msg: str) -> tuple[tuple[str | int, ...], str]:
    """A check over a whole list names the deeper key it found wrong first in its message
    (``sources.2.tokenizers: ...``): that key, when it lies under ``loc``, is the one to report."""
    m = _KEY_FIRST.match(msg)
    if m is None:
        return loc, msg
    path = tuple(int(p) if p.isdigit() else p for p in m.group(1).split("."))
    if path[: len(loc)] != loc:
        return loc, msg
    return path, msg[m.end():]


def _yaml_path(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Pydantic's error location as a path in the YAML: the discriminator tags it inserts for
    ``kind`` unions (``sources.1.stream.url``) are not keys of the document, so they are dropped
    while the rest of the path still matches."""
    path: tuple[str | int, ...] = ()
    for i, el in enumerate(loc):
        if (*path, el) in lines or i == len(loc) - 1 or (*path, el, loc[i + 1]) in lines:
            path = (*path, el)
    return path
