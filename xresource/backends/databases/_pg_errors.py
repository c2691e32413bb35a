"""asyncpg's exceptions mapped to ours."""

from __future__ import annotations

import functools

from xresource.backends.databases._base import ErrorTable
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceIntegrityError,
    XResourcePermissionError,
    XResourceQueryError,
    XResourceSyntaxError,
    XResourceTimeoutError,
)


@functools.cache
def error_table() -> ErrorTable:
    """asyncpg's exception classes mapped to ours (asyncpg raises one class per SQLSTATE,
    each under the class of its SQLSTATE class, which is what most entries name)."""
    from asyncpg import exceptions as pg

    query, syntax, integrity = XResourceQueryError, XResourceSyntaxError, XResourceIntegrityError
    connection, timeout = XResourceConnectionError, XResourceTimeoutError
    return {
        # Reaching the server, and who we are.
        pg.PostgresConnectionError: connection,  # 08: includes ConnectionDoesNotExistError
        pg.InvalidAuthorizationSpecificationError: XResourceAuthenticationError,  # 28
        pg.InvalidCatalogNameError: connection,  # 3D000: the database does not exist
        pg.InsufficientResourcesError: connection,  # 53: too many connections, disk full
        pg.OperatorInterventionError: connection,  # 57: admin shutdown, crash recovery
        pg.QueryCanceledError: timeout,  # 57014: statement_timeout, command_timeout
        pg.LockNotAvailableError: timeout,  # 55P03: lock_timeout
        pg.PostgresSystemError: connection,  # 58: I/O errors on the server
        pg.ConfigFileError: connection,  # F0
        pg.InternalServerError: connection,  # XX
        pg.FatalPostgresError: connection,  # the server ends the session
        # Transient conflicts: the same transaction may succeed when run again.
        pg.TransactionRollbackError: connection,  # 40: serialization failure, deadlock
        # The request itself.
        pg.SyntaxOrAccessError: syntax,  # 42: syntax, undefined table/column/function
        pg.InsufficientPrivilegeError: XResourcePermissionError,  # 42501
        pg.InvalidSchemaNameError: syntax,  # 3F000: no such schema
        pg.IntegrityConstraintViolationError: integrity,  # 23: unique, foreign key, not null, check
        pg.PostgresError: query,  # every other SQLSTATE class: data, cardinality, state, PL/pgSQL, ...
        # The client library.
        pg.InterfaceError: query,  # misuse: wrong argument count or type, connection busy
        pg.ClientConfigurationError: connection,  # bad connection settings
        pg.InternalClientError: connection,  # protocol errors, target server attributes
        pg.OutdatedSchemaCacheError: connection,  # a concurrent schema change: retrying helps
    }
