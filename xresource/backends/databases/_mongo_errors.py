"""MongoDB's errors mapped to ours: server error codes first, then PyMongo's and BSON's classes."""

from __future__ import annotations

import errno
import functools

from xresource.backends.databases._base import ErrorTable, classify
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceError,
    XResourceIntegrityError,
    XResourcePermissionError,
    XResourcePoolExhaustedError,
    XResourceQueryError,
    XResourceStateError,
    XResourceSyntaxError,
    XResourceTimeoutError,
)

# MongoDB server error codes (https://www.mongodb.com/docs/manual/reference/error-codes/)
# that decide the class of an OperationFailure or write error.
BY_CODE: dict[int, type[XResourceError]] = {
    18: XResourceAuthenticationError,  # AuthenticationFailed
    13: XResourcePermissionError,  # Unauthorized: the user may not run this
    **dict.fromkeys(
        (11000, 11001, 12582, 121), XResourceIntegrityError
    ),  # duplicate key; document validation
    # BadValue, FailedToParse, TypeMismatch, DollarPrefixedFieldName, CommandNotFound,
    # InvalidOptions, InvalidNamespace, InvalidPipelineOperator
    **dict.fromkeys((2, 9, 14, 52, 59, 72, 73, 168), XResourceSyntaxError),
    **dict.fromkeys(
        (50, 202, 262), XResourceTimeoutError
    ),  # MaxTimeMSExpired, NetworkInterfaceExceededTimeLimit, ExceededTimeLimit
    # Host unreachable or not found, shutdown, not primary, stepped down, interrupted: retrying helps.
    **dict.fromkeys((6, 7, 89, 91, 189, 10107, 11600, 11602, 13435, 13436), XResourceConnectionError),
}


@functools.cache
def error_table() -> ErrorTable:
    """PyMongo's and BSON's exception classes mapped to ours; ``BY_CODE`` refines server answers."""
    from bson import errors as bson_errors
    from pymongo import errors

    return {
        errors.WaitQueueTimeoutError: XResourcePoolExhaustedError,
        errors.ServerSelectionTimeoutError: XResourceTimeoutError,  # or refused: see error_class_for
        errors.NetworkTimeout: XResourceTimeoutError,
        errors.ExecutionTimeout: XResourceTimeoutError,
        errors.WTimeoutError: XResourceTimeoutError,
        errors.ConnectionFailure: XResourceConnectionError,  # AutoReconnect, NotPrimaryError, ...
        errors.ConfigurationError: XResourceConnectionError,  # includes InvalidURI
        errors.InvalidOperation: XResourceConnectionError,  # e.g. the client was closed
        errors.ProtocolError: XResourceConnectionError,
        errors.WriteConcernError: XResourceConnectionError,  # replication did not confirm in time
        errors.CursorNotFound: XResourceConnectionError,  # the server dropped the cursor: query again
        errors.DuplicateKeyError: XResourceIntegrityError,
        errors.OperationFailure: XResourceQueryError,  # refined by code (auth, permission, syntax, ...)
        errors.WriteError: XResourceQueryError,
        errors.BulkWriteError: XResourceQueryError,
        errors.ClientBulkWriteException: XResourceQueryError,
        errors.CollectionInvalid: XResourceQueryError,
        errors.InvalidName: XResourceSyntaxError,
        errors.DocumentTooLarge: XResourceQueryError,
        errors.EncryptionError: XResourceQueryError,
        errors.EncryptedCollectionError: XResourceQueryError,
        errors.PyMongoError: XResourceQueryError,
        bson_errors.BSONError: XResourceQueryError,  # a value BSON cannot encode, a bad ObjectId
    }


def says_refused(text: str) -> bool:
    """PyMongo words a refused connection as asyncio does: ``[Errno 111] Connect call failed``."""
    return "refused" in text.lower() or f"[Errno {errno.ECONNREFUSED}]" in text


def error_class(exc: BaseException, code: int | None) -> type[XResourceError]:
    """Our class for ``exc`` (``code``: the server's error code, if any)."""
    if isinstance(exc, XResourceStateError):
        return type(exc)
    found = classify(error_table(), exc)
    if found is XResourceQueryError or found is XResourceConnectionError:
        # PyMongo raises one class for many server answers; the code tells them apart.
        if code is not None:
            return BY_CODE.get(code, found)
    elif found is XResourceTimeoutError and says_refused(str(exc)):
        # A server selection timeout is raised for every unreachable server; its
        # details tell a refused connection (fails at once) from a silent server.
        return XResourceConnectionError
    return found
