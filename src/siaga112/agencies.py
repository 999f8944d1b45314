"""The agency directory: who is on duty for what, and how to reach them.

A city 112 centre such as Serang's works with 9 city agencies and 5 national ones. Each has a
duty line and fallback lines, tried in order, and serves some incident categories. The operator's
choice always wins over the suggestion.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Scope(StrEnum):
    CITY = "city"
    NATIONAL = "national"


class Agency(BaseModel):
    model_config = ConfigDict(extra="forbid")  # settings: a misspelt key is an error

    code: str = Field(pattern=r"^[0-9]{2}$")
    name: str
    scope: Scope
    lines: list[str] = Field(min_length=1, description="dial strings: duty line, then fallbacks")
    categories: list[str] = []


# Incident categories, as dialled by the operator with *3CC.
CATEGORIES: dict[str, str] = {
    "01": "fire",
    "02": "traffic accident",
    "03": "fallen tree",
    "04": "domestic violence",
    "05": "robbery or other crime",
    "06": "health emergency",
    "07": "ambulance",
    "08": "hearse",
    "09": "natural disaster",
    "10": "child stunting",
    "11": "animal or insect nest",
    "12": "other",
}


def _lines(code: str) -> list[str]:
    return [f"PJSIP/agency{code}", f"PJSIP/agency{code}-fb"]


DEFAULT_DIRECTORY: list[Agency] = [
    Agency(code="01", name="Dinas Pemadam Kebakaran dan Penyelamatan (fire and rescue)",
           scope=Scope.CITY, lines=_lines("01"), categories=["01", "11"]),
    Agency(code="02", name="Kepolisian Resor (police)", scope=Scope.NATIONAL,
           lines=_lines("02"), categories=["02", "04", "05"]),
    Agency(code="03", name="Badan Penanggulangan Bencana Daerah (BPBD, disaster management)",
           scope=Scope.CITY, lines=_lines("03"), categories=["03", "09"]),
    Agency(code="04", name="Dinas Kesehatan, ambulans (health and ambulance)", scope=Scope.CITY,
           lines=_lines("04"), categories=["02", "06", "07", "10"]),
    Agency(code="05", name="Dinas Perhubungan (transport)", scope=Scope.CITY,
           lines=_lines("05"), categories=["02"]),
    Agency(code="06", name="Satuan Polisi Pamong Praja (public order)", scope=Scope.CITY,
           lines=_lines("06"), categories=["12"]),
    Agency(code="07", name="Dinas Sosial (social affairs, hearse)", scope=Scope.CITY,
           lines=_lines("07"), categories=["08"]),
    Agency(code="08", name="Dinas Lingkungan Hidup (environment, fallen trees)", scope=Scope.CITY,
           lines=_lines("08"), categories=["03"]),
    Agency(code="09",
           name="Dinas Pemberdayaan Perempuan dan Perlindungan Anak (women and children)",
           scope=Scope.CITY, lines=_lines("09"), categories=["04", "10"]),
    Agency(code="10", name="Basarnas (national search and rescue)", scope=Scope.NATIONAL,
           lines=_lines("10"), categories=["09"]),
    Agency(code="11", name="PLN (electricity)", scope=Scope.NATIONAL, lines=_lines("11"),
           categories=["03"]),
    Agency(code="12", name="Jasa Marga (toll roads)", scope=Scope.NATIONAL, lines=_lines("12"),
           categories=["02"]),
    Agency(code="13", name="Palang Merah Indonesia (Red Cross)", scope=Scope.NATIONAL,
           lines=_lines("13"), categories=["06", "09"]),
    Agency(code="14", name="Perumdam Tirta (water utility)", scope=Scope.CITY, lines=_lines("14"),
           categories=["12"]),
]


class Directory:
    def __init__(self, agencies: list[Agency]) -> None:
        codes = [a.code for a in agencies]
        dupes = {c for c in codes if codes.count(c) > 1}
        if dupes:
            raise ValueError(f"agency directory: duplicate codes {sorted(dupes)}")
        self._by_code = {a.code: a for a in agencies}

    def get(self, code: str) -> Agency | None:
        return self._by_code.get(code)

    def all(self) -> list[Agency]:
        return list(self._by_code.values())

    def suggest(self, category: str) -> list[Agency]:
        """Agencies that serve an incident category, city agencies first."""
        found = [a for a in self._by_code.values() if category in a.categories]
        return sorted(found, key=lambda a: (a.scope is not Scope.CITY, a.code))
