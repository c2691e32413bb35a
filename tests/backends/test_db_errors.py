"""Each database backend's table of driver exceptions covers every class its driver documents (no server)."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from xresource.backends.databases import mongodb, mysql, postgresql
from xresource.backends.databases._base import ErrorTable, table_entry
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceError,
    XResourceIntegrityError,
    XResourcePermissionError,
    XResourcePoolExhaustedError,
    XResourceQueryError,
    XResourceSyntaxError,
    XResourceTimeoutError,
)


def documented_exceptions(*modules: ModuleType) -> set[type[BaseException]]:
    """The public exception classes a driver module exports (warnings are never raised)."""
    found: set[type[BaseException]] = set()
    for module in modules:
        names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
        for name in names:
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, Exception) and not issubclass(value, Warning):
                found.add(value)
    return found


def drivers() -> list[tuple[str, ErrorTable, set[type[BaseException]]]]:
    import asyncpg.exceptions
    import bson.errors
    import pymongo.errors
    import pymysql.err

    return [
        ("asyncpg", postgresql.error_table(), documented_exceptions(asyncpg.exceptions)),
        ("pymysql", mysql.error_table(), documented_exceptions(pymysql.err)),
        ("pymongo", mongodb.error_table(), documented_exceptions(pymongo.errors, bson.errors)),
    ]


@pytest.mark.parametrize(
    ("driver", "table", "documented"), drivers(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_documented_exception_has_an_entry(
    driver: str, table: ErrorTable, documented: set[type[BaseException]]
) -> None:
    assert len(documented) > 5, f"{driver}: found too few exception classes to trust this test"
    missing = sorted(cls.__name__ for cls in documented if table_entry(table, cls) is None)
    assert not missing, f"{driver} exceptions with no entry (nor a base with one): {missing}"
    stale = sorted(cls.__name__ for cls in table if cls not in documented)
    assert not stale, f"{driver}: table entries for classes the driver does not export: {stale}"
    assert all(issubclass(ours, XResourceError) for ours in table.values())


def test_postgresql_classes() -> None:
    from asyncpg import exceptions as pg

    table = postgresql.error_table()
    expected = {
        pg.PostgresSyntaxError: XResourceSyntaxError,
        pg.UndefinedTableError: XResourceSyntaxError,
        pg.UniqueViolationError: XResourceIntegrityError,
        pg.ForeignKeyViolationError: XResourceIntegrityError,
        pg.NotNullViolationError: XResourceIntegrityError,
        pg.InsufficientPrivilegeError: XResourcePermissionError,
        pg.DivisionByZeroError: XResourceQueryError,
        pg.InvalidPasswordError: XResourceAuthenticationError,
        pg.QueryCanceledError: XResourceTimeoutError,
        pg.AdminShutdownError: XResourceConnectionError,
        pg.DeadlockDetectedError: XResourceConnectionError,
        pg.ConnectionDoesNotExistError: XResourceConnectionError,
        pg.TooManyConnectionsError: XResourceConnectionError,
    }
    assert {cls: table_entry(table, cls) for cls in expected} == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (1064, XResourceSyntaxError),
        (1146, XResourceSyntaxError),
        (1054, XResourceSyntaxError),
        (1062, XResourceIntegrityError),
        (1452, XResourceIntegrityError),
        (4025, XResourceIntegrityError),
        (1142, XResourcePermissionError),
        (1045, XResourceAuthenticationError),
        (1205, XResourceTimeoutError),
        (1213, XResourceConnectionError),
        (2003, XResourceConnectionError),
        (1366, XResourceQueryError),
    ],
)
def test_mysql_error_numbers(code: int, expected: type[XResourceError]) -> None:
    from pymysql import err

    # PyMySQL picks its class from the number as it does for a server answer.
    exc_class = err.error_map.get(code, err.InternalError if code < 1000 else err.OperationalError)
    exc = exc_class(code, "message")
    resource = mysql.MySQLResource(name="m", connection_string="mysql://h/db")
    assert resource.error_class_for(exc) is expected
    assert resource._error_code(exc) == code


@pytest.mark.parametrize(
    ("exc_name", "args", "expected"),
    [
        ("DuplicateKeyError", ("E11000 duplicate key", 11000), XResourceIntegrityError),
        ("OperationFailure", ("unknown top level operator: $x", 2), XResourceSyntaxError),
        ("OperationFailure", ("not authorized", 13), XResourcePermissionError),
        ("OperationFailure", ("Authentication failed", 18), XResourceAuthenticationError),
        ("OperationFailure", ("operation exceeded time limit", 50), XResourceTimeoutError),
        ("OperationFailure", ("something else", 99999), XResourceQueryError),
        ("WriteError", ("Document failed validation", 121), XResourceIntegrityError),
        ("WaitQueueTimeoutError", ("timed out",), XResourcePoolExhaustedError),
        ("ServerSelectionTimeoutError", ("h:1: [Errno 111] Connection refused",), XResourceConnectionError),
        ("ServerSelectionTimeoutError", ("h:1: timed out",), XResourceTimeoutError),
        ("AutoReconnect", ("connection closed",), XResourceConnectionError),
        ("NotPrimaryError", ("not primary",), XResourceConnectionError),
        ("InvalidName", ("bad name",), XResourceSyntaxError),
    ],
)
def test_mongodb_classes_and_codes(
    exc_name: str, args: tuple[object, ...], expected: type[XResourceError]
) -> None:
    from pymongo import errors

    exc = getattr(errors, exc_name)(*args)
    resource = mongodb.MongoResource(name="m", connection_string="mongodb://h/db")
    assert resource.error_class_for(exc) is expected


def test_mongodb_bulk_write_takes_the_code_of_its_first_failed_write() -> None:
    from pymongo import errors

    exc = errors.BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "dup"}]})
    resource = mongodb.MongoResource(name="m", connection_string="mongodb://h/db")
    assert resource.error_class_for(exc) is XResourceIntegrityError
    assert resource._error_code(exc) == 11000


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), XResourceTimeoutError),
        (ConnectionResetError(), XResourceConnectionError),
        (TypeError("bad argument"), XResourceQueryError),
    ],
)
def test_exceptions_outside_the_drivers(exc: BaseException, expected: type[XResourceError]) -> None:
    for resource in (
        postgresql.PostgresResource(name="p", connection_string="postgresql://h/db"),
        mysql.MySQLResource(name="m", connection_string="mysql://h/db"),
        mongodb.MongoResource(name="m", connection_string="mongodb://h/db"),
    ):
        assert resource.error_class_for(exc) is expected, resource.type
