"""Builds the events of whole calls for the records tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from siaga112.model import CallEvent, CallEventType, Disposition, utcnow

T = CallEventType


def call_events(
    call_id: str,
    caller: str = "+6281234567890",
    start: datetime | None = None,
    wait: float = 4.0,
    talk: float = 30.0,
    operator: str | None = "op1",
    disposition: Disposition = Disposition.GENUINE,
    marked: Disposition | None = None,
    agency: str | None = None,
) -> list[CallEvent]:
    """ARRIVED .. ENDED for one call; operator None makes it abandoned after `wait` s."""
    t0 = start or utcnow()
    evs: list[tuple[CallEventType, float, dict[str, object]]] = [
        (
            T.ARRIVED,
            0,
            {
                "caller_raw": caller.lstrip("+"),
                "caller": caller,
                "line_type": "mobile",
                "trunk": "tsel",
            },
        ),
        (T.ANSWERED, 0.2, {}),
        (T.QUEUED, 1.0, {"position": 1, "priority": False}),
    ]
    end = wait + (talk if operator else 0)
    if operator:
        evs.append((T.CONNECTED, wait, {"operator": operator}))
        evs.append((T.CATEGORY, wait + 5, {"category": "03"}))
    if agency:
        did = f"{call_id}-{agency}"
        evs.append((T.AGENCY_REQUESTED, wait + 6, {"agency": agency, "dispatch_id": did}))
        evs.append(
            (T.AGENCY_JOINED, wait + 8, {"agency": agency, "line": "l1", "dispatch_id": did})
        )
        evs.append((T.AGENCY_ACCEPTED, wait + 9, {"agency": agency, "dispatch_id": did}))
    if marked:
        evs.append((T.DISPOSITION, end - 0.5, {"disposition": marked.value, "by": operator}))
    evs.append(
        (T.ENDED, end, {"disposition": disposition.value, "cause": 16, "hangup_by": "caller"})
    )
    return [
        CallEvent(call_id=call_id, seq=i, type=typ, at=t0 + timedelta(seconds=dt), data=data)
        for i, (typ, dt, data) in enumerate(evs, start=1)
    ]
