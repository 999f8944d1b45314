import pytest

from siaga112.callerid import MAX_RAW, CallerIdProblem, normalise


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("081234567890", "+6281234567890"),
        ("+6281234567890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("0254 123456", "+62254123456"),
        ("(0254) 200-112", "+62254200112"),
        ("02541234567", "+622541234567"),
    ],
)
def test_indonesian_numbers_become_e164(raw: str, e164: str) -> None:
    got = normalise(raw)
    assert got.e164 == e164
    assert got.problem is CallerIdProblem.NONE


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (None, CallerIdProblem.WITHHELD),
        ("", CallerIdProblem.WITHHELD),
        ("anonymous", CallerIdProblem.WITHHELD),
        ("Anonymous", CallerIdProblem.WITHHELD),
        ("08abc123", CallerIdProblem.GARBAGE),
        ("0812'; DROP TABLE calls;--", CallerIdProblem.GARBAGE),
        ("٠٨١٢٣٤٥٦٧٨٩", CallerIdProblem.GARBAGE),
        ("+4930123456", CallerIdProblem.NOT_INDONESIAN),
        ("0812", CallerIdProblem.TOO_SHORT),
        ("0" + "8" * 199, CallerIdProblem.TOO_LONG),
        ("12345678", CallerIdProblem.NOT_INDONESIAN),
    ],
)
def test_unusable_caller_ids_are_named_never_raised(
    raw: str | None, problem: CallerIdProblem
) -> None:
    got = normalise(raw)
    assert got.e164 is None
    assert got.problem is problem


def test_raw_is_kept_short_and_printable() -> None:
    got = normalise("08" + "9" * 300 + "\x00\x07")
    assert len(got.raw) == MAX_RAW
    assert "\x00" not in got.raw
