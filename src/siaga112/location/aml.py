"""Advanced Mobile Location (ETSI TS 103 625), the HTTPS form Android's Emergency Location
Service sends: ``key=value`` pairs joined by ``&`` (form encoding), e.g.
``v=3&device_number=%2B6281234567890&location_latitude=-6.12&location_longitude=106.15&
location_accuracy=12&location_time=1732950000000&location_source=GPS``.

``parse_aml`` checks every field on its own and raises ``AmlError`` naming the first field that
is wrong (what the API answers as 422). Bounds: the body is at most ``MAX_BODY`` bytes of UTF-8,
at most ``MAX_FIELDS`` fields, each name at most 64 and each value at most ``MAX_VALUE``
characters, printable; a field given twice is refused. Fields we do not know are kept (bounded)
but not used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from siaga112.callerid import normalise

MAX_BODY = 4096
MAX_FIELDS = 64
MAX_VALUE = 256
REQUIRED = ("v", "device_number", "location_latitude", "location_longitude",
            "location_accuracy")
_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
T = TypeVar("T")
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class AmlError(ValueError):
    """One field (or the body as a whole, field "body") is not acceptable."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class AmlMessage:
    number: str  # the handset's number, E.164
    lat: float
    lon: float
    accuracy_m: float
    version: str
    location_time: datetime | None = None
    sent_time: datetime | None = None
    source: str | None = None  # location_source: GPS, WiFi, Cell, ...
    confidence_pct: float | None = None
    altitude_m: float | None = None
    vertical_accuracy_m: float | None = None
    emergency_number: str | None = None
    fields: dict[str, str] = field(default_factory=dict)  # every field as received

    def data(self) -> dict[str, Any]:
        """A location event's data (JSON-ready)."""
        return {
            "source": "aml", "lat": self.lat, "lon": self.lon, "radius_m": self.accuracy_m,
            "method": self.source, "confidence_pct": self.confidence_pct,
            "time": self.location_time.isoformat() if self.location_time else None,
            "altitude_m": self.altitude_m, "vertical_accuracy_m": self.vertical_accuracy_m,
            "number": self.number, "aml_version": self.version,
            "emergency_number": self.emergency_number,
        }


def read_fields(body: bytes) -> dict[str, str]:
    """The body's fields, bounded; AmlError("body", ...) when it cannot be read as such."""
    if len(body) > MAX_BODY:
        raise AmlError("body", f"{len(body)} bytes, more than {MAX_BODY}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise AmlError("body", "is not UTF-8") from None
    text = text.strip()
    if not text:
        raise AmlError("body", "is empty (expected key=value pairs joined by &)")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                          max_num_fields=MAX_FIELDS)
    except ValueError as exc:
        raise AmlError("body", f"is not key=value pairs joined by & ({str(exc)[:80]})") from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if not _NAME.fullmatch(name):
            raise AmlError(name[:64] or "body", "is not a field name (A-Z a-z 0-9 _, 1-64)")
        if name in out:
            raise AmlError(name, "is given more than once")
        if len(value) > MAX_VALUE:
            raise AmlError(name, f"is {len(value)} characters long, more than {MAX_VALUE}")
        if not value.isprintable():
            raise AmlError(name, "holds control characters")
        out[name] = value
    return out


def parse_aml(body: bytes) -> AmlMessage:
    fields = read_fields(body)
    for name in REQUIRED:
        if not fields.get(name, "").strip():
            raise AmlError(name, "is required")
    got = _Fields(fields)
    got.check_others()
    number = normalise(fields["device_number"])
    if number.e164 is None:
        raise AmlError("device_number", f"is not a usable Indonesian number "
                                        f"({number.problem.value})")
    return AmlMessage(
        number=number.e164,
        version=got.text("v", r"[0-9]{1,4}"),
        lat=got.real("location_latitude", -90.0, 90.0),
        lon=got.real("location_longitude", -180.0, 180.0),
        accuracy_m=got.real("location_accuracy", 0.0, 1_000_000.0),
        location_time=got.optional("location_time", got.epoch_ms),
        sent_time=got.optional("time", got.epoch_ms),
        source=got.optional("location_source", lambda n: got.text(n, r"[A-Za-z0-9_.-]{1,32}")),
        confidence_pct=got.optional("location_confidence", lambda n: got.real(n, 0.0, 100.0)),
        altitude_m=got.optional("location_altitude", lambda n: got.real(n, -1000.0, 100_000.0)),
        vertical_accuracy_m=got.optional(
            "location_vertical_accuracy", lambda n: got.real(n, 0.0, 1_000_000.0)),
        emergency_number=got.optional("emergency_number", lambda n: got.text(n, r"[0-9]{2,8}")),
        fields=fields,
    )


class _Fields:
    """Typed reads of one message's fields, each raising AmlError naming the field."""

    # Known optional fields not used above: checked for their form all the same.
    _FORMS = {
        "thunderbird_version": r"[0-9A-Za-z._-]{1,32}",
        "source": r"[A-Za-z0-9_.-]{1,32}",
        "device_model": r"[\x20-\x7e]{1,64}",
        "device_imei": r"[0-9]{14,16}",
        "device_imsi": r"[0-9]{6,15}",
        "device_languages": r"[A-Za-z0-9_,;.-]{1,64}",
        "cell_home_mcc": r"[0-9]{3}",
        "cell_home_mnc": r"[0-9]{2,3}",
        "cell_network_mcc": r"[0-9]{3}",
        "cell_network_mnc": r"[0-9]{2,3}",
        "location_floor": r"-?[0-9]{1,3}",
    }
    _REALS = {"location_bearing": (0.0, 360.0), "location_speed": (0.0, 1000.0)}

    def __init__(self, fields: dict[str, str]) -> None:
        self._f = fields

    def text(self, name: str, pattern: str) -> str:
        value = self._f[name].strip()
        if not re.fullmatch(pattern, value):
            raise AmlError(name, f"{value[:40]!r} is not of the form {pattern}")
        return value

    def real(self, name: str, low: float, high: float) -> float:
        raw = self._f[name].strip()
        try:
            value = float(raw)
        except ValueError:
            raise AmlError(name, f"{raw[:40]!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise AmlError(name, f"{raw[:40]} is outside {low:g}..{high:g}")
        return value

    def epoch_ms(self, name: str) -> datetime:
        raw = self._f[name].strip()
        if not re.fullmatch(r"[0-9]{1,15}", raw):
            raise AmlError(name, f"{raw[:40]!r} is not milliseconds since 1970 (digits)")
        when = datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
        if not _EARLIEST <= when < _LATEST:
            raise AmlError(name, f"{raw} is not a time between 2000 and 2100")
        return when

    def optional(self, name: str, read: Callable[[str], T]) -> T | None:
        if not self._f.get(name, "").strip():
            return None
        return read(name)

    def check_others(self) -> None:
        for name, pattern in self._FORMS.items():
            if self._f.get(name, "").strip():
                self.text(name, pattern)
        for name, (low, high) in self._REALS.items():
            if self._f.get(name, "").strip():
                self.real(name, low, high)
