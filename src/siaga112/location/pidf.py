"""PIDF-LO (RFC 4119, RFC 5491) and Asterisk's location_info text, read defensively.

A PIDF-LO document comes from outside (a carrier's location server, by reference): it is read
only when it is at most ``MAX_DOCUMENT`` bytes and holds no DTD at all (no ``<!DOCTYPE``, so no
entity can be declared, expanded or fetched), then parsed with the standard library's expat
parser, which resolves no external entity. Only the first geodetic shape is taken: a Point, a
Circle or an Ellipse (its semi-major axis as the radius), in WGS 84 (lat, lon order). Anything
else is a ``LocationError`` naming what is wrong; nothing here raises anything else.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

MAX_DOCUMENT = 64 * 1024  # bytes of a PIDF-LO document we read at all
MAX_TEXT = 200  # characters kept of a free-text field (method, source)
MAX_INFO = 2048  # characters of Asterisk's location_info we read

_GML = "{http://www.opengis.net/gml}"
_GS = "{http://www.opengis.net/pidflo/1.0}"
_GP = "{urn:ietf:params:xml:ns:pidf:geopriv10}"
_DM = "{urn:ietf:params:xml:ns:pidf:data-model}"
_PIDF = "{urn:ietf:params:xml:ns:pidf}"
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_METRES = {"", "urn:ogc:def:uom:EPSG::9001"}


class LocationError(ValueError):
    """A location that cannot be used; the message says why (for the record and the log)."""


@dataclass(frozen=True)
class Location:
    lat: float
    lon: float
    radius_m: float | None = None  # uncertainty radius (Circle) or semi-major axis (Ellipse)
    shape: str = "Point"
    method: str | None = None  # GPS, A-GPS, Cell, Manual, ... as the source names it
    time: datetime | None = None  # when the location was determined, if the source says

    def data(self) -> dict[str, Any]:
        """The fields as a location event's data (JSON-ready)."""
        out = asdict(self)
        out["time"] = self.time.isoformat() if self.time else None
        return out


def parse_pidf(document: bytes) -> Location:
    """The geodetic location in a PIDF-LO document; LocationError when there is none."""
    if len(document) > MAX_DOCUMENT:
        raise LocationError(f"document of {len(document)} bytes, more than {MAX_DOCUMENT}")
    if _DTD.search(document):
        raise LocationError("document has a DTD (DOCTYPE or ENTITY): refused")
    try:
        root = ET.fromstring(document)  # noqa: S314 - bounded, DTD-free (checked above)
    except ET.ParseError as exc:
        raise LocationError(f"not well-formed XML: {exc}") from None
    if root.tag != f"{_PIDF}presence":
        raise LocationError(f"root element is {_short(root.tag)}, not a PIDF presence")
    for info in root.iter(f"{_GP}location-info"):
        for shape in info:
            if shape.tag in (f"{_GML}Point", f"{_GS}Circle", f"{_GS}Ellipse"):
                holder = _holder_of(root, info)
                return _shape(shape, _text(holder, f"{_GP}method"), _timestamp(holder))
    raise LocationError("no geodetic location (Point, Circle or Ellipse) in the document")


def _holder_of(root: ET.Element, info: ET.Element) -> ET.Element:
    """The device, person or tuple element whose geopriv holds `info` (for method, time)."""
    for holder in root:
        if any(el is info for el in holder.iter()):
            return holder
    return root


def _shape(shape: ET.Element, method: str | None, time: datetime | None) -> Location:
    name = _short(shape.tag)
    srs = shape.get("srsName", "")
    if srs not in ("", "urn:ogc:def:crs:EPSG::4326", "urn:ogc:def:crs:EPSG::4979"):
        raise LocationError(f"{name}: coordinate system {srs[:80]!r} is not WGS 84")
    pos = shape.find(f"{_GML}pos")
    if pos is None or not (pos.text or "").strip():
        raise LocationError(f"{name}: no gml:pos")
    lat, lon = position(pos.text or "")
    radius: float | None = None
    if name == "Circle":
        radius = _length(shape, f"{_GS}radius", name)
    elif name == "Ellipse":
        radius = _length(shape, f"{_GS}semiMajorAxis", name)
    return Location(lat=lat, lon=lon, radius_m=radius, shape=name, method=method, time=time)


