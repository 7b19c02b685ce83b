"""MQTT v5 properties of token and step messages: the content type and the run id.

MQTT 3.1.1 has no properties; a 3.1.1 consumer takes the run id from the retained meta of the
message's instance (``livetok.bus.meta``).
"""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

CONTENT_TYPE = "application/x-livetok-packet; version=1"
RUN_ID_PROPERTY = "run_id"  # a user property: the daemon run's id, 16 lower-case hex digits
META_CONTENT_TYPE = "application/json"


def packet_properties(run_id: str, message_expiry_s: int | None = None) -> Properties:
    """PUBLISH properties for a token or step message of run ``run_id``."""
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = CONTENT_TYPE
    props.UserProperty = [(RUN_ID_PROPERTY, run_id)]
    if message_expiry_s is not None:
        props.MessageExpiryInterval = message_expiry_s
    return props


def run_id_of(properties: Properties | None) -> str | None:
    """The ``run_id`` user property of a received message, or None (3.1.1, or not sent)."""
    if properties is None:
        return None
    for key, value in getattr(properties, "UserProperty", None) or ():
        if key == RUN_ID_PROPERTY:
            return str(value)
    return None


def content_type_of(properties: Properties | None) -> str | None:
    if properties is None:
        return None
    value = getattr(properties, "ContentType", None)
    return None if value is None else str(value)
