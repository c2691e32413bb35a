"""``kafka``: topics through aiokafka (one producer and one consumer per resource).

aiokafka retries a lost broker quietly and for ever, which would hide an outage
from the connection state. So ``_listen`` probes the cluster (a metadata request)
whenever no record arrived for ``health_check_interval`` seconds; a failed probe
hands over to the supervisor in ``_base``, which closes both clients, backs off,
opens new ones and subscribes again: the consumer group is joined again by the
one new consumer (the old one is stopped first, so no member is duplicated).

Delivery is at least once: offsets are committed by aiokafka's auto-commit (or
as ``consumer_config`` says) and a consumer that restarts resumes from the
committed offset, so a record may be handled twice around a reconnect.

``subscribe(topic)`` returns once the topic's partitions are assigned and their
start offsets are known (bounded by ``timeout``), so a record produced after it
returns is received even with ``auto_offset_reset: latest``.

Reload hand-over (``_hand_over_from``). Without a consumer group the new
instance subscribes first and notes where it starts in every partition; the old
one delivers every record before those offsets and nothing from them on, so
each record is handed to user code once. In a consumer group only one member
may own a partition: the old consumer finishes the batch it is in, hands over
what it buffered, commits exactly what was handled and leaves the group; the
new consumer then joins and continues from the committed offsets. Kafka keeps
the records meanwhile, so nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field, field_validator

from xresource._optional import require
from xresource._transport.tls import tls_context
from xresource.backends.streams import _kafka_consumer
from xresource.backends.streams._base import ErrorClass, EventStreamResource
from xresource.backends.streams._codec import decode_payload, encode_payload
from xresource.backends.streams._errors import classify, kafka_errors
from xresource.backends.streams._message import Message
from xresource.backends.streams._runtime import RuntimeType, StreamRuntime
from xresource.errors import (
    XResourceError,
)
from xresource.resource import State
from xresource.secrets import OptionsMap, SecretText

log = logging.getLogger("xresource.streams.kafka")

_SERVER_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Set from the resource's own fields: writing them in *_config as well would be ambiguous.
_RESERVED = frozenset(
    {
        "loop",
        "bootstrap_servers",
        "group_id",
        "auto_offset_reset",
        "security_protocol",
        "ssl_context",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "key_serializer",
        "value_serializer",
        "key_deserializer",
        "value_deserializer",
    }
)


class _KafkaRuntime(StreamRuntime):
    __slots__ = ("consumer", "fetching", "producer", "progress", "stopping", "sub_changed")

    def __init__(self, resource: EventStreamResource) -> None:
        super().__init__(resource)
        self.producer: Any = None  # read on every produce
        self.consumer: Any = None
        self.sub_changed = asyncio.Event()
        self.progress = asyncio.Event()  # set after every batch handed to the pipeline
        self.fetching = False  # inside getmany(): cancelling there loses no record
        # Clients detached and being stopped: if that is cancelled (a disconnect during a
        # reconnect), the final close stops them, so no heartbeat or fetch task outlives us.
        self.stopping: list[Any] = []


class KafkaResource(EventStreamResource):
    """Kafka: ``subscribe``/``publish`` like every stream, plus ``produce`` and ``consume``."""

    install_extra: ClassVar[str | None] = "kafka"
    example_name: ClassVar[str | None] = "events"
    runtime_type: ClassVar[RuntimeType] = _KafkaRuntime

    type: Literal["kafka"] = "kafka"
    """The resource type; selects the backend."""
    bootstrap_servers: str | list[str] = Field(default="localhost:9092", examples=["localhost:9092"])
    """``host:port[,host:port...]`` or a list of ``host:port``."""
    consumer_group: str | None = Field(default=None, min_length=1, max_length=249)
    """Consumer group id: members share partitions and offsets are committed (none: every partition, no commits)."""
    auto_offset_reset: Literal["latest", "earliest"] = "latest"
    """Where a consumer without a committed offset starts."""
    producer_config: OptionsMap = Field(default_factory=dict)
    """Extra ``AIOKafkaProducer`` options (``acks``, ``linger_ms``, ``compression_type``, ...)."""
    consumer_config: OptionsMap = Field(default_factory=dict)
    """Extra ``AIOKafkaConsumer`` options (``session_timeout_ms``, ``enable_auto_commit``, ...)."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How to talk to the brokers; ``SSL``/``SASL_SSL`` encrypt."""
    ca_file: str | None = None
    """CA bundle that signs the brokers' certificates, for SSL (default: the system CAs)."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    """SASL mechanism for ``SASL_PLAINTEXT``/``SASL_SSL``."""
    username: str | None = None
    """SASL user name."""
    password: SecretText | None = None
    """SASL password, as a ``${env:...}`` or ``${file:...}`` reference."""
    timeout: float = Field(default=30.0, gt=0, le=3600)
    """Seconds allowed for one ``produce``, a health probe, and ``subscribe`` to get its partitions."""
    health_check_interval: float = Field(default=5.0, gt=0, le=3600)
    """Seconds without a record after which the cluster is probed, to notice an outage."""

    if TYPE_CHECKING:
        _rt: _KafkaRuntime | None

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str | list[str]) -> str | list[str]:
        servers = _split_servers(value)
        if not servers:
            raise ValueError("at least one host:port is needed")
        for server in servers:
            if not _SERVER_RE.match(server) or not 0 < int(server.rsplit(":", 1)[1]) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return value

    @field_validator("producer_config", "consumer_config")
    @classmethod
    def _check_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(value) & _RESERVED)
        if clash:
            raise ValueError(f"set {', '.join(clash)} with the resource's own fields, not here")
        return value

    def target(self) -> str:
        return ",".join(_split_servers(self.bootstrap_servers))

    def _label(self) -> str:
        return self.label

    def error_class_for(self, exc: BaseException) -> ErrorClass | None:
        return classify(exc, kafka_errors())

    def _check_subscription(self, channel: str, options: dict[str, Any]) -> None:
        if options:
            raise TypeError(f"{self.label}: subscribe() takes no options, got {', '.join(sorted(options))}")
        _check_topic(self.label, channel)

    # ---- Kafka-specific API ---------------------------------------------------------------

    async def produce(
        self,
        topic: str,
        value: Any,
        key: str | bytes | None = None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> dict[str, Any]:
        """Send one record and wait for the broker's acknowledgement (within ``timeout``).

        ``value`` is encoded like ``publish`` (bytes, str, else JSON); ``key`` as
        UTF-8. Returns ``{"topic", "partition", "offset", "timestamp"}``.
        """
        _check_topic(self._label, topic)  # the label only when it is needed: a per-message path
        rt = self._rt
        producer = rt.producer if rt is not None else None
        if producer is None:
            raise self._no_connection(f"produce to {topic!r}")
        payload = encode_payload(value)
        raw_key = key.encode("utf-8") if isinstance(key, str) else key
        # try/except rather than translate_errors(): this is the per-message path.
        # aiokafka bounds both steps by request_timeout_ms, which is our timeout.
        try:
            sent = await producer.send(
                topic, payload, key=raw_key, partition=partition, headers=list(headers) if headers else None
            )
            metadata = await sent
        except Exception as exc:
            raise self.translate(exc, f"produce to {topic!r}") from exc
        return {
            "topic": metadata.topic,
            "partition": metadata.partition,
            "offset": metadata.offset,
            "timestamp": metadata.timestamp,
        }

    async def publish(self, channel: str, data: Any) -> int | None:
        """Produce ``data`` to the topic ``channel`` (see ``produce``)."""
        await self.produce(channel, data)
        return None

    async def consume(self, topics: str | Sequence[str]) -> AsyncIterator[dict[str, Any]]:
        """Iterate over records of ``topics`` as dicts: topic, partition, offset, key, value, timestamp.

        Topics not subscribed yet are subscribed for the time of the iteration.
        Records survive reconnects and reloads like every subscription (at least once).
        """
        wanted = [topics] if isinstance(topics, str) else list(topics)
        if not wanted:
            raise ValueError(f"{self.label}: consume() needs at least one topic")
        for topic in wanted:
            _check_topic(self.label, topic)
        wanted_set = set(wanted)
        iterator = self.messages()  # registered before subscribing: nothing is missed
        added = [topic for topic in dict.fromkeys(wanted) if topic not in self._regs.subscriptions]
        try:
            for topic in added:
                await self.subscribe(topic)
            async for message in iterator:
                if message.channel in wanted_set:
                    meta = message.meta
                    yield {
                        "topic": message.channel,
                        "partition": meta.get("partition"),
                        "offset": meta.get("offset"),
                        "key": meta.get("key"),
                        "value": message.data,
                        "timestamp": meta.get("timestamp"),
                    }
        finally:
            await iterator.aclose()
            for topic in added:
                try:
                    await self.unsubscribe(topic)  # reaches the current instance after a reload
                except XResourceError as exc:
                    log.info("%s: unsubscribe %r after consume(): %s", self.label, topic, exc)

    async def list_collections_or_tables(self) -> list[str]:
        """Topic names known to the cluster."""
        self.require_ready()
        rt = self._rt
        assert rt is not None
        async with self.translate_errors("list topics"):
            return sorted(await rt.consumer.topics())

    # ---- hooks ----------------------------------------------------------------------------

    async def _open(self) -> None:
        aiokafka = require("aiokafka", "kafka", type_name=self.type)
        rt = self._rt
        assert rt is not None
        common: dict[str, Any] = {
            "bootstrap_servers": _split_servers(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            common["ssl_context"] = tls_context(ca_data=self.read_ca_file(self.ca_file))
        if self.security_protocol.startswith("SASL"):
            common["sasl_mechanism"] = self.sasl_mechanism
            common["sasl_plain_username"] = self.username
            common["sasl_plain_password"] = self.resolve(self.password) if self.password else None
        # The producer's request timeout bounds produce(); the consumer keeps
        # aiokafka's, which must outlast a group rebalance (a JoinGroup waits).
        producer_common = {**common, "request_timeout_ms": int(self.timeout * 1000)}
        producer_options = self._options("producer_config", aiokafka.AIOKafkaProducer, producer_common)
        consumer_options = self._options("consumer_config", aiokafka.AIOKafkaConsumer, common)
        consumer_options.update(group_id=self.consumer_group, auto_offset_reset=self.auto_offset_reset)
        rt.producer = aiokafka.AIOKafkaProducer(**producer_options)
        rt.consumer = aiokafka.AIOKafkaConsumer(**consumer_options)
        async with asyncio.timeout(self.timeout):  # a host that accepts and never answers
            await rt.producer.start()
            await rt.consumer.start()

    def _options(self, field_name: str, driver_class: Any, common: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = getattr(self, field_name)
        accepted = set(inspect.signature(driver_class.__init__).parameters) - {"self", "loop"}
        for key in extra:
            if key not in accepted:
                close = difflib.get_close_matches(key, sorted(accepted), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise XResourceError(f"{self.label}: {field_name}: unknown option {key!r}{hint}")
        options = dict(common)
        options.update({key: self._resolve_option(value) for key, value in extra.items()})
        return options

    def _resolve_option(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.resolve(value)
        if isinstance(value, list):
            return [self._resolve_option(item) for item in value]
        if isinstance(value, dict):
            return {key: self._resolve_option(item) for key, item in value.items()}
        return value

    async def _close(self) -> None:
        rt = self._rt
        if rt is None:
            return
        rt.stopping.extend(client for client in (rt.consumer, rt.producer) if client is not None)
        rt.consumer = rt.producer = None
        # After a lost connection the final commit and goodbye cannot succeed:
        # do not let them hold up the reconnect.
        patience = min(self.timeout, 1.0) if self.connection_state is State.RECONNECTING else self.timeout
        while rt.stopping:
            await self._stop_client(rt.stopping[0], patience)
            rt.stopping.pop(0)

    async def _stop_client(self, client: Any, patience: float) -> None:
        await _kafka_consumer.stop_client(self, client, patience)

    async def _subscribe_remote(self, channel: str, options: dict[str, Any]) -> None:
        rt = self._rt
        assert rt is not None
        consumer = rt.consumer
        topics = set(self._regs.subscriptions)
        if set(consumer.subscription()) != topics:
            # aiokafka replaces the whole set; calling it with the same set would still rebalance.
            consumer.subscribe(topics=sorted(topics))
        rt.sub_changed.set()
        await self._wait_assigned(consumer, channel)

    async def _wait_assigned(self, consumer: Any, topic: str) -> None:
        # The driver resolves an assignment waiter at every (re)assignment: no polling.
        state = consumer._subscription
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    next_assignment = state.wait_for_assignment()
                    if any(tp.topic == topic for tp in consumer.assignment()):
                        break
                    await next_assignment
        except TimeoutError:
            # Another group member may hold every partition: not an error.
            log.info("%s: no partition of %r assigned after %ss", self.label, topic, self.timeout)
            return
        for tp in list(consumer.assignment()):
            if tp.topic == topic:
                # Resolves the start offset now, so later records are not skipped by "latest".
                await asyncio.wait_for(consumer.position(tp), self.timeout)

    async def _unsubscribe_remote(self, channel: str) -> None:
        rt = self._rt
        assert rt is not None
        remaining = sorted(self._regs.subscriptions)
        if remaining:
            rt.consumer.subscribe(topics=remaining)
        else:
            rt.consumer.unsubscribe()

    async def _ping(self) -> bool:
        async with self.translate_errors("ping"):
            await self._probe()
        return True

    async def _probe(self) -> None:
        rt = self._rt
        if rt is None or rt.producer is None:
            raise ConnectionError("not connected")
        async with asyncio.timeout(self.timeout):
            await rt.producer.client.fetch_all_metadata()

    async def _listen(self) -> None:
        rt = self._rt
        assert rt is not None
        consumer = rt.consumer
        if consumer is None:
            raise ConnectionError("not connected")
        changed, progress = rt.sub_changed, rt.progress
        pipe = self._pipeline()
        interval = self.health_check_interval
        wait_ms = max(1, int(interval * 1000))
        last_sign_of_life = time.monotonic()
        while not rt.released:
            if not consumer.subscription():
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):  # no task per wait, unlike wait_for
                        await changed.wait()
            else:
                rt.fetching = True
                try:
                    batch = await consumer.getmany(timeout_ms=wait_ms)
                finally:
                    rt.fetching = False
                if batch:
                    last_sign_of_life = time.monotonic()
                    for records in batch.values():
                        for record in records:
                            message = _to_message(record)
                            if not pipe.offer(message):
                                await pipe.deliver(message)
                    progress.set()
                    continue
            if time.monotonic() - last_sign_of_life >= interval:
                await self._probe()
                last_sign_of_life = time.monotonic()

    # ---- reload hand-over (see _kafka_consumer) ------------------------------------------

    async def _hand_over_from(self, previous: Self) -> None:
        await _kafka_consumer.hand_over(self, previous)

    async def _release(self) -> None:
        if self.consumer_group is None:
            await super()._release()
        else:
            await _kafka_consumer.leave_group(self)


def _split_servers(value: str | list[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item and item.strip()]


@functools.lru_cache(maxsize=1024)
def _valid_topic(topic: str) -> bool:
    return bool(_TOPIC_RE.match(topic)) and topic not in (".", "..")


def _check_topic(label: str | Callable[[], str], topic: str) -> None:
    if not isinstance(topic, str) or not _valid_topic(topic):
        label = label if isinstance(label, str) else label()
        raise ValueError(
            f"{label}: invalid topic name {topic!r}: use 1-249 characters of letters, digits, '.', '_', '-'"
        )


def _to_message(record: Any) -> Message:
    key = record.key
    if key is not None and type(key) is bytes:
        with contextlib.suppress(UnicodeDecodeError):
            key = key.decode("utf-8")
    value = record.value
    return Message(
        channel=record.topic,
        data=decode_payload(value),
        raw=value,
        meta={
            "partition": record.partition,
            "offset": record.offset,
            "key": key,
            "timestamp": record.timestamp,
            "headers": record.headers,
        },
    )