def position(text: str) -> tuple[float, float]:
    """'lat lon' (or 'lat lon alt') in degrees, checked."""
    parts = text.split()
    if len(parts) not in (2, 3):
        raise LocationError(f"position {text[:80]!r} is not 'latitude longitude'")
    lat, lon = number(parts[0], "latitude"), number(parts[1], "longitude")
    check_lat_lon(lat, lon)
    return lat, lon


def check_lat_lon(lat: float, lon: float) -> None:
    if not -90.0 <= lat <= 90.0:
        raise LocationError(f"latitude {lat} is outside -90..90")
    if not -180.0 <= lon <= 180.0:
        raise LocationError(f"longitude {lon} is outside -180..180")


def number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LocationError(f"{what} {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise LocationError(f"{what} {text[:40]!r} is not a finite number")
    return value


def _length(shape: ET.Element, tag: str, name: str) -> float:
    el = shape.find(tag)
    if el is None:
        raise LocationError(f"{name}: no {_short(tag)}")
    if el.get("uom", "") not in _METRES:
        raise LocationError(f"{name}: {_short(tag)} is not in metres")
    value = number((el.text or "").strip(), _short(tag))
    if value < 0:
        raise LocationError(f"{name}: {_short(tag)} is negative")
    return value


def _text(holder: ET.Element, tag: str) -> str | None:
    el = holder.find(f".//{tag}")
    value = (el.text or "").strip() if el is not None else ""
    return value[:MAX_TEXT] if value else None


def _timestamp(holder: ET.Element) -> datetime | None:
    for tag in (f"{_DM}timestamp", f"{_PIDF}timestamp"):
        value = _text(holder, tag)
        if value:
            return parse_time(value)
    return None


def parse_time(value: str) -> datetime | None:
    """An RFC 3339 time, in UTC when it has no offset; None when it is not one."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _short(tag: str) -> str:
    return tag.rsplit("}", 1)[-1][:60]


# -- what Asterisk's GEOLOC_PROFILE() says ---------------------------------------------------

_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*("([^"]*)"|[^,]*)\s*(,|$)')


def parse_info(text: str) -> dict[str, str]:
    """Asterisk's sub-parameter list ``name=value, name="quoted, value"`` as a dict (the
    first of a repeated name wins); LocationError when it is not such a list."""
    if len(text) > MAX_INFO:
        raise LocationError(f"location_info of {len(text)} characters, more than {MAX_INFO}")
    out: dict[str, str] = {}
    at = 0
    text = text.strip()
    while at < len(text):
        m = _PAIR.match(text, at)
        if m is None or m.end() == at:
            raise LocationError(f"location_info {text[:80]!r} is not name=value pairs")
        value = m.group(3) if m.group(3) is not None else m.group(2).strip()
        out.setdefault(m.group(1), value)
        at = m.end()
    return out


def from_gml_info(info: dict[str, str], method: str | None) -> Location:
    """A location from Asterisk's GML location_info (shape, pos, radius or semiMajorAxis)."""
    shape = info.get("shape", "")
    if shape not in ("Point", "Circle", "Ellipse"):
        raise LocationError(f"shape {shape[:40]!r} is not Point, Circle or Ellipse")
    lat, lon = position(info.get("pos", ""))
    radius: float | None = None
    key = {"Circle": "radius", "Ellipse": "semiMajorAxis"}.get(shape)
    if key is not None:
        if key not in info:
            raise LocationError(f"{shape} without {key}")
        radius = number(info[key].split()[0] if info[key].strip() else "", key)
        if radius < 0:
            raise LocationError(f"{key} is negative")
    return Location(lat=lat, lon=lon, radius_m=radius, shape=shape,
                    method=(method or None) and method[:MAX_TEXT])
