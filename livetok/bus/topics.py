"""MQTT topic names of the livetok bus: build them, parse them, and make wildcard filters.

The topics (docs/bus.md), with ``prefix`` one or more levels (default ``livetok``) and every
other part a *name* (``[A-Za-z0-9_.-]{1,64}``, so never ``+``, ``#`` or ``/``):

    {prefix}/{instance}/available                      retained "online" | "stopped" | "offline"
    {prefix}/{instance}/{source}/{modality}/{stream}   one token packet per message (wire kind 0)
    {prefix}/{instance}/{group}/steps                  one aligned step per message (wire kind 1)
    {prefix}/{instance}/{source}/meta                  retained JSON (livetok.bus.meta)
    {prefix}/{instance}/stats                          JSON

``{stream}`` is the stream's name: ``fine`` / ``coarse`` for the built-in scales, a plug-in
tokenizer's stream name otherwise (never ``steps``, ``meta``, ``available`` or ``stats``). The last
level alone says which kind a topic is (a stream after ``audio``/``video``, ``steps``, ``meta``,
``available``, ``stats``), so a topic parses from its end whatever the prefix, and a source or group
may be called ``meta`` or ``steps`` without ambiguity.

Bad names raise :class:`~livetok.errors.ConfigError` (they come from configuration or a command
line); :func:`parse_topic` returns None for a topic that is not a livetok topic.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from livetok.errors import ConfigError
from livetok.wire import Modality, Scale

DEFAULT_PREFIX = "livetok"
NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
_NAME = re.compile(NAME_PATTERN + r"\Z")
_MODALITY = {m.name.lower(): m for m in Modality}
_SCALE = {s.name.lower(): s for s in Scale}
SHARE_PREFIX = "$share/"
MAX_TOPIC_BYTES = 65535  # MQTT strings carry a u16 length


class TopicKind(enum.Enum):
    """What a livetok topic carries; the value is the topic's last level (``tokens``: a scale)."""

    TOKENS = "tokens"
    STEPS = "steps"
    META = "meta"
    AVAILABLE = "available"
    STATS = "stats"


@dataclass(frozen=True)
class TopicInfo:
    """A parsed livetok topic. ``source`` is set for TOKENS and META, ``group`` for STEPS,
    ``modality`` for TOKENS only, with ``scale`` (a built-in scale) or ``stream`` (a named stream)."""

    kind: TopicKind
    prefix: str
    instance: str
    source: str | None = None
    group: str | None = None
    modality: Modality | None = None
    scale: Scale | None = None
    stream: str | None = None

    @property
    def stream_name(self) -> str | None:
        """The stream's name either way: "fine" / "coarse" or the named stream's."""
        return self.stream if self.scale is None else self.scale.name.lower()


def is_name(value: object) -> bool:
    """True when ``value`` is a valid instance, source or group name."""
    return isinstance(value, str) and _NAME.match(value) is not None


def check_name(value: object, what: str = "name") -> str:
    """``value`` when it is a valid name, else ConfigError saying why (``what``: e.g. "source")."""
    if not is_name(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid bus name: use 1 to 64 of the characters A-Z a-z 0-9 _ . - "
            "(no '/', '+', '#' or spaces)"
        )
    return str(value)


def check_prefix(prefix: object) -> str:
    """A topic prefix: one or more names joined by '/' (``livetok``, ``plant1/livetok``)."""
    if not isinstance(prefix, str) or not prefix or not all(is_name(p) for p in prefix.split("/")):
        raise ConfigError(
            f"topic prefix {prefix!r} is not valid: use one or more names (A-Z a-z 0-9 _ . -, 1 to 64 "
            "characters) joined by '/'"
        )
    return prefix


def _modality_name(modality: Modality | str) -> str:
    name = modality.name.lower() if isinstance(modality, Modality) else str(modality)
    if name not in _MODALITY:
        raise ConfigError(f"modality {modality!r} is not audio or video")
    return name


TOPIC_WORDS = frozenset({"steps", "meta", "available", "stats"})  # last levels of the other topics


def _scale_name(scale: Scale | str) -> str:
    """A stream's topic level: a scale's name, or a named stream's name."""
    name = scale.name.lower() if isinstance(scale, Scale) else str(scale)
    if name in _SCALE:
        return name
    if name in TOPIC_WORDS or not is_name(name):
        raise ConfigError(f"stream {scale!r} is not fine, coarse or a stream name (A-Z a-z 0-9 _ . -, not "
                          "steps, meta, available or stats)")
    return name


