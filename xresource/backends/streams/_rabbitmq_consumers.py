"""RabbitMQ's consuming side: which queue a subscription reads, declaring and binding it, the consumer.

``subscribe(binding_key)`` reads a private queue of this instance (named
``xresource.<name>.<instance>.<key>.<random>``, expiring ``queue_expires``
seconds after its last consumer left, so it bridges an outage); with
``queue=NAME`` it reads a shared, durable queue (a work queue); with the
default exchange (``exchange: ""``) the channel is the queue name. Private
queue names are kept across reconnects and handed to the successor on a
reload (see ``_rabbitmq_handover``).

A message is acknowledged once it is in the buffer: one lost in a closed
channel before that point is redelivered after the reconnect.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from xresource.backends.streams._codec import decode_payload
from xresource.backends.streams._message import Message

if TYPE_CHECKING:
    from xresource.backends.streams.rabbitmq import RabbitMQResource, _RabbitRuntime

log = logging.getLogger("xresource.streams.rabbitmq")

_NOT_IN_QUEUE_NAME_RE = re.compile(r"[^A-Za-z0-9_.:-]")


def queue_name(stream: RabbitMQResource, channel: str, options: dict[str, Any]) -> str:
    """The queue ``subscribe(channel, **options)`` consumes (a private name is made once, then kept)."""
    shared: str | None = options.get("queue")
    if shared:
        return shared
    if not stream.exchange:
        return channel  # the default exchange routes by queue name
    name = stream._queue_names.get(channel)
    if name is None:
        prefix = f"xresource.{stream.name}.{stream._instance}."
        tail = _NOT_IN_QUEUE_NAME_RE.sub("_", channel)[: 255 - len(prefix) - 9]
        name = f"{prefix}{tail}.{uuid.uuid4().hex[:8]}"
        stream._queue_names[channel] = name
    return name


async def consume(
    stream: RabbitMQResource, rt: _RabbitRuntime, channel: str, options: dict[str, Any]
) -> None:
    """Declare (and bind) the subscription's queue and consume it on the current connection."""
    if channel in rt.consumer_tags:
        return  # already consuming on this connection (aio-pika restores it itself)
    amqp_channel = rt.consume_channel
    name = queue_name(stream, channel, options)
    private = options.get("queue") is None and bool(stream.exchange)
    if private:
        queue = await amqp_channel.declare_queue(
            name,
            durable=False,
            auto_delete=False,
            arguments={"x-expires": int(stream.queue_expires * 1000)},
        )
    else:
        queue = await amqp_channel.declare_queue(name, durable=True)
    if stream.exchange:
        await queue.bind(rt.consume_exchange, routing_key=channel)
    tag = await queue.consume(consumer_for(stream, rt, channel, name))
    rt.queues[channel] = queue
    rt.consumer_tags[channel] = tag


async def stop_consuming(stream: RabbitMQResource, rt: _RabbitRuntime, channel: str) -> None:
    """Cancel the subscription's consumer; delete its queue if it is a private one."""
    queue = rt.queues.pop(channel, None)
    tag = rt.consumer_tags.pop(channel, None)
    name = stream._queue_names.pop(channel, None)
    if queue is None:
        return
    if tag is not None:
        await queue.cancel(tag)
    if name is not None:  # a private queue: nobody else reads it
        await rt.consume_channel.queue_delete(name)


def consumer_for(
    stream: RabbitMQResource, rt: _RabbitRuntime, subscription: str, queue: str
) -> Callable[[Any], Awaitable[None]]:
    """aio-pika's callback for one subscription: buffer the message, then acknowledge it."""
    pipe = rt.pipeline
    counters = stream._counters
    label = stream.label

    async def on_message(incoming: Any) -> None:
        rt.busy += 1  # the hand-over waits for callbacks under way (rt.idle)
        try:
            body = incoming.body
            message = Message(
                channel=incoming.routing_key or queue,
                data=decode_payload(body),
                raw=body,
                meta={
                    "queue": queue,
                    "redelivered": incoming.redelivered,
                    "headers": dict(incoming.headers or {}),
                    "content_type": incoming.content_type,
                },
                subscription=subscription,
            )
            # aiormq runs a task per delivery: while one waits for room in the buffer, later
            # ones queue behind it on the lock (first come, first served), keeping the order.
            order = rt.order
            if order.locked() or not pipe.offer(message):
                async with order:
                    await pipe.deliver(message)
            # Acknowledged once buffered: a message lost in a closed channel
            # before this point is redelivered after the reconnect.
            try:
                await incoming.ack()
            except Exception as exc:  # noqa: BLE001 - the broker redelivers it: counted, not fatal
                counters.cleanup_errors += 1
                log.debug("%s: ack failed (it will be redelivered): %s", label, exc)
        finally:
            rt.busy -= 1
            idle = rt.idle
            if idle is not None and not rt.busy:
                idle.set_result(None)
                rt.idle = None

    return on_message
