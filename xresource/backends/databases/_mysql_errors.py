"""MySQL's errors mapped to ours: server error numbers first, then PyMySQL's classes."""

from __future__ import annotations

import functools

from xresource.backends.databases._base import ErrorTable, classify
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceError,
    XResourceIntegrityError,
    XResourcePermissionError,
    XResourceQueryError,
    XResourceSyntaxError,
    XResourceTimeoutError,
)

# Server error numbers that decide the class whatever PyMySQL's exception class is: PyMySQL
# files most server errors under OperationalError, access denied and deadlocks included
# (https://mariadb.com/kb/en/mariadb-error-codes/, https://dev.mysql.com/doc/mysql-errors/).
BY_CODE: dict[int, type[XResourceError]] = {
    **dict.fromkeys(
        (1044, 1045, 1130, 1251, 1698), XResourceAuthenticationError
    ),  # access denied, auth plugin
    **dict.fromkeys((1142, 1143, 1227, 1370), XResourcePermissionError),  # table, column, privilege, routine
    **dict.fromkeys(
        (1205, 1969, 3024), XResourceTimeoutError
    ),  # lock wait, max_statement_time, max_execution_time
    # Too many connections, unknown database, shutdown, connection killed, deadlock (transient: retry).
    **dict.fromkeys((1040, 1049, 1053, 1927, 1213), XResourceConnectionError),
    # Unknown column, table, routine; wrong column count; no database selected.
    **dict.fromkeys((1046, 1051, 1054, 1109, 1136, 1305, 1630), XResourceSyntaxError),
    **dict.fromkeys((3819, 4025), XResourceIntegrityError),  # check constraint (MySQL, MariaDB)
}


@functools.cache
def error_table() -> ErrorTable:
    """PyMySQL's exception classes (aiomysql raises them too) mapped to ours; error numbers
    in ``BY_CODE`` come first."""
    from pymysql import err

    return {
        err.IntegrityError: XResourceIntegrityError,  # duplicate key, foreign key, not null
        err.ProgrammingError: XResourceSyntaxError,  # syntax, no such table, wrong names
        err.DataError: XResourceQueryError,  # value out of range, too long, truncated
        err.NotSupportedError: XResourceQueryError,
        err.OperationalError: XResourceQueryError,  # other server errors: the statement was refused
        err.InternalError: XResourceQueryError,
        err.InterfaceError: XResourceConnectionError,  # the connection is gone
        err.DatabaseError: XResourceQueryError,
        err.MySQLError: XResourceQueryError,
    }


def server_code(exc: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL exception, else ``None``."""
    if type(exc).__module__.startswith("pymysql") and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def error_class(exc: BaseException) -> type[XResourceError]:
    """Our class for ``exc``: its server error number first, then its PyMySQL class."""
    code = server_code(exc)
    if code is not None:
        found = BY_CODE.get(code)
        if found is not None:
            return found
        if 2000 <= code < 3000:  # 2xxx: the client's own connection errors
            return (
                XResourceTimeoutError if isinstance(exc.__cause__, TimeoutError) else XResourceConnectionError
            )
    return classify(error_table(), exc)