def token_topic(prefix: str, instance: str, source: str, modality: Modality | str, scale: Scale | str) -> str:
    """``{prefix}/{instance}/{source}/{modality}/{scale}``: one token packet per message."""
    return "/".join((check_prefix(prefix), check_name(instance, "instance"), check_name(source, "source"),
                     _modality_name(modality), _scale_name(scale)))


def steps_topic(prefix: str, instance: str, group: str) -> str:
    """``{prefix}/{instance}/{group}/steps``: one aligned step per message."""
    return f"{check_prefix(prefix)}/{check_name(instance, 'instance')}/{check_name(group, 'group')}/steps"


def meta_topic(prefix: str, instance: str, source: str) -> str:
    """``{prefix}/{instance}/{source}/meta``: the source's retained meta JSON."""
    return f"{check_prefix(prefix)}/{check_name(instance, 'instance')}/{check_name(source, 'source')}/meta"


def available_topic(prefix: str, instance: str) -> str:
    """``{prefix}/{instance}/available``: retained ``online`` / ``stopped`` / ``offline`` (the Last Will)."""
    return f"{check_prefix(prefix)}/{check_name(instance, 'instance')}/available"


def stats_topic(prefix: str, instance: str) -> str:
    """``{prefix}/{instance}/stats``: the daemon's periodic stats JSON."""
    return f"{check_prefix(prefix)}/{check_name(instance, 'instance')}/stats"


def parse_topic(topic: str, prefix: str | None = None) -> TopicInfo | None:
    """The livetok topic ``topic`` is, or None when it is not one (or not under ``prefix``).

    With ``prefix`` None any prefix of one or more valid names is accepted.
    """
    levels = topic.split("/")
    n = len(levels)
    last = levels[-1]
    info: TopicInfo | None = None
    if last not in TOPIC_WORDS and n >= 5 and levels[-2] in _MODALITY and is_name(last):
        head, (instance, source) = levels[:-4], levels[-4:-2]
        if is_name(instance) and is_name(source):
            info = TopicInfo(TopicKind.TOKENS, "/".join(head), instance, source=source,
                             modality=_MODALITY[levels[-2]], scale=_SCALE.get(last),
                             stream=None if last in _SCALE else last)
    elif last in ("steps", "meta") and n >= 4:
        head, (instance, name) = levels[:-3], levels[-3:-1]
        if is_name(instance) and is_name(name):
            if last == "steps":
                info = TopicInfo(TopicKind.STEPS, "/".join(head), instance, group=name)
            else:
                info = TopicInfo(TopicKind.META, "/".join(head), instance, source=name)
    elif last in ("available", "stats") and n >= 3:
        head, instance = levels[:-2], levels[-2]
        if is_name(instance):
            info = TopicInfo(TopicKind(last), "/".join(head), instance)
    if info is None or not all(is_name(p) for p in info.prefix.split("/")):
        return None
    if prefix is not None and info.prefix != prefix:
        return None
    return info


# -- wildcard filters ------------------------------------------------------------------------------


def _level(value: str | None, what: str) -> str:
    return "+" if value is None or value == "+" else check_name(value, what)


def tokens_filter(prefix: str = DEFAULT_PREFIX, instance: str | None = None, source: str | None = None,
                  modality: Modality | str | None = None, scale: Scale | str | None = None) -> str:
    """Token topics; None (or "+") for a part means any: ``tokens_filter()`` = ``livetok/+/+/+/+``."""
    mod = "+" if modality is None or modality == "+" else _modality_name(modality)
    sc = "+" if scale is None or scale == "+" else _scale_name(scale)
    return f"{check_prefix(prefix)}/{_level(instance, 'instance')}/{_level(source, 'source')}/{mod}/{sc}"


def steps_filter(prefix: str = DEFAULT_PREFIX, instance: str | None = None, group: str | None = None) -> str:
    """Step topics: ``livetok/+/+/steps`` by default."""
    return f"{check_prefix(prefix)}/{_level(instance, 'instance')}/{_level(group, 'group')}/steps"


def meta_filter(prefix: str = DEFAULT_PREFIX, instance: str | None = None, source: str | None = None) -> str:
    """Meta topics: ``livetok/+/+/meta`` by default."""
    return f"{check_prefix(prefix)}/{_level(instance, 'instance')}/{_level(source, 'source')}/meta"


