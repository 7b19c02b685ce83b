"""The MQTT bus: what the daemon's publisher and the consumer (``livetok.client``) share.

``topics`` (names, parsing, filters), ``meta`` (the retained per-source document), ``url``
(``mqtt[s]://[USER@]HOST[:PORT]``), ``secret`` (passwords that never print), ``tls``,
``properties`` (v5 content type and run id), ``connect`` (aiomqtt client options and error
translation). docs/bus.md describes the contract.
"""

from livetok.bus.meta import SourceMeta, StreamDescription, StreamMeta, new_run_id
from livetok.bus.secret import Secret, read_secret_file
from livetok.bus.topics import DEFAULT_PREFIX, TopicInfo, TopicKind, parse_topic
from livetok.bus.url import BrokerUrl, parse_broker_url

__all__ = [
    "DEFAULT_PREFIX", "BrokerUrl", "Secret", "SourceMeta", "StreamDescription", "StreamMeta", "TopicInfo",
    "TopicKind", "new_run_id", "parse_broker_url", "parse_topic", "read_secret_file",
]
