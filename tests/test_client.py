"""livetok.client against a real Mosquitto: decoding, continuity, reconnects through broker restarts
and network faults, shared subscriptions, MQTT 3.1.1, TLS, logins, the blocking iterator.

Every wait is bounded; assertions are on content and counts, never on timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from broker import BrokerOptions, Mosquitto, MosquittoFactory, make_certs
from busgen import VOCAB, TestPublisher, packet, publish, step
from netproxy import NetProxy

from livetok.bus.meta import new_run_id
from livetok.bus.topics import TopicKind
from livetok.client import Continuity, Message, Subscriber, TlsOptions, subscribe_blocking
from livetok.errors import BusError
from livetok.wire import Modality, Scale


async def take(sub: Subscriber, n: int, timeout_s: float = 20.0,
               until: Callable[[list[Message]], bool] | None = None) -> list[Message]:
    """Up to ``n`` messages (fewer if ``timeout_s`` passes first; the caller asserts the count)."""
    out: list[Message] = []

    async def go() -> None:
        async for msg in sub:
            out.append(msg)
            if len(out) >= n or (until is not None and until(out)):
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(go(), timeout_s)
    return out


def seqs(msgs: list[Message]) -> list[int | None]:
    return [m.seq for m in msgs]


def test_packets_and_steps_arrive_decoded_with_run_id_and_meta(mosquitto: Mosquitto) -> None:
    items = [step(0), step(1), packet(0), packet(1, modality=Modality.VIDEO, scale=Scale.COARSE)]

    async def main() -> None:
        async with Subscriber(mosquitto.url, ["livetok/+/+/+/+", "livetok/+/+/steps", "livetok/+/available"]) as sub:
            async with TestPublisher(mosquitto.url) as pub:
                await pub.send_meta()
                await pub.send_available("online")
                await pub.send_all(items)
                got = await take(sub, 5)
            assert [m.kind for m in got] == [TopicKind.AVAILABLE] + [TopicKind.STEPS] * 2 + [TopicKind.TOKENS] * 2
            assert got[0].text == "online" and sub.available == {"host1": "online"}
            assert [m.step for m in got[1:3]] == items[:2] and [m.packet for m in got[3:]] == items[2:]
            for m in got[1:]:
                assert m.run_id == pub.run_id and m.instance == "host1" and m.qos == 1
                assert m.received_mono_ns > 0 and m.received_unix_ns > 0
            assert got[1].group == "g0" and got[1].stream is not None and str(got[1].stream) == "host1/g0/steps"
            assert got[4].source == "cam0" and (got[4].modality, got[4].scale) == (Modality.VIDEO, Scale.COARSE)
            assert [m.continuity for m in got[1:]] == [Continuity.FIRST, Continuity.OK, Continuity.FIRST,
                                                       Continuity.FIRST]
            # meta came along (not yielded: the filters do not ask for it) and gives the vocabulary
            assert list(sub.meta) == [("host1", "cam0")] and sub.meta[("host1", "cam0")].run_id == pub.run_id
            vocab = sub.vocabulary(got[1].step.packets[0].codebook_id)  # type: ignore[union-attr]
            assert vocab == VOCAB and vocab.unflatten(vocab.flatten(items[0])).packets[0].codes.shape == (1, 4)
            s = sub.stats
            assert s.total.received == 4 and s.total.gaps == 0 and s.connects == 1 and s.connected

    asyncio.run(main())


def test_gaps_duplicates_and_a_daemon_restart_are_counted(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        async with Subscriber(mosquitto.url) as sub:
            async with TestPublisher(mosquitto.url, run_id="a" * 16) as pub:
                for seq in (0, 1, 3, 3, 4):  # 2 is missing, 3 comes twice
                    await pub.send(packet(seq))
                for seq in (0, 1):  # the daemon restarted: a new run starts at 0
                    await pub.send(packet(seq), run_id="b" * 16)
                got = await take(sub, 6)
            assert [(m.seq, m.continuity, m.missing) for m in got] == [
                (0, Continuity.FIRST, 0), (1, Continuity.OK, 0), (3, Continuity.GAP, 1), (4, Continuity.OK, 0),
                (0, Continuity.RESTART, 0), (1, Continuity.OK, 0)]
            assert got[-1].run_id == "b" * 16
            t = sub.stats.total
            assert (t.gaps, t.missing, t.duplicates, t.restarts) == (1, 1, 1, 1)

    asyncio.run(main())


@pytest.mark.slow
def test_a_persistent_session_loses_nothing_across_a_broker_restart(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(BrokerOptions(persistence=True))

    async def main() -> None:
        # a backoff of 0.5..1 s keeps the subscriber away while the second half is published
        async with Subscriber(broker.url, client_id="model-1", persistent=True, qos=1, keepalive_s=2,
                              backoff_initial_s=1.0, backoff_max_s=1.0) as sub:
            collected: list[Message] = []
            reader = asyncio.create_task(_collect(sub, collected, 60))
            await asyncio.to_thread(publish, broker.url, [packet(s) for s in range(30)])
            await _until(lambda: len(collected) >= 30)
            await asyncio.to_thread(broker.restart)
            # published while the subscriber waits to reconnect: queued in its session
            await asyncio.to_thread(publish, broker.url, [packet(s) for s in range(30, 60)], run_id=collected[0].run_id)
            await asyncio.wait_for(reader, 30)
            assert seqs(collected) == list(range(60))
            s = sub.stats
            assert (s.total.gaps, s.total.missing, s.total.restarts) == (0, 0, 0)
            assert s.disconnects >= 1 and s.reconnects >= 1 and s.connected

    asyncio.run(main())


@pytest.mark.slow
def test_a_persistent_consumer_back_to_a_large_backlog_resumes_at_once(mosquitto_factory: MosquittoFactory) -> None:
    """Back after an absence, the broker sends a resumed session's backlog before the SUBACK of any
    new subscribe: the subscriber renews its subscriptions without waiting for that SUBACK.
    Before: the subscribe timed out behind the backlog on every attempt and the consumer gave up
    (bench_bus's soak: a consumer stalled two minutes could not come back)."""
    broker = mosquitto_factory(BrokerOptions(max_queued_messages=100_000))
    n = 30_000

    async def main() -> None:
        async with Subscriber(broker.url, client_id="model-back", persistent=True):
            pass  # gone: the broker keeps the session and queues for it
        async with TestPublisher(broker.url, max_inflight_messages=500) as pub:
            await pub.send_meta()
            await pub.send_many([packet(s) for s in range(n)])
        async with Subscriber(broker.url, client_id="model-back", persistent=True, timeout_s=1.0,
                              connect_attempts=1, buffer_messages=n) as sub:
            got = await take(sub, n, timeout_s=120)
            assert seqs(got) == list(range(n))
            s = sub.stats
            assert s.resumed == 1 and s.connects == 1 and s.total.gaps == 0 and s.dropped == 0
            assert s.last_error is None

    asyncio.run(main())


def test_a_consumer_that_falls_behind_makes_the_broker_hold_qos1_messages(mosquitto: Mosquitto) -> None:
    """Acks go out as messages are taken and the broker may not have more unacknowledged ones out
    than the buffer holds: 300 messages through a 5-message buffer (Mosquitto alone would send 20), none dropped."""
    async def main() -> None:
        async with Subscriber(mosquitto.url, buffer_messages=5) as sub:
            await asyncio.to_thread(publish, mosquitto.url, [packet(s) for s in range(300)])
            assert sub.stats.buffered <= 5  # the rest waits at the broker
            got = await take(sub, 300)
            assert seqs(got) == list(range(300))
            assert sub.stats.dropped == 0 and sub.stats.total.gaps == 0

    asyncio.run(main())


@pytest.mark.slow
def test_cuts_and_a_black_hole_are_survived_with_counters_kept(mosquitto: Mosquitto) -> None:
    with NetProxy(mosquitto.port) as proxy:
        async def main() -> None:
            async with Subscriber(proxy.url, client_id="model-2", persistent=True, keepalive_s=1,
                                  backoff_initial_s=0.1, backoff_max_s=0.5) as sub:
                async with TestPublisher(mosquitto.url, run_id=new_run_id()) as pub:
                    collected: list[Message] = []
                    reader = asyncio.create_task(_collect(sub, collected, 40))
                    for s in range(10):
                        await pub.send(packet(s))
                    await _until(lambda: len(collected) >= 10)
                    await asyncio.to_thread(proxy.cut)  # a dropped connection
                    for s in range(10, 20):
                        await pub.send(packet(s))
                    await _until(lambda: len(collected) >= 20)
                    await asyncio.to_thread(proxy.blackhole)  # silence, no FIN: only keepalive can tell
                    for s in range(20, 30):
                        await pub.send(packet(s))
                    await _until(lambda: sub.stats.disconnects >= 2)
                    await asyncio.to_thread(proxy.restore)
                    for s in range(30, 40):
                        await pub.send(packet(s))
                    await asyncio.wait_for(reader, 30)
                assert seqs(collected) == list(range(40))
                st = sub.stats
                assert (st.total.gaps, st.total.missing) == (0, 0) and st.total.received >= 40
                assert st.disconnects >= 2 and st.reconnects >= 2 and st.connected

        asyncio.run(main())


def test_a_shared_subscription_delivers_each_message_once_between_consumers(mosquitto: Mosquitto) -> None:
    n = 200

    async def main() -> None:
        async with Subscriber(mosquitto.url, share="models") as a, Subscriber(mosquitto.url, share="models") as b:
            assert a.subscriptions[:2] == ["$share/models/livetok/+/+/+/+", "$share/models/livetok/+/+/steps"]
            got_a: list[Message] = []
            got_b: list[Message] = []
            ta = asyncio.create_task(_collect(a, got_a, n))
            tb = asyncio.create_task(_collect(b, got_b, n))
            await asyncio.to_thread(publish, mosquitto.url, [packet(s) for s in range(n)])
            await _until(lambda: len(got_a) + len(got_b) >= n)
            ta.cancel()
            tb.cancel()
            sa, sb = set(seqs(got_a)), set(seqs(got_b))
            assert len(got_a) + len(got_b) == n and sa | sb == set(range(n)) and not sa & sb
            assert got_a and got_b  # Mosquitto shares round-robin
            # each consumer sees the other's share as gaps: together they account for every message
            assert a.stats.total.received + b.stats.total.received == n

    asyncio.run(main())


def test_mqtt_3_1_1_takes_the_run_id_from_meta(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        async with Subscriber(mosquitto.url, protocol="3.1.1") as sub:
            assert "livetok/+/+/meta" in sub.subscriptions
            async with TestPublisher(mosquitto.url, run_id="1" * 16, v5=False) as pub:
                await pub.send_meta()
                for s in range(3):
                    await pub.send(packet(s))
                first = await take(sub, 3)
            async with TestPublisher(mosquitto.url, run_id="2" * 16, v5=False) as pub:  # the daemon restarted
                await pub.send_meta()
                for s in range(3):
                    await pub.send(packet(s))
                second = await take(sub, 3)
        assert [m.run_id for m in first] == ["1" * 16] * 3 and [m.run_id for m in second] == ["2" * 16] * 3
        assert [m.continuity for m in second] == [Continuity.RESTART, Continuity.OK, Continuity.OK]
        t = sub.stats.total
        assert (t.restarts, t.duplicates, t.gaps) == (1, 0, 0)

    asyncio.run(main())


def test_tls_with_the_generated_ca_and_one_clear_line_otherwise(mosquitto_factory: MosquittoFactory,
                                                                 tmp_path: Path) -> None:
    broker = mosquitto_factory(BrokerOptions(tls=True))
    assert broker.certs is not None

    async def main() -> None:
        async with Subscriber(broker.tls_url, tls=TlsOptions(ca_file=broker.certs.ca)) as sub:  # type: ignore[union-attr]
            await asyncio.to_thread(publish, broker.url, [packet(7)])
            got = await take(sub, 1)
            assert seqs(got) == [7]
        rogue = make_certs(tmp_path / "rogue")
        with pytest.raises(BusError) as info:
            async with Subscriber(broker.tls_url, tls=TlsOptions(ca_file=rogue.ca), connect_attempts=3):
                pass
        assert not info.value.retryable and "certificate" in str(info.value) and len(str(info.value).splitlines()) == 1

    asyncio.run(main())


def test_a_hostname_mismatch_is_refused(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(BrokerOptions(tls=True, san=("DNS:broker.example",)))

    async def main() -> None:
        with pytest.raises(BusError) as info:
            async with Subscriber(broker.tls_url, tls=TlsOptions(ca_file=broker.certs.ca)):  # type: ignore[union-attr]
                pass
        assert not info.value.retryable and "127.0.0.1" in str(info.value)

    asyncio.run(main())


def test_logins(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    broker = mosquitto_factory(BrokerOptions(users={"model": "right-pw", "daemon": "d-pw"},
                                             acl={"model": ["read livetok/#"], "daemon": ["readwrite livetok/#"]}))

    async def main() -> None:
        with pytest.raises(BusError) as info:
            async with Subscriber(broker.url_for("model"), password="wrong-pw"):
                pass
        text = str(info.value)
        assert not info.value.retryable and "not authorized" in text and "password" in text
        assert "wrong-pw" not in text and len(text.splitlines()) == 1
        async with Subscriber(broker.url_for("model"), password_file=broker.password_file("model", tmp_path)) as sub:
            await asyncio.to_thread(publish, broker.url, [packet(1)], username="daemon", password="d-pw")
            assert seqs(await take(sub, 1)) == [1]
            assert "right-pw" not in repr(sub)
        with pytest.raises(BusError, match="refused the connection"):
            async with Subscriber(broker.url):  # anonymous: not allowed here
                pass

    asyncio.run(main())


def test_an_unreachable_broker_is_a_bounded_retry_then_one_line() -> None:
    from broker import free_port

    async def main() -> None:
        with pytest.raises(BusError) as info:
            async with Subscriber(f"mqtt://127.0.0.1:{free_port()}", connect_attempts=2, backoff_initial_s=0.05):
                pass
        assert info.value.retryable and "gave up after 2 attempts" in str(info.value)

    asyncio.run(main())


def test_the_blocking_iterator(mosquitto: Mosquitto) -> None:
    with subscribe_blocking(mosquitto.url, "livetok/+/+/steps", max_pending=4) as sub:
        sender = threading.Thread(target=publish, args=(mosquitto.url, [step(s) for s in range(20)]))
        sender.start()
        got = []
        for msg in sub:
            got.append(msg)
            if len(got) == 20:
                break
        sender.join(20)
        assert seqs(got) == list(range(20)) and all(m.step is not None for m in got)
        s = sub.stats()
        assert s.total.received == 20 and s.dropped == 0 and s.connected
        assert sub.get(timeout_s=0.05) is None  # nothing more: a bounded wait, then None
    with pytest.raises(BusError, match="gave up"):
        subscribe_blocking("mqtt://127.0.0.1:1", connect_attempts=2, backoff_initial_s=0.05).start()


# -- helpers ---------------------------------------------------------------------------------------


async def _collect(sub: Subscriber, into: list[Message], n: int) -> None:
    async for msg in sub:
        into.append(msg)
        if len(into) >= n:
            return


async def _until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Wait (bounded) for ``predicate``; on timeout, go on and let the test's assertions say what is missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate() and loop.time() < deadline:
        await asyncio.sleep(0.02)
