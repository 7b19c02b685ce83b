"""The consumer side of the bus, for model servers: light on purpose (numpy and aiomqtt; never
torch, torchaudio, PyAV or numba, directly or not).

    from livetok.client import Subscriber
    async with Subscriber("mqtt://broker:1883", "livetok/+/+/steps") as sub:
        async for msg in sub:
            ids = sub.vocabulary(msg.step.packets[0].codebook_id).flatten(msg.step)

``subscribe_blocking`` gives the same as a plain iterator; docs/bus.md has the contract.
"""

from livetok.bus.connect import Protocol
from livetok.bus.tls import TlsOptions
from livetok.bus.topics import TopicKind
from livetok.client.blocking import BlockingSubscriber, subscribe_blocking
from livetok.client.continuity import Continuity, StreamKey, StreamStats
from livetok.client.message import Message, SubscriberStats
from livetok.client.subscriber import Subscriber

__all__ = [
    "BlockingSubscriber", "Continuity", "Message", "Protocol", "StreamKey", "StreamStats", "Subscriber",
    "SubscriberStats", "TlsOptions", "TopicKind", "subscribe_blocking",
]
