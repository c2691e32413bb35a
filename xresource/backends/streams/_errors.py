"""Driver exceptions to our error tree, by exact type: one table per backend.

A table maps exception classes of the driver to one of our error classes; an
exception is looked up by its class and then its bases, most specific first,
so a table lists the driver's root class (mapped to the generic connection
error) and the classes that mean something more precise. Tests check that
every exception class the driver exports resolves through the table.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from xresource._optional import require
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceError,
    XResourceTimeoutError,
)

ErrorTable = Mapping[type[BaseException], type[XResourceError]]


def classify(exc: BaseException, table: ErrorTable) -> type[XResourceError] | None:
    """Our error class for ``exc``: its own class's entry, else its nearest base's, else None."""
    for cls in type(exc).__mro__:
        found = table.get(cls)
        if found is not None:
            return found
    return None


@functools.cache
def kafka_errors() -> ErrorTable:
    """aiokafka's exceptions by exact type."""
    errors = require("aiokafka.errors", "kafka", type_name="kafka")
    auth = XResourceAuthenticationError
    timeout = XResourceTimeoutError
    return {
        errors.KafkaError: XResourceConnectionError,
        errors.ConsumerStoppedError: XResourceConnectionError,  # not a KafkaError
        errors.AuthenticationFailedError: auth,
        errors.AuthenticationMethodNotSupported: auth,
        errors.SaslAuthenticationFailed: auth,
        errors.UnsupportedSaslMechanismError: auth,
        errors.IllegalSaslStateError: auth,
        errors.TopicAuthorizationFailedError: auth,
        errors.GroupAuthorizationFailedError: auth,
        errors.ClusterAuthorizationFailedError: auth,
        errors.TransactionalIdAuthorizationFailed: auth,
        errors.DelegationTokenAuthorizationFailed: auth,
        errors.DelegationTokenAuthDisabled: auth,
        errors.SecurityDisabled: auth,
        errors.KafkaTimeoutError: timeout,
        errors.RequestTimedOutError: timeout,
    }


@functools.cache
def rabbitmq_errors() -> ErrorTable:
    """aio-pika's (aiormq's) and pamqp's exceptions by exact type; timeouts are asyncio's."""
    amqp = require("aiormq.exceptions", "rabbitmq", type_name="rabbitmq")
    frames = require("pamqp.exceptions", "rabbitmq", type_name="rabbitmq")
    auth = XResourceAuthenticationError
    return {
        amqp.AMQPError: XResourceConnectionError,
        amqp.AMQPException: XResourceConnectionError,
        amqp.ChannelInvalidStateError: XResourceConnectionError,
        amqp.AuthenticationError: auth,
        amqp.ProbableAuthenticationError: auth,
        amqp.ChannelAccessRefused: auth,
        frames.PAMQPException: XResourceConnectionError,
        frames.AMQPAccessRefused: auth,
    }
