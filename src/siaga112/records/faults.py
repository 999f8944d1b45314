"""What retrying can do about a database failure: the writer's one question about an
exception (records/writer.py). Only connection-type failures mean "the database is away"."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLSTATE classes: the database is away (connection exception, insufficient resources,
# operator intervention, which includes 57014 statement timeout) ...
_DOWN_CLASSES = frozenset({"08", "53", "57"})
# ... or something that may pass (transaction rollback, object in use, system error, internal).
_TRANSIENT_CLASSES = frozenset({"40", "55", "58", "XX"})


class Fault(StrEnum):
    DOWN = "down"  # the database is away: retry for ever, the journal holds the records
    TRANSIENT = "transient"  # may pass: retried, quarantined after quarantine_after failures
    PERMANENT = "permanent"  # the data itself is refused: quarantined at once


def _sqlstate(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    for _ in range(5):  # the error, the driver's error, what caused it
        if seen is None:
            break
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if code:
            return str(code)
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def classify(exc: BaseException) -> Fault:
    """What retrying can do about exc. Only connection-type failures mean "database down"."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Fault.DOWN
    code = _sqlstate(exc)
    if code is not None:
        cls = code[:2].upper()
        if cls in _DOWN_CLASSES:
            return Fault.DOWN
        return Fault.TRANSIENT if cls in _TRANSIENT_CLASSES else Fault.PERMANENT
    chain: BaseException | None = exc
    for _ in range(5):
        if chain is None:
            break
        if isinstance(chain, OSError | TimeoutError | PoolTimeout | DisconnectionError):
            return Fault.DOWN
        chain = getattr(chain, "orig", None) or chain.__cause__
    return Fault.TRANSIENT


def short(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    orig = getattr(exc, "orig", None)
    code = _sqlstate(exc)
    text = f"{type(exc).__name__}: {orig if orig is not None else exc}"
    return (f"[{code}] {text}" if code else text)[:300]
