"""The shared stream machinery: states, reconnects, dispatch, backpressure.

These tests use a tiny in-memory backend (``Loopback``) because what they check
is our own supervisor and buffers, not a driver; every real backend has its own
test module against a real broker.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import math
from collections import Counter
from typing import Any, Literal

import pytest
from pydantic import PrivateAttr, ValidationError

from tests.support.waiting import eventually
from xresource._transport.urls import url_target
from xresource.backends.streams._base import EventStreamResource
from xresource.backends.streams._codec import decode_payload, encode_payload
from xresource.backends.streams._message import Message
from xresource.errors import XResourceConnectionError, XResourceStateError, XResourceTimeoutError
from xresource.resource import State
from xresource.secrets import SecretText

_DROP = object()
SECRET = "s3cr3t-loopback-value-4711"


class Wire:
    """The 'server' of the loopback backend, controlled by the test."""

    def __init__(self) -> None:
        self.up = True
        self.opens = 0
        self.inbox: asyncio.Queue[Any] | None = None
        self.subscribed: Counter[str] = Counter()  # subscribe calls on the current connection
        self.refuse: set[str] = set()

    def push(self, channel: str, data: Any, event: str | None = None) -> None:
        assert self.inbox is not None
        self.inbox.put_nowait(Message(channel=channel, data=data, event=event))

    def drop(self) -> None:
        """Cut the current connection."""
        if self.inbox is not None:
            self.inbox.put_nowait(_DROP)


class Loopback(EventStreamResource):
    type: Literal["loopback"] = "loopback"
    token: SecretText | None = None

    _wire: Wire = PrivateAttr(default_factory=Wire)
    _inbox: asyncio.Queue[Any] | None = PrivateAttr(default=None)

    async def _open(self) -> None:
        secret = self.resolve(self.token) if self.token else ""
        if not self._wire.up:
            raise ConnectionRefusedError(f"connection refused (token {secret})")
        self._wire.opens += 1
        self._inbox = self._wire.inbox = asyncio.Queue()
        self._wire.subscribed = Counter()

    async def _listen(self) -> None:
        inbox = self._inbox
        assert inbox is not None
        while True:
            item = await inbox.get()
            if item is _DROP:
                secret = self.resolve(self.token) if self.token else ""
                raise ConnectionResetError(f"connection reset by peer (token {secret})")
            pipe = self._pipeline()
            if not pipe.offer(item):
                await pipe.deliver(item)

    async def _close(self) -> None:
        self._inbox = None

    async def _subscribe_remote(self, channel: str, options: dict[str, Any]) -> None:
        if channel in self._wire.refuse:
            raise PermissionError(f"not allowed: {channel}")
        self._wire.subscribed[channel] += 1

    async def _unsubscribe_remote(self, channel: str) -> None:
        self._wire.subscribed.pop(channel, None)

    async def publish(self, channel: str, data: Any) -> int | None:
        self.require_ready()
        self._wire.push(channel, data)
        return None


def make(**fields: Any) -> Loopback:
    fields.setdefault("reconnect_interval", 0.01)
    return Loopback(name="loop", **fields)


# ---- payloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": [1, 2]}', {"a": [1, 2]}),
        ("[1, 2]", [1, 2]),
        (b"42", 42),
        (b"-1.5", -1.5),
        (b"true", True),
        (b"null", None),
        (b'"quoted"', "quoted"),
        (b"plain text", "plain text"),
        (b"{not json", "{not json"),
        (b"12 monkeys", "12 monkeys"),
        (b"\xff\xfe binary", b"\xff\xfe binary"),
        (b"", ""),
        (None, None),
    ],
)
def test_decode_payload(raw: Any, expected: Any) -> None:
    assert decode_payload(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1}',
        b'{"a": 1}  \r\n',
        b'{"a":1} trailing',
        b'{"a":1}\x0b',  # not JSON whitespace
        b"[1, 2",
        b'{"n": NaN, "big": 1e400}',
        '{"utf16": 1}'.encode("utf-16-le"),  # json.loads guesses the encoding of bytes
        '["\u00e9"]'.encode("utf-32-le"),
        b'["\xed\xa0\x80"]',  # an encoded lone surrogate: json.loads lets it pass
        b"[\xed\xa0\x80]",
        b"{\xff}",
        b"{}",
        b"[[[[]]]]",
    ],
)
def test_json_looking_bytes_decode_as_json_loads_reads_them(raw: bytes) -> None:
    try:
        expected: Any = json.loads(raw)
    except ValueError:
        expected = raw.decode() if _utf8(raw) else raw  # not JSON: text, or bytes when not UTF-8
    assert repr(decode_payload(raw)) == repr(expected)  # repr: NaN is not equal to itself


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize(
    "data",
    [{"a": 1, "b": "é\u2028", "c": [1.5, None, True, -0.0]}, [1, [2, [3]]], 7, 2.5, None, {1: "int key"}, ()],
)
def test_encode_payload_writes_what_the_json_module_writes(data: Any) -> None:
    expected = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    assert encode_payload(data) == expected


def test_an_unencodable_value_leaves_the_encoder_usable() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_payload(loop)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_payload({"inf": math.inf})
    assert encode_payload({"after": [1]}) == b'{"after":[1]}'


def test_encode_payload() -> None:
    assert encode_payload({"a": 1, "b": [True, None]}) == b'{"a":1,"b":[true,null]}'
    assert encode_payload([1, "x"]) == b'[1,"x"]'
    assert encode_payload("text é") == "text é".encode()
    assert encode_payload(b"\x00raw") == b"\x00raw"
    assert encode_payload(7) == b"7"
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_payload({1, 2})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_payload(math.nan)
    assert decode_payload(encode_payload({"k": "v"})) == {"k": "v"}


def test_url_target_never_shows_user_info() -> None:
    assert url_target("redis://:pw@10.0.0.1:6380/0", 6379) == "10.0.0.1:6380"
    assert url_target("amqp://user:${env:X}@broker/vh", 5672) == "broker:5672"
    assert url_target("mqtt://[::1]:1884", 1883) == "[::1]:1884"


@pytest.mark.parametrize(
    "fields",
    [
        {"queue_size": 0},
        {"overflow": "drop_newest"},
        {"reconnect_interval": 0},
        {"max_reconnect_attempts": -1},
        {"token": "literal-secret"},
        {"reconect_interval": 1},
    ],
)
def test_bad_fields_are_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Loopback(name="loop", **fields)


# ---- states and reconnects --------------------------------------------------------------------


async def test_states_reconnect_and_restore_each_subscription_once() -> None:
    stream = make()
    assert stream.connection_state is State.NEW
    got: list[Any] = []
    await stream.subscribe("early", got.append)  # before connect: applied at connect
    async with stream:
        assert stream.state_history == [State.CONNECTING, State.READY]
        assert stream._wire.subscribed == Counter({"early": 1})
        await stream.subscribe("late", got.append)
        stream._wire.drop()
        assert await stream.wait_for_state(State.RECONNECTING, timeout=5) is State.RECONNECTING
        assert stream.state is State.RECONNECTING  # what the registry's status shows
        await stream.wait_ready(timeout=5)
        assert stream.counters.reconnects == 1
        assert stream._wire.opens == 2
        # Each subscription exactly once on the new connection.
        assert stream._wire.subscribed == Counter({"early": 1, "late": 1})
        await stream.publish("early", {"n": 1})
        await stream.publish("late", {"n": 2})
        await eventually(lambda: len(got) == 2)
        assert got == [{"n": 1}, {"n": 2}]
        assert stream.stream_stats()["connection_state"] == "ready"
    assert stream.state_history[-3:] == [State.RECONNECTING, State.READY, State.CLOSED]
    assert stream.state is State.CLOSED


async def test_gives_up_after_max_attempts_then_connect_recovers(caplog: pytest.LogCaptureFixture) -> None:
    stream = make(max_reconnect_attempts=2, token="${env:XR_LOOP_TOKEN}")
    got: list[Any] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XR_LOOP_TOKEN", SECRET)
        caplog.set_level(logging.DEBUG)
        await stream.connect()
        await stream.subscribe("a", got.append)
        stream._wire.up = False
        stream._wire.drop()
        assert await stream.wait_for_state(State.FAILED, timeout=5) is State.FAILED
        assert stream.state is State.FAILED
        assert stream._wire.opens == 1  # both attempts were refused
        assert "gave up after 2 reconnect attempt(s)" in (stream.last_error or "")
        with pytest.raises(XResourceConnectionError, match="failed"):
            await stream.wait_ready(timeout=1)
        assert await stream.validate_connection() is False
        # What the registry's recovery does: connect() again, subscriptions kept.
        stream._wire.up = True
        await stream.connect()
        assert stream.connection_state is State.READY
        assert stream._wire.subscribed == Counter({"a": 1})
        await stream.publish("a", "again")
        await eventually(lambda: got == ["again"])
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("loop-")]
        assert len(tasks) == 2  # one supervisor and one dispatcher: the old ones are gone
        text = caplog.text + repr(stream) + str(stream.get_metadata()) + str(stream.last_error)
        await stream.disconnect()
    assert SECRET not in text
    assert "connection refused (token ***)" in caplog.text


async def test_zero_attempts_fails_at_once() -> None:
    async with make(max_reconnect_attempts=0) as stream:
        stream._wire.drop()
        await stream.wait_for_state(State.FAILED, timeout=5)
        assert stream._wire.opens == 1


async def test_first_connect_fails_loudly_and_iterators_survive_it() -> None:
    stream = make()
    stream._wire.up = False
    iterator = stream.messages()
    with pytest.raises(XResourceConnectionError, match="connection refused"):
        await stream.connect()
    assert stream.connection_state is State.FAILED
    assert stream.state is State.FAILED
    stream._wire.up = True
    async with stream:
        await stream.publish("x", 1)
        message = await asyncio.wait_for(anext(iterator), 5)
        assert (message.channel, message.data) == ("x", 1)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(iterator), 5)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    stream = make(reconnect_interval=0.5)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (10, 60.0), (500, 60.0)]:
        delays = [stream._backoff(attempt) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert max(delays) - min(delays) > base * 0.2  # there is jitter
    assert make(reconnect_interval=1, max_reconnect_attempts=3)._reconnect_budget() == 7.0


async def test_wait_for_state_sees_a_transient_state() -> None:
    async with make() as stream:
        waiter = asyncio.create_task(stream.wait_for_state(State.RECONNECTING))
        await asyncio.sleep(0)
        stream._wire.drop()
        assert await asyncio.wait_for(waiter, 5) is State.RECONNECTING
        await stream.wait_ready(timeout=5)
        with pytest.raises(XResourceTimeoutError):
            await stream.wait_for_state(State.FAILED, timeout=0.05)


async def test_wait_ready_before_connect_and_after_close() -> None:
    stream = make()
    with pytest.raises(XResourceTimeoutError):
        await stream.wait_ready(timeout=0.05)
    async with stream:
        await stream.wait_ready(timeout=1)
    with pytest.raises(XResourceConnectionError, match="closed"):
        await stream.wait_ready(timeout=1)
    with pytest.raises(XResourceStateError):
        await stream.publish("x", 1)
    await stream.disconnect()  # twice is fine


# ---- subscriptions and handlers ---------------------------------------------------------------


async def test_subscribe_validation_and_rollback() -> None:
    async with make() as stream:
        with pytest.raises(ValueError, match="non-empty"):
            await stream.subscribe("")
        with pytest.raises(TypeError, match="not callable"):
            await stream.subscribe("c", handler="print")  # type: ignore[arg-type]
        assert stream.subscriptions == []  # nothing kept after a bad call
        stream._wire.refuse.add("forbidden")
        with pytest.raises(XResourceConnectionError, match="not allowed"):
            await stream.subscribe("forbidden", print)
        assert stream.subscriptions == []
        assert "forbidden" not in stream._regs.handlers
        await stream.subscribe("ok")
        await stream.unsubscribe("ok")
        await stream.unsubscribe("never-subscribed")
        assert stream.subscriptions == []
        assert stream._wire.subscribed == Counter()


async def test_a_raising_handler_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, Any]] = []

    def broken(data: Any) -> None:
        raise RuntimeError("boom")

    async def slow_ok(data: Any) -> None:
        await asyncio.sleep(0)
        seen.append(("async", data))

    async with make() as stream:
        await stream.subscribe("c", broken)
        stream.on("c", slow_ok)
        stream.on("message", lambda d: seen.append(("any", d)))
        stream.on("typed", lambda d: seen.append(("event", d)))
        stream._wire.push("c", {"i": 1}, event="typed")
        stream._wire.push("c", {"i": 2})
        await eventually(lambda: len(seen) == 5)
        assert seen == [
            ("any", {"i": 1}),
            ("async", {"i": 1}),
            ("event", {"i": 1}),
            ("any", {"i": 2}),
            ("async", {"i": 2}),
        ]
        assert stream.counters.handler_errors == 2
        assert stream.counters.delivered == 2
        assert "boom" in caplog.text
        stream.off("c", slow_ok)
        stream.off("message")
        stream._wire.push("c", 3)
        await eventually(lambda: stream.counters.delivered == 3)
        assert len(seen) == 5


async def test_order_is_kept_across_the_inline_and_buffered_paths() -> None:
    received: list[int] = []

    async def sometimes_slow(n: int) -> None:
        if n % 7 == 0:
            await asyncio.sleep(0.001)
        received.append(n)

    async with make(queue_size=5) as stream:
        await stream.subscribe("c", sometimes_slow)
        iterator = None
        for n in range(300):
            if n == 100:
                iterator = stream.messages()  # forces the buffered path for a while
            if n == 200 and iterator is not None:
                await iterator.aclose()
            stream._wire.push("c", n)
            if n % 13 == 0:
                await asyncio.sleep(0)
        await eventually(lambda: len(received) == 300)
        assert received == list(range(300))
        assert stream.counters.dropped == 0 or stream.overflow == "drop_oldest"


# ---- backpressure -----------------------------------------------------------------------------


async def test_block_makes_the_receiver_wait_and_loses_nothing() -> None:
    gate = asyncio.Event()
    got: list[int] = []

    async def slow(n: int) -> None:
        await gate.wait()
        got.append(n)

    async with make(queue_size=3, overflow="block") as stream:
        await stream.subscribe("c", slow)
        for n in range(50):
            stream._wire.push("c", n)
        # The receive loop stops when the buffer is full and the handler holds one more:
        await eventually(lambda: stream.counters.received >= 4 and stream.stream_stats()["queued"] == 3)
        # One in the async handler, three buffered, one waiting to be buffered; the rest stay
        # unread. (An async handler goes through the buffer: the receive loop ran ahead of it.)
        assert 4 <= stream.counters.received <= 3 + 2
        assert stream._wire.inbox is not None
        assert stream._wire.inbox.qsize() >= 50 - 5
        assert stream.stream_stats()["queued"] <= 3
        gate.set()
        await eventually(lambda: len(got) == 50)
        assert got == list(range(50))
        assert stream.counters.dropped == 0


async def test_drop_oldest_keeps_memory_bounded_and_counts() -> None:
    gate = asyncio.Event()
    got: list[int] = []

    async def slow(n: int) -> None:
        await gate.wait()
        got.append(n)

    async with make(queue_size=3, overflow="drop_oldest") as stream:
        await stream.subscribe("c", slow)
        for n in range(50):
            stream._wire.push("c", n)
        await eventually(lambda: stream.counters.received == 50)  # the receiver never waited
        assert stream.stream_stats()["queued"] <= 3
        gate.set()
        await eventually(lambda: stream.counters.delivered + stream.counters.dropped == 50)
        # Only the newest messages survived (at most the buffer plus the one in the handler),
        # in order, and every other one is counted as dropped.
        assert 3 <= len(got) <= 4
        assert got == list(range(50 - len(got), 50))
        assert stream.counters.dropped == 50 - len(got)
        assert stream.stream_stats()["dropped"] == stream.counters.dropped


async def test_iterators_buffer_apply_the_policy_and_end_at_close() -> None:
    async with make(queue_size=2, overflow="drop_oldest") as stream:
        iterator = stream.messages()
        for n in range(5):  # one at a time: only the (unread) iterator overflows
            stream._wire.push("c", n)
            await eventually(lambda n=n: stream.counters.delivered == n + 1)
        assert [(await anext(iterator)).data for _ in range(2)] == [3, 4]
        assert stream.counters.dropped == 3
        assert stream.stream_stats()["iterators"] == 1
        await iterator.aclose()
        assert stream.stream_stats()["iterators"] == 0
        forgotten = stream.messages()
        del forgotten
        gc.collect()
        assert stream.stream_stats()["iterators"] == 0  # a dropped iterator holds nothing up
        live = stream.messages()
    assert [m async for m in live] == []  # ended by the close


async def test_handlers_and_iterators_see_the_same_messages() -> None:
    async with make() as stream:
        got: list[Any] = []
        await stream.subscribe("c", got.append)
        async with stream.messages() as iterator:
            await stream.publish("c", {"x": 1})
            message = await asyncio.wait_for(anext(iterator), 5)
        assert message.data == {"x": 1}
        assert message.channel == "c"
        await eventually(lambda: got == [{"x": 1}])


def test_async_handlers_are_recognised() -> None:
    import functools

    from xresource.backends.streams._registrations import _is_async

    async def coroutine_function(data: Any) -> None:
        pass

    class AsyncCallable:
        async def __call__(self, data: Any) -> None:
            pass

    assert _is_async(coroutine_function)
    assert _is_async(functools.partial(coroutine_function))
    assert _is_async(AsyncCallable())
    assert not _is_async(print)
    assert not _is_async(lambda data: None)


async def test_a_copy_starts_unconnected() -> None:
    import copy

    got: list[Any] = []
    async with make() as stream:
        await stream.subscribe("c", got.append)
        for copied in (
            stream.model_copy(),
            copy.deepcopy(stream),
            stream.model_copy(update={"queue_size": 5}),
        ):
            assert copied.connection_state is State.NEW
            assert copied.state is State.NEW
            assert copied.subscriptions == ["c"]
            async with copied:  # its own connection, tasks and buffers
                assert copied.connection_state is State.READY
                assert copied._wire is not stream._wire
            assert copied.connection_state is State.CLOSED
        # The original was not touched by its copies connecting and closing.
        assert stream.connection_state is State.READY
        await stream.publish("c", "still here")
        await eventually(lambda: got == ["still here"])


async def test_a_plain_function_returning_an_awaitable_is_awaited_in_order() -> None:
    handed_over: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
    seen_sync: list[int] = []
    async with make(queue_size=4) as stream:
        await stream.subscribe("c", lambda n: handed_over.put(n))  # returns a coroutine
        stream.on("c", seen_sync.append)
        for n in range(30):
            stream._wire.push("c", n)
        taken = []
        for _ in range(30):
            taken.append(await asyncio.wait_for(handed_over.get(), 5))
            await asyncio.sleep(0.001)  # a slow reader: the puts have to wait
        assert taken == list(range(30))
        await eventually(lambda: len(seen_sync) == 30)
        assert seen_sync == list(range(30))
        assert stream.counters.handler_errors == 0
        assert stream.counters.dropped == 0


async def test_handlers_after_an_awaitable_run_once_it_is_done_each_message_in_turn() -> None:
    log: list[tuple[str, int]] = []

    async def later(n: int) -> None:
        log.append(("awaited", n))

    async with make() as stream:
        stream.on("message", lambda n: later(n))  # a plain function returning a coroutine
        await stream.subscribe("c", lambda n: log.append(("channel", n)))
        stream.on("c", lambda n: log.append(("second", n)))
        for n in range(5):
            stream._wire.push("c", n)
        await eventually(lambda: len(log) == 15, what="three calls per message")
    assert log == [call for n in range(5) for call in (("awaited", n), ("channel", n), ("second", n))]


# ---- driver errors by exact type ---------------------------------------------------------------


def _exported_exceptions(module_names: list[str]) -> list[type[BaseException]]:
    """Every exception class the driver modules document (``__all__``) or define."""
    found: list[type[BaseException]] = []
    packages = {name.split(".")[0] for name in module_names}
    for module_name in module_names:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None) or list(vars(module))
        for name in names:
            value = getattr(module, name, None)
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.split(".")[0] in packages
            ):
                found.append(value)
    return found


@pytest.mark.parametrize(
    ("table", "modules"),
    [
        ("kafka_errors", ["aiokafka.errors"]),
        ("rabbitmq_errors", ["aio_pika.exceptions", "aiormq.exceptions", "pamqp.exceptions"]),
    ],
)
def test_error_tables_cover_every_driver_exception(table: str, modules: list[str]) -> None:
    from xresource.backends.streams import _errors
    from xresource.errors import XResourceAuthenticationError, XResourceTimeoutError

    mapping = getattr(_errors, table)()
    exported = _exported_exceptions(modules)
    assert len(exported) > 10
    for cls in exported:
        mapped = next((mapping[base] for base in cls.__mro__ if base in mapping), None)
        assert mapped is not None, f"{cls.__module__}.{cls.__name__} is not in the {table} table"
        name = cls.__name__
        if any(word in name for word in ("Auth", "Sasl", "AccessRefused")):
            assert mapped is XResourceAuthenticationError, f"{name} -> {mapped.__name__}"
        if ("Timeout" in name or "TimedOut" in name) and not name.startswith("Invalid"):
            assert mapped is XResourceTimeoutError, f"{name} -> {mapped.__name__}"
        exc = cls.__new__(cls)
        assert _errors.classify(exc, mapping) is mapped  # the lookup the backends use


# ---- hand-over --------------------------------------------------------------------------------


async def test_take_over_from_an_instance_that_never_connected() -> None:
    got: list[Any] = []
    old, new = make(), make()
    await old.subscribe("c", got.append)  # registered before any connect
    replaced: list[Any] = []
    old.on_replaced(lambda before, after: replaced.append((before, after)))
    async with new:
        await new.take_over(old)
        assert new.subscriptions == ["c"]
        assert new._wire.subscribed == Counter({"c": 1})
        assert old.replaced_by is new
        assert replaced == [(old, new)]
        await new.publish("c", 1)
        await eventually(lambda: got == [1])
        await old.disconnect()  # never connected: nothing to end


async def test_take_over_needs_a_connected_instance_of_the_same_type() -> None:
    old, new = make(), make()
    with pytest.raises(XResourceStateError, match="connect"):
        await new.take_over(old)
    async with new:
        with pytest.raises(TypeError, match="cannot take over"):
            await new.take_over(object())  # type: ignore[arg-type]
        await new.take_over(new)  # itself: nothing to do


async def test_a_failed_take_over_leaves_the_old_instance_delivering() -> None:
    got: list[Any] = []
    async with make() as old, make() as new:
        await old.subscribe("c", got.append)
        new._wire.refuse.add("c")  # the new version cannot subscribe
        with pytest.raises(XResourceConnectionError, match="take over failed"):
            await new.take_over(old)
        assert old.replaced_by is None
        assert new.subscriptions == []
        await old.publish("c", "still")
        await eventually(lambda: got == ["still"])