def available_filter(prefix: str = DEFAULT_PREFIX, instance: str | None = None) -> str:
    """Availability topics: ``livetok/+/available`` by default."""
    return f"{check_prefix(prefix)}/{_level(instance, 'instance')}/available"


def stats_filter(prefix: str = DEFAULT_PREFIX, instance: str | None = None) -> str:
    """Stats topics: ``livetok/+/stats`` by default."""
    return f"{check_prefix(prefix)}/{_level(instance, 'instance')}/stats"


def data_filters(prefix: str = DEFAULT_PREFIX, instance: str | None = None) -> list[str]:
    """Every token and step topic of an instance (all instances by default): the data a model wants."""
    return [tokens_filter(prefix, instance), steps_filter(prefix, instance)]


def instance_filter(prefix: str = DEFAULT_PREFIX, instance: str | None = None) -> str:
    """Everything an instance publishes (all instances by default): ``livetok/+/#``."""
    return f"{check_prefix(prefix)}/{_level(instance, 'instance')}/#"


def shared(group: str, topic_filter: str) -> str:
    """The MQTT v5 shared subscription ``$share/{group}/{filter}``: each message goes to one member."""
    return f"{SHARE_PREFIX}{check_name(group, 'share group')}/{check_filter(topic_filter)}"


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """``("group", "filter")`` for ``$share/group/filter``, ``(None, filter)`` for a plain filter."""
    if topic_filter.startswith(SHARE_PREFIX):
        group, sep, rest = topic_filter[len(SHARE_PREFIX):].partition("/")
        if not sep or not rest:
            raise ConfigError(f"shared subscription {topic_filter!r} must be $share/GROUP/FILTER")
        return group, rest
    return None, topic_filter


def check_filter(topic_filter: object) -> str:
    """``topic_filter`` when it is a valid MQTT filter (``$share/GROUP/...`` allowed), else ConfigError.

    Rules: not empty, at most 65535 UTF-8 bytes, no NUL; ``+`` and ``#`` only as a whole level,
    ``#`` only last; a share group is a name.
    """
    if not isinstance(topic_filter, str) or not topic_filter:
        raise ConfigError(f"topic filter {topic_filter!r} is empty")
    group, plain = split_shared(topic_filter)
    if group is not None:
        check_name(group, "share group")
    why = ""
    if "\0" in plain:
        why = "it contains a NUL character"
    elif len(topic_filter.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        why = f"it is longer than {MAX_TOPIC_BYTES} bytes"
    else:
        levels = plain.split("/")
        for i, level in enumerate(levels):
            if "#" in level and (level != "#" or i != len(levels) - 1):
                why = "'#' must be a whole level and the last one"
                break
            if "+" in level and level != "+":
                why = "'+' must be a whole level"
                break
    if why:
        raise ConfigError(f"bad topic filter {topic_filter!r}: {why}")
    return topic_filter


def filter_matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` (a topic name, no wildcards) matches ``topic_filter`` (``$share/G/`` ignored).

    As in MQTT, a filter starting with a wildcard does not match topics starting with ``$``.
    """
    _, plain = split_shared(topic_filter)
    f_levels, t_levels = plain.split("/"), topic.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for i, f in enumerate(f_levels):
        if f == "#":
            return True  # also matches the parent level itself ("a/#" matches "a")
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


def filter_covers(outer: str, inner: str) -> bool:
    """True when every topic ``inner`` matches is matched by ``outer`` (both plain filters)."""
    _, outer = split_shared(outer)
    _, inner = split_shared(inner)
    o_levels, i_levels = outer.split("/"), inner.split("/")
    for k, o in enumerate(o_levels):
        if o == "#":
            return True
        if k >= len(i_levels):
            return False
        i = i_levels[k]
        if i == "#" or (o != "+" and (i == "+" or o != i)):
            return False
    return len(o_levels) == len(i_levels)


def companion_filters(topic_filter: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Meta and availability filters for the instances ``topic_filter`` can match (for a consumer
    that wants each source's meta beside the data): the instance level is taken from the filter
    when it starts with ``prefix``, else any instance. Never shared: retained messages are not
    sent to shared subscriptions.
    """
    _, plain = split_shared(topic_filter)
    head = check_prefix(prefix).split("/")
    levels = plain.split("/")
    instance = None
    if len(levels) > len(head) and levels[:len(head)] == head:
        level = levels[len(head)]
        instance = level if is_name(level) else None
    return [meta_filter(prefix, instance), available_filter(prefix, instance)]
