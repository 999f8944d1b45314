"""What callers' locations bring in from outside: AML bodies (POST /aml), PIDF-LO documents (a
location server, by reference) and Asterisk's location_info text. Each parser either gives a
checked value or raises its own error naming why; nothing else, whatever the input."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from hypothesis import example, given
from hypothesis import strategies as st

from siaga112.location.aml import MAX_VALUE, AmlError, parse_aml
from siaga112.location.pidf import LocationError, from_gml_info, parse_info, parse_pidf
from tests.fuzz.strategies import FUZZ, HOSTILE_TEXT

AML_FIELDS = ["v", "device_number", "location_latitude", "location_longitude",
              "location_accuracy", "location_time", "time", "location_source",
              "location_confidence", "location_altitude", "emergency_number", "device_imei",
              "cell_home_mcc", "location_bearing", "device_model", "x_unknown"]
GOOD = {"v": "3", "device_number": "+6281234567890", "location_latitude": "-6.12",
        "location_longitude": "106.15", "location_accuracy": "12"}

AML_BODY = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda fields: urlencode(fields, errors="surrogatepass").encode(),
              st.dictionaries(st.sampled_from(AML_FIELDS), HOSTILE_TEXT, max_size=12)),
    st.builds(lambda name, value: urlencode({**GOOD, name: value},
                                            errors="surrogatepass").encode(),
              st.sampled_from(AML_FIELDS), HOSTILE_TEXT),
)


@FUZZ
@given(body=AML_BODY)
@example(body=b"&" * 5000)
@example(body=urlencode({**GOOD, "location_latitude": "1e999"}).encode())
def test_aml_bodies_are_a_message_or_a_named_refusal(body: bytes) -> None:
    try:
        msg = parse_aml(body)
    except AmlError as err:
        assert err.field and len(err.field) <= 64 and err.problem
        return
    assert -90 <= msg.lat <= 90 and -180 <= msg.lon <= 180
    assert math.isfinite(msg.accuracy_m) and msg.accuracy_m >= 0
    assert msg.number.startswith("+62")
    assert all(len(v) <= MAX_VALUE for v in msg.fields.values())


PIDF_HEAD = (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" '
             b'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
             b'xmlns:gml="http://www.opengis.net/gml" '
             b'xmlns:gs="http://www.opengis.net/pidflo/1.0"><tuple id="t"><gp:geopriv>'
             b'<gp:location-info>')
PIDF_TAIL = b"</gp:location-info></gp:geopriv></tuple></presence>"
SHAPE = st.builds(
    lambda tag, pos, radius: (f"<{tag}><gml:pos>{pos}</gml:pos>"
                              f"<gs:radius>{radius}</gs:radius></{tag}>").encode(
        "utf-8", "replace"),
    st.sampled_from(["gs:Circle", "gml:Point", "gs:Ellipse", "gml:Polygon"]),
    HOSTILE_TEXT, HOSTILE_TEXT)


@FUZZ
@given(document=st.one_of(st.binary(max_size=400),
                          st.builds(lambda s: PIDF_HEAD + s + PIDF_TAIL, SHAPE),
                          st.builds(lambda s: b"<!DOCTYPE x [" + s + b"]>" + PIDF_HEAD,
                                    st.binary(max_size=50))))
def test_pidf_documents_are_a_location_or_a_named_refusal(document: bytes) -> None:
    try:
        loc = parse_pidf(document)
    except LocationError as err:
        assert str(err)
        return
    assert -90 <= loc.lat <= 90 and -180 <= loc.lon <= 180
    assert loc.radius_m is None or (math.isfinite(loc.radius_m) and loc.radius_m >= 0)


@FUZZ
@given(text=st.one_of(HOSTILE_TEXT, st.builds(
    lambda shape, pos, radius: f'shape="{shape}", pos="{pos}", radius={radius}',
    st.sampled_from(["Circle", "Point", "Ellipse", "Polygon", ""]), HOSTILE_TEXT,
    HOSTILE_TEXT)))
def test_asterisk_location_info_is_a_location_or_a_named_refusal(text: str) -> None:
    try:
        loc = from_gml_info(parse_info(text), "GPS")
    except LocationError as err:
        assert str(err)
        return
    assert -90 <= loc.lat <= 90 and -180 <= loc.lon <= 180
