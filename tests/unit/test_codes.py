from siaga112.codes import Code, CodeKind, CodeReader


def feed(reader: CodeReader, digits: str, start: float = 0.0, step: float = 0.2) -> list[Code]:
    out = []
    for n, d in enumerate(digits):
        code = reader.feed(d, now=start + n * step)
        if code is not None:
            out.append(code)
    return out


def test_every_code_is_read() -> None:
    r = CodeReader()
    got = feed(r, "*201*312*7*8")
    assert got == [
        Code(CodeKind.AGENCY, "01", "*201"),
        Code(CodeKind.CATEGORY, "12", "*312"),
        Code(CodeKind.PRANK, "", "*7"),
        Code(CodeKind.GHOST, "", "*8"),
    ]


def test_unknown_codes_are_named() -> None:
    r = CodeReader()
    assert feed(r, "*9") == [Code(CodeKind.UNKNOWN, raw="*9")]
    assert feed(r, "*#") == [Code(CodeKind.UNKNOWN, raw="*#")]
    assert feed(r, "*2#1") == [Code(CodeKind.UNKNOWN, raw="*2#1")]


def test_digits_outside_a_code_are_ignored() -> None:
    assert feed(CodeReader(), "1234") == []


def test_recall_and_back() -> None:
    """*6 asks for the instant recall; # on its own goes back to the call (inside a code it is
    a wrong key, as before)."""
    r = CodeReader()
    assert feed(r, "*6") == [Code(CodeKind.RECALL, raw="*6")]
    assert feed(r, "#") == [Code(CodeKind.RETURN, raw="#")]
    assert feed(r, "12#") == [Code(CodeKind.RETURN, raw="#")]
    assert feed(r, "*2#") == []  # half a code: waits for its fourth key
    assert feed(CodeReader(), "*2#1") == [Code(CodeKind.UNKNOWN, raw="*2#1")]


def test_a_pause_starts_over() -> None:
    r = CodeReader(gap=1.0)
    assert r.feed("*", now=0.0) is None
    assert r.feed("2", now=0.5) is None
    # 5 s later: the half code is forgotten, "0" is an ordinary key press.
    assert r.feed("0", now=5.5) is None
    assert feed(r, "*7", start=6.0) == [Code(CodeKind.PRANK, raw="*7")]


def test_star_restarts_a_code() -> None:
    assert feed(CodeReader(), "*2*8") == [Code(CodeKind.GHOST, raw="*8")]
