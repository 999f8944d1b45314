"""PIDF-LO documents and Asterisk's location_info, including hostile input: nothing but a
LocationError (with a reason) ever comes out of a bad document."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from siaga112.location.pidf import (
    MAX_DOCUMENT,
    LocationError,
    from_gml_info,
    parse_info,
    parse_pidf,
)

NS = ('xmlns="urn:ietf:params:xml:ns:pidf" '
      'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
      'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
      'xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0"')


def pidf(shape: str, method: str = "GPS", timestamp: str = "2026-11-30T07:00:00Z") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<presence {NS} entity="sip:+6281234567890@carrier.example">
 <dm:device id="d1">
  <gp:geopriv>
   <gp:location-info>{shape}</gp:location-info>
   <gp:usage-rules/>
   <gp:method>{method}</gp:method>
  </gp:geopriv>
  <dm:timestamp>{timestamp}</dm:timestamp>
 </dm:device>
</presence>""".encode()


CIRCLE = ('<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-6.1201 106.1503</gml:pos>'
          '<gs:radius uom="urn:ogc:def:uom:EPSG::9001">35</gs:radius></gs:Circle>')


def test_circle_gives_position_radius_method_and_time() -> None:
    loc = parse_pidf(pidf(CIRCLE))
    assert (loc.lat, loc.lon, loc.radius_m, loc.shape) == (-6.1201, 106.1503, 35.0, "Circle")
    assert loc.method == "GPS"
    assert loc.time == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert loc.data()["time"] == "2026-11-30T07:00:00+00:00"


def test_point_has_no_radius_and_ellipse_takes_its_semi_major_axis() -> None:
    point = parse_pidf(pidf('<gml:Point srsName="urn:ogc:def:crs:EPSG::4326">'
                            '<gml:pos>-6.2 106.8</gml:pos></gml:Point>'))
    assert (point.lat, point.lon, point.radius_m) == (-6.2, 106.8, None)
    ellipse = parse_pidf(pidf(
        '<gs:Ellipse srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-6.2 106.8</gml:pos>'
        '<gs:semiMajorAxis uom="urn:ogc:def:uom:EPSG::9001">120</gs:semiMajorAxis>'
        '<gs:semiMinorAxis uom="urn:ogc:def:uom:EPSG::9001">40</gs:semiMinorAxis>'
        '<gs:orientation uom="urn:ogc:def:uom:EPSG::9102">30</gs:orientation></gs:Ellipse>'))
    assert ellipse.radius_m == 120.0


@pytest.mark.parametrize("document, reason", [
    (b"<?xml version='1.0'?><!DOCTYPE presence [<!ENTITY x 'boom'>]><presence/>", "DTD"),
    (b'<!DOCTYPE p [<!ENTITY e SYSTEM "file:///etc/passwd">]><p>&e;</p>', "DTD"),
    (b'<?xml version="1.0"?>\n<!doctype presence SYSTEM "http://evil.example/x.dtd">'
     b"<presence/>", "DTD"),
    (b"<presence", "well-formed"),
    (b"\xff\xfe garbage", "well-formed"),
    (b"<html/>", "not a PIDF presence"),
    (f"<presence {NS}/>".encode(), "no geodetic location"),
])
def test_hostile_or_broken_documents_are_refused_with_a_reason(document: bytes,
                                                               reason: str) -> None:
    with pytest.raises(LocationError, match=reason):
        parse_pidf(document)


def test_billion_laughs_is_refused_before_parsing() -> None:
    lol = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol;" * 10) for i in range(1, 10))
           + b"]><lolz>&lol9;</lolz>")
    with pytest.raises(LocationError, match="DTD"):
        parse_pidf(lol)


def test_size_is_bounded() -> None:
    big = pidf(CIRCLE).replace(b"<gp:usage-rules/>",
                               b"<gp:usage-rules>" + b"x" * MAX_DOCUMENT + b"</gp:usage-rules>")
    with pytest.raises(LocationError, match="more than"):
        parse_pidf(big)


@pytest.mark.parametrize("shape, reason", [
    ('<gs:Circle><gml:pos>-91 106</gml:pos><gs:radius>3</gs:radius></gs:Circle>', "latitude"),
    ('<gs:Circle><gml:pos>-6 181</gml:pos><gs:radius>3</gs:radius></gs:Circle>', "longitude"),
    ('<gs:Circle><gml:pos>nan 106</gml:pos><gs:radius>3</gs:radius></gs:Circle>', "finite"),
    ('<gs:Circle><gml:pos>-6 106</gml:pos></gs:Circle>', "no radius"),
    ('<gs:Circle><gml:pos>-6 106</gml:pos><gs:radius>-5</gs:radius></gs:Circle>', "negative"),
    ('<gs:Circle><gml:pos>-6 106</gml:pos>'
     '<gs:radius uom="urn:ogc:def:uom:EPSG::9002">5</gs:radius></gs:Circle>', "metres"),
    ('<gs:Circle srsName="urn:ogc:def:crs:EPSG::3857"><gml:pos>1 2</gml:pos>'
     '<gs:radius>5</gs:radius></gs:Circle>', "WGS 84"),
    ('<gml:Point><gml:pos>-6</gml:pos></gml:Point>', "latitude longitude"),
    ('<gml:Point/>', "no gml:pos"),
])
def test_bad_shapes_name_what_is_wrong(shape: str, reason: str) -> None:
    with pytest.raises(LocationError, match=reason):
        parse_pidf(pidf(shape))


def test_a_timestamp_that_is_not_one_is_no_time() -> None:
    assert parse_pidf(pidf(CIRCLE, timestamp="yesterday")).time is None


def test_asterisk_location_info_circle() -> None:
    info = parse_info('shape="Circle", crs="2d", pos="-6.1201 106.1503", radius="35"')
    loc = from_gml_info(info, "GPS")
    assert (loc.lat, loc.lon, loc.radius_m, loc.method) == (-6.1201, 106.1503, 35.0, "GPS")


def test_asterisk_location_info_quotes_commas_and_uri() -> None:
    assert parse_info('URI="https://lis.example/loc?id=1,2"') == {
        "URI": "https://lis.example/loc?id=1,2"}
    assert parse_info("shape=Point, pos=1 2") == {"shape": "Point", "pos": "1 2"}


@pytest.mark.parametrize("text", ['"no name"', "=x", "a=1,,b=2", "x" * 3000])
def test_asterisk_location_info_that_is_not_pairs_is_refused(text: str) -> None:
    with pytest.raises(LocationError):
        parse_info(text)


def test_asterisk_info_with_an_unknown_shape_is_refused() -> None:
    with pytest.raises(LocationError, match="shape"):
        from_gml_info({"shape": "Polygon", "pos": "1 2"}, None)
