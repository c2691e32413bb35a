"""``EventStreamResource``: the stream model and public API shared by websocket, sse,
redis_pubsub, kafka, rabbitmq and mqtt.

Where each concern lives (one module each): payload codec ``_codec``; delivery
and backpressure ``_pipeline`` (read its docstring for the receive-loop idiom);
what the user registered ``_registrations``; one connection's state
``_runtime``; opening and ending a connection ``_lifecycle``; reconnects and
backoff ``_supervisor``; the state machine ``_status``; reload hand-over
``_handover``; task ownership ``_tasks``.

Backend hooks
-------------
A backend implements:

- ``_open()``: connect the driver (raise on failure), keeping driver objects in
  its ``StreamRuntime`` subclass (``runtime_type``), never in model attributes;
- ``_listen()``: receive until the connection is lost (raise) or closed (return),
  handing every message to the connection's pipeline with the one idiom
  ``if not pipe.offer(message): await pipe.deliver(message)``, where
  ``pipe = self._pipeline()`` is taken once per ``_listen`` call;
- ``_close()``: close the driver, tolerating a half-open state;
- ``_subscribe_remote(channel, options)`` / ``_unsubscribe_remote(channel)``: tell
  the server; ``_subscribe_remote`` is called again for every subscription
  after a reconnect, on a fresh connection, so it must not assume earlier state;
- optionally ``_ping()`` (``validate_connection``) and ``_hand_over_from(previous)``
  (how a reload moves delivery to this instance; see ``_handover``).

Drivers that reconnect by themselves (aio-pika's robust connection) report what
they do with ``_note_connection_lost`` / ``_note_connection_restored`` from inside
``_listen``, and raise :class:`ReconnectGaveUp` when their retry budget is spent.

Connection states and reconnects: ``_supervisor``. Buffers, the ``overflow``
policy and handler order: ``_pipeline``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field, PrivateAttr

from xresource.backends.streams import _handover, _lifecycle
from xresource.backends.streams import _transitions as transitions
from xresource.backends.streams._message import Handler, StreamCounters
from xresource.backends.streams._pipeline import Pipeline
from xresource.backends.streams._registrations import MessageIterator, Registrations, ReplacedCallback
from xresource.backends.streams._runtime import RuntimeType, StreamRuntime
from xresource.backends.streams._status import ConnectionStatus
from xresource.backends.streams._supervisor import backoff, restart
from xresource.errors import XResourceConnectionError, XResourceError, XResourceStateError
from xresource.resource import State, XResource

log = logging.getLogger("xresource.streams")

ErrorClass = type[XResourceError]
"""For ``error_class_for`` in backends, where ``type`` names the model field."""


class EventStreamResource(XResource):
    """A stream of events with subscriptions that survive reconnects and reloads."""

    family: ClassVar[str] = "stream"
    runtime_type: ClassVar[RuntimeType] = StreamRuntime

    reconnect_interval: float = Field(default=5.0, gt=0, le=3600)
    """First backoff delay in seconds after a lost connection; doubles up to 60 s, with jitter."""
    max_reconnect_attempts: int = Field(default=10, ge=0)
    """Attempts before the resource is marked failed (0: never reconnect)."""
    queue_size: int = Field(default=1000, ge=1, le=10_000_000)
    """Messages buffered between the receive loop and handlers (and per ``messages()`` iterator)."""
    overflow: Literal["block", "drop_oldest"] = "block"
    """When a buffer is full: make the receiver wait, or drop the oldest message (counted)."""

    _connect_failed: bool = PrivateAttr(default=False)

    # Per-instance state that outlives connections, in slots (read on per-message
    # paths; see XResource). Annotated for mypy only: pydantic must not see them.
    __slots__ = ("_counters", "_regs", "_status", "_successor")
    if TYPE_CHECKING:
        _rt: StreamRuntime | None
        _counters: StreamCounters
        _regs: Registrations
        _status: ConnectionStatus
        _successor: EventStreamResource | None

    def _init_slots(self) -> None:
        super()._init_slots()
        self._counters = StreamCounters()
        self._regs = Registrations()
        self._status = ConnectionStatus(self.label)
        self._successor = None

    def _copied_from(self, source: Self) -> None:
        # A copy starts unconnected, like a new model, with the same handlers and subscriptions.
        self._regs = source._regs.copy()

    # ---- public API: state ------------------------------------------------------------------

    @property
    def connection_state(self) -> State:
        """connecting, ready, reconnecting, failed or closed (``new`` before the first connect)."""
        return self._status.state

    @property
    def state(self) -> State:
        """The resource state, showing ``reconnecting`` while the supervisor reconnects."""
        if self._state is State.READY and self._status.state is State.RECONNECTING:
            return State.RECONNECTING
        return self._state

    @property
    def state_history(self) -> list[State]:
        """The most recent connection states, oldest first (up to 64)."""
        return [state for _, state in self._status.history]

    @property
    def counters(self) -> StreamCounters:
        return self._counters

    @property
    def subscriptions(self) -> list[str]:
        """Channels subscribed to (restored after every reconnect, moved by a reload)."""
        return list(self._regs.subscriptions)

    @property
    def replaced_by(self) -> EventStreamResource | None:
        """The instance a reload handed this one's registrations to (None while it is current)."""
        return self._successor

    async def wait_for_state(self, *states: State, timeout: float | None = None) -> State:
        """Wait until the connection enters one of ``states``; return the state entered.

        A transition is seen even when the state changes again before the waiter
        runs: each waiter receives every state entered, in order.
        """
        return await self._status.wait_for(states, timeout)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the connection is (again) ready.

        Raises ``XResourceConnectionError`` at once if the resource is failed or
        closed, and ``XResourceTimeoutError`` after ``timeout`` seconds.
        """
        state = await self.wait_for_state(State.READY, State.FAILED, State.CLOSED, timeout=timeout)
        if state is not State.READY:
            detail = f": {self._last_error}" if self._last_error else ""
            raise XResourceConnectionError(f"{self.label} is {state.value}{detail}")

    def stream_stats(self) -> dict[str, Any]:
        """Numbers for status pages and ``/metrics`` (no secrets)."""
        c = self._counters
        rt = self._rt
        return {
            "connection_state": self._status.state.value,
            "subscriptions": len(self._regs.subscriptions),
            **dataclasses.asdict(c),
            "queued": rt.pipeline.buffered() if rt is not None else 0,
            "iterators": len(self._regs.iterators),
            "queue_size": self.queue_size,
            "overflow": self.overflow,
        }

    # ---- public API: registrations ----------------------------------------------------------

    def on(self, event: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for every message of ``event``.

        ``event`` is ``"message"`` (every message), a channel or subscription name,
        or a protocol event name (WebSocket ``type``, SSE event).
        """
        if not callable(handler):
            raise TypeError(f"{self.label}: handler for {event!r} is not callable")
        self._regs.add_handler(event, handler)

    def off(self, event: str, handler: Handler | None = None) -> None:
        """Remove one handler of ``event``, or all of them."""
        self._regs.remove_handler(event, handler)

    def on_replaced(self, callback: ReplacedCallback) -> None:
        """Call ``callback(old, new)`` after a reload replaced this stream and moved everything over.

        The callback moves along with the handlers, so it hears of every later
        replacement too. A stream that *failed* instead is told apart by its
        state (``failed``) and by open ``messages()`` iterators raising
        ``XResourceConnectionError``; a replaced one is ``replaced_by`` its successor.
        """
        if not callable(callback):
            raise TypeError(f"{self.label}: on_replaced callback is not callable")
        self._regs.replaced_callbacks.append(callback)

    async def subscribe(self, channel: str, handler: Handler | None = None, **options: Any) -> None:
        """Subscribe to ``channel`` (and call ``handler`` for its messages).

        The subscription is restored after every reconnect and moves to the new
        instance on a reload. Subscribing before ``connect()`` is allowed: it
        takes effect on connect. If the server refuses the subscription, nothing
        is kept and the error is raised.
        """
        if self._successor is not None:  # code that kept a replaced instance reaches the current one
            await self._successor.subscribe(channel, handler, **options)
            return
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"{self.label}: channel must be a non-empty string, not {channel!r}")
        if handler is not None and not callable(handler):
            raise TypeError(f"{self.label}: handler for {channel!r} is not callable")
        self._check_subscription(channel, options)
        regs = self._regs
        previous = regs.subscriptions.get(channel)
        regs.subscriptions[channel] = options
        if handler is not None:
            # Before the server hears of it: the first message (an MQTT
            # retained one, say) may arrive before subscribing returns.
            regs.add_handler(channel, handler)
        rt = self._rt
        if rt is None or self._status.state is not State.READY:
            return
        try:
            async with self.translate_errors(f"subscribe {channel!r}"):
                await rt.sync(self, channel)
        except BaseException:
            if regs.subscriptions.get(channel) is options:  # not changed again meanwhile
                if previous is None:
                    del regs.subscriptions[channel]
                else:
                    regs.subscriptions[channel] = previous
            if handler is not None:
                regs.remove_handler(channel, handler)
            raise

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` and forget its handlers."""
        if self._successor is not None:
            await self._successor.unsubscribe(channel)
            return
        regs = self._regs
        known = regs.subscriptions.pop(channel, None) is not None
        if channel in regs.handlers:
            regs.remove_handler(channel, None)
        rt = self._rt
        if known and rt is not None and self._status.state is State.READY:
            async with self.translate_errors(f"unsubscribe {channel!r}"):
                await rt.sync(self, channel)

    async def publish(self, channel: str, data: Any) -> int | None:
        """Publish ``data`` to ``channel``: bytes as they are, str as UTF-8, anything else as JSON.

        Returns the number of receivers where the protocol reports it (Redis), else None.
        """
        raise NotImplementedError(f"{self.label}: this protocol cannot publish")

    def messages(self) -> MessageIterator:
        """An async iterator over every message received from this call on.

        It buffers up to ``queue_size`` messages under the ``overflow`` policy.
        It ends at ``disconnect()``, raises ``XResourceConnectionError`` when the
        stream gives up reconnecting, and keeps yielding across a reload that
        replaces the resource. Close it (``aclose()``, or leave the ``async
        for``/``async with``) when done: under ``block`` an iterator nobody
        reads holds up every handler.
        """
        if self._successor is not None:
            return self._successor.messages()
        return MessageIterator(self._regs, self.queue_size)

    async def take_over(self, previous: XResource) -> None:
        """Adopt handlers, subscriptions and open iterators of ``previous`` (make before break).

        See ``docs/hot-reload.md`` for what each stream type guarantees.
        """
        if not isinstance(previous, EventStreamResource) or type(previous) is not type(self):
            raise TypeError(f"{self.label}: cannot take over from {getattr(previous, 'label', previous)!r}")
        if previous is self:
            return
        async with self.translate_errors("take over"):
            await _handover.take_over(self, previous)

    # ---- errors and metadata ----------------------------------------------------------------

    def _no_connection(self, operation: str) -> XResourceError:
        """The error for an operation without a live driver: not connected yet/any more, or lost."""
        if self._state in (State.NEW, State.CLOSED):
            return XResourceStateError(f"{self.label} is not connected (state: {self._state.value})")
        return self._unavailable(operation)

    def _unavailable(self, operation: str) -> XResourceConnectionError:
        """The error for an operation attempted while there is no live connection."""
        detail = f": {self._last_error}" if self._last_error else ""
        return XResourceConnectionError(
            f"{self.label}: {operation} failed: not connected (connection {self._status.state.value}){detail}"
        )

    def _metadata_details(self) -> dict[str, Any]:
        return {"state": self.state.value, "stream": self.stream_stats()}

    # ---- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        await _lifecycle.open_runtime(self)

    async def _disconnect(self) -> None:
        await _lifecycle.close_runtime(self)

    async def _close_driver(self, why: str) -> None:
        """``_close()``, which must finish: a failure is logged and counted, never raised."""
        await _lifecycle.close_driver(self, why)

    async def connect(self) -> None:
        """Connect; while the supervisor is reconnecting, wait until it has (or gave up)."""
        if self._state is State.READY and self._status.state is not State.READY:
            # Connected as a resource, with the connection down: what the registry's recovery
            # asks for is a working connection, which only the supervisor can bring back.
            await self.wait_ready()
            return
        await super().connect()

    async def _validate_connection(self) -> bool:
        # Down while reconnecting: never report a connection that is not there.
        if self._status.state is not State.READY:
            return False
        return await self._ping()

    # ---- subscriptions on the wire ----------------------------------------------------------

    async def _open_and_restore(self) -> None:
        """Open a fresh driver connection and subscribe it to every registered channel."""
        rt = self._rt
        assert rt is not None
        rt.applied.clear()
        await self._open()
        await self._restore_subscriptions()

    async def _restore_subscriptions(self) -> None:
        """Bring the server's subscriptions in line with the registrations (see ``StreamRuntime``)."""
        rt = self._rt
        assert rt is not None
        await rt.restore(self)

    # ---- state transitions (the supervisor and self-healing drivers call these) -------------

    def _note_connection_lost(self, exc: BaseException | str) -> None:
        """Record a lost connection and enter ``reconnecting`` (for self-healing drivers too)."""
        transitions.lost(self, exc)

    def _note_attempt_failed(self, attempt: int, exc: BaseException) -> None:
        self._last_error = self.translate(exc, "reconnect").args[0]
        log.info("%s: reconnect attempt %d failed: %s", self.label, attempt, self._last_error)

    def _note_connection_restored(self, attempts: int | None = None) -> None:
        """Record a successful reconnect (subscriptions restored) and enter ``ready``."""
        transitions.restored(self, attempts)

    def _give_up(self, reason: str) -> None:
        transitions.give_up(self, reason)

    def _backoff(self, attempt: int) -> float:
        return backoff(self.reconnect_interval).delay(attempt)

    def _reconnect_budget(self) -> float:
        """Longest time the whole backoff schedule may take (for self-healing drivers)."""
        return backoff(self.reconnect_interval).budget(self.max_reconnect_attempts)

    # ---- for backends -----------------------------------------------------------------------

    def _pipeline(self) -> Pipeline:
        """The current connection's pipeline, for a receive loop (see ``_pipeline``'s docstring)."""
        rt = self._rt
        assert rt is not None, "_pipeline() outside a connection"
        return rt.pipeline

    def _check_subscription(self, channel: str, options: dict[str, Any]) -> None:
        """Reject bad channel names or options before anything is stored (backends override)."""

    async def _open(self) -> None:
        raise NotImplementedError

    async def _listen(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        pass

    async def _subscribe_remote(self, channel: str, options: dict[str, Any]) -> None:
        pass

    async def _unsubscribe_remote(self, channel: str) -> None:
        pass

    async def _ping(self) -> bool:
        return True

    async def _hand_over_from(self, previous: Self) -> None:
        """Move delivery from ``previous`` to this instance (see ``_handover``); backends refine."""
        await _handover.splice(self, previous)

    async def _release(self) -> None:
        """Stop receiving for good (handed over): end the receive loop, hand over what is buffered.

        Backends with something to settle first (Kafka commits, RabbitMQ cancels
        consumers, MQTT leaves its session) override this.
        """
        await _lifecycle.release(self)

    async def _stop_receiving(self, rt: StreamRuntime) -> None:
        await _lifecycle.stop_receiving(rt)

    async def _restart(self) -> None:
        """Reconnect now, on purpose: no backoff, and not a lost connection (hand-overs use this)."""
        rt = self._rt
        assert rt is not None
        await self._stop_receiving(rt)
        await restart(self, rt)
