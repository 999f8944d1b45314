"""What the HTTP API takes (query strings and bodies) and what it answers, as pydantic models.
The OpenAPI document is built from these (openapi.py); docs/api.md describes them."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from siaga112.call.items import CommandResult
from siaga112.ids import AgencyCode, CallId, Id, Note
from siaga112.model import BlockEntry, ChosenState, Disposition, OperatorSnapshot
from siaga112.records.schemas import (
    BlockRecord,
    CallEventRecord,
    CallRecord,
    DispatchRecord,
    Referral,
)

CATEGORY_PATTERN = r"^(0[1-9]|1[0-2])$"


class _In(BaseModel):
    """A request part: unknown fields are an error, so a misspelt one is named, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _utc(v: datetime | None) -> datetime | None:
    """Dates without a zone are taken as UTC."""
    if v is not None and v.tzinfo is None:
        return v.replace(tzinfo=UTC)
    return v


# -- errors ------------------------------------------------------------------------------------


class ErrorAnswer(BaseModel):
    error: str = Field(description="a short snake_case name of the problem")
    detail: object = Field(None, description="what was wrong: a message or pydantic's errors")


# -- health ------------------------------------------------------------------------------------


class HealthAnswer(BaseModel):
    status: Literal["ok"] = "ok"
    role: Literal["active", "standby"] = Field(
        default="active", description="HA (docs/cluster.md): standby takes no call until it "
        "takes the lead; a daemon without HA is always active")


class ReadyAnswer(BaseModel):
    ready: bool
    role: Literal["active", "standby"] = Field(
        default="active", description="a standby is never ready: it handles no call")
    ari: bool
    database: bool
    mqtt: bool | Literal["disabled"]
    journal_backlog: int = Field(description="records waiting in the local journal")
    overflow: bool = Field(default=False, description="no operator can answer: waiting callers "
                           "go to the overflow target (queue.overflow)")
    overflow_since: datetime | None = None
    journal: Literal["ok", "degraded"] = Field(
        default="ok", description="degraded: records are at risk (journal full or unwritable, "
        "quarantine unwritable); not ready")
    journal_problems: list[str] = Field(default_factory=list,
                                        description="what puts records at risk now")


# -- operators ---------------------------------------------------------------------------------


class OperatorStateBody(_In):
    state: ChosenState
    reason: Note | None = Field(None, max_length=200)


class OperatorsAnswer(BaseModel):
    operators: list[OperatorSnapshot]


# -- calls -------------------------------------------------------------------------------------


class CallsQuery(_In):
    since: datetime | None = Field(None, description="arrived at or after (ISO 8601; UTC if no "
                                   "zone)")
    until: datetime | None = Field(None, description="arrived before (ISO 8601; UTC if no zone)")
    caller: str | None = Field(None, max_length=64, description="any form; normalised to E.164")
    disposition: Disposition | None = None
    operator: Id | None = Field(None, max_length=64)
    limit: int = Field(100, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000)

    _zones = field_validator("since", "until")(_utc)


class CallList(BaseModel):
    calls: list[CallRecord]
    limit: int
    offset: int


class CallAnswer(BaseModel):
    call_id: str
    live: bool = Field(description="the daemon has this call now")
    call: CallRecord | None = Field(description="the record; null while not yet written")
    events: list[CallEventRecord]
    dispatches: list[DispatchRecord]


class MarkedDisposition(StrEnum):
    PRANK = "prank"
    GHOST = "ghost"
    GENUINE = "genuine"


class DispositionBody(_In):
    disposition: MarkedDisposition
    category: str | None = Field(None, pattern=CATEGORY_PATTERN, description="01..12")


class DispositionAnswer(BaseModel):
    call_id: str
    live: bool = Field(description="marked on the live call (else on its record)")
    result: CommandResult = Field(description="'ok'")
    call: CallRecord | None = Field(description="the record after marking; null for a live call")


class AgencyBody(_In):
    agency: AgencyCode = Field(description="two-digit agency code")


class AgencyAnswer(BaseModel):
    call_id: str
    agency: str
    result: CommandResult = Field(description="'dialling' (202) or 'already on the call' (200)")


# -- blocklist ---------------------------------------------------------------------------------


class BlocklistQuery(_In):
    include_expired: bool = False


class BlocklistAnswer(BaseModel):
    blocks: list[BlockRecord]


class BlockBody(_In):
    number: str = Field(max_length=64, description="any form; normalised to E.164")
    hours: float | None = Field(gt=0, le=24 * 365 * 10, description="null: until unblocked")
    reason: Note = Field(min_length=1, max_length=200)


class UnblockQuery(_In):
    reason: Note = Field(min_length=1, max_length=200)


class BlockAnswer(BlockEntry):
    pass


class UnblockAnswer(BaseModel):
    number: str
    unblocked: bool


# -- referrals and KPIs ------------------------------------------------------------------------


class ReferralsQuery(_In):
    format: Literal["json", "csv"] = "json"
    only_new: bool = Field(False, description="only those not exported yet")


class ReferralsAnswer(BaseModel):
    referrals: list[Referral]


class KpisQuery(_In):
    since: datetime | None = Field(None, description="default: 24 h before until")
    until: datetime | None = Field(None, description="default: now")

    _zones = field_validator("since", "until")(_utc)

    @model_validator(mode="after")
    def _ordered(self) -> KpisQuery:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


# -- dispatches --------------------------------------------------------------------------------


class MovingBody(_In):
    call_id: CallId = Field(description="the call the dispatch belongs to")
    agency: AgencyCode = Field(description="two-digit agency code: the dispatch's agency")


class MovingAnswer(BaseModel):
    dispatch_id: str
    call_id: str
    agency: str
    accepted: bool = True
