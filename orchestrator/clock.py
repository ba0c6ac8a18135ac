"""The database's clock, as a SQL expression.

Leases, heartbeats and the times tasks were claimed, sent and finished are compared across
hosts: a worker's lease is checked by the reconciler on another machine. Taking every such
time from the one database server means a host whose clock is off cannot make a lease look
expired (or alive) to the others. Times are naive UTC, like the columns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import DateTime, Float, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class db_now(FunctionElement[Any]):
    """The database server's current UTC time, plus `offset_s` seconds (may be negative).

    Sub-second precision on both dialects: microseconds on PostgreSQL, milliseconds on SQLite.
    """

    type = DateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, offset_s: float = 0.0) -> None:
        # The offset is a bound parameter, so statements with different leases share a cache entry.
        super().__init__(literal(float(offset_s), Float()))


@compiles(db_now, "postgresql")
def _postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # clock_timestamp(), not now(): the time of this statement, not of its transaction's start.
    offset = compiler.process(element.clauses, **kw)
    return f"(timezone('utc', clock_timestamp()) + make_interval(secs => {offset}))"


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # The same text form SQLAlchemy stores ('YYYY-MM-DD HH:MM:SS.ffffff'), so stored times
    # compare as strings the way they compare as times.
    offset = compiler.process(element.clauses, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%.6f seconds', {offset})) || '000')"
