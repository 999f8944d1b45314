"""Hypothesis settings and strategies shared by the fuzz tests: hostile text and JSON."""

from __future__ import annotations

import json
import os
import random
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("SIAGA112_FUZZ_EXAMPLES", "10000"))

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    # no explain phase: on Python 3.11 it traces every line of every case (several times
    # slower); a failure still shrinks to its smallest case and prints it
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)

# Extra tests (beside the 10,000-case test of each input) that touch files or check a helper
# run fewer cases: they are slower per case and guard what the main tests already reach.
FUZZ_EXTRA = settings(FUZZ, max_examples=max(1, FUZZ_EXAMPLES // 20))

# Values seen in attacks and accidents: what an id, a caller ID or a reason must survive.
NASTY = [
    "", " ", "\x00", "x\x00y", "\n", "\r\n", "\t", "\x7f", "\u2028", "\u200b", "\ufeff",
    "/", "+", "#", "a/b", "a/+/#", "$SYS", "..", "../../etc/passwd", "%00", "%2F",
    "'; DROP TABLE calls; --", "${SIAGA112_TRUNK}", "{\"a\":1}", "null", "NaN", "Infinity",
    "é", "🚒", "٠١٢٣٤٥٦٧٨٩", "０８１２３４５６７８９０", "\ud800", "\udfff",
    "x" * 129, "1" * 97, "1764480000.123", "1764480000.123-ag-01-0-1",
    "1764480000.123-01-1a2b3c4d", "op1", "01", "00", "99", "+6281234567890", "081234567890",
    "0254123456", "anonymous", "-1", "1e309", "-0",
]

# Characters that break things (controls, separators, wildcards, surrogates, look-alike
# digits), drawn often; and now and then any character at all.
SHARP_CHARS = [
    *"0123456789.-_aZz/+#%$ {}[]\"'\\,:;=&?|*", "\x00", "\x01", "\x1b", "\n", "\r", "\t",
    "\x7f", "\x85", "\u00a0", "\u2028", "\u2029", "\u200b", "\u200e", "\ufeff", "\ud800",
    "\udfff", "\uffff", "\U0010ffff", "é", "ß", "🚒", "٣", "０", "¹",
]
ANY_CHAR = st.one_of(
    st.sampled_from(SHARP_CHARS),
    st.characters(codec=None, exclude_categories=()),
)
ANY_TEXT = st.text(ANY_CHAR, max_size=24)
# Mostly-valid id characters with a little of everything else; short ones drawn character by
# character, long ones (near the 96 and 128 limits) by repeating a short one: far cheaper.
ID_CHARS = st.sampled_from("0123456789.-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
SHORT_ID_LIKE = st.text(st.one_of(ID_CHARS, ID_CHARS, ID_CHARS, st.sampled_from(SHARP_CHARS)),
                        min_size=1, max_size=24)
ID_LIKE = st.one_of(
    SHORT_ID_LIKE,
    st.builds(lambda part, n: (part * n)[:n], SHORT_ID_LIKE, st.integers(90, 140)),
)
# Long strings (a 65 kB id made the MQTT topic too long): cheap to draw, one integer each.
LONG_TEXT = st.builds(lambda n, c: c * n, st.integers(100, 70_000), st.sampled_from("7x/\x00é"))


def _pool(seed: int, size: int) -> list[str]:
    """Hostile strings made once, from a fixed seed: drawing one is a single choice, where
    drawing text character by character costs a fraction of a millisecond per case (10,000
    cases of each input have to fit in the suite's time). Lengths around the limits (0, 1, 64,
    96, 128, 200) and far past them; characters that break things, id characters, anything."""
    rnd = random.Random(seed)
    id_chars = "0123456789.-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    lengths = [0, 1, 2, 3, 5, 8, 12, 20, 63, 64, 65, 95, 96, 97, 127, 128, 129, 199, 200, 201]
    out = list(NASTY)
    while len(out) < size:
        n = rnd.choice(lengths) if rnd.random() < 0.85 else rnd.randint(0, 400)
        chars = []
        for _ in range(n):
            pick = rnd.random()
            if pick < 0.45:
                chars.append(rnd.choice(SHARP_CHARS))
            elif pick < 0.85:
                chars.append(rnd.choice(id_chars))
            else:
                chars.append(chr(rnd.randint(0, 0x10FFFF)))
        out.append("".join(chars))
    return out


TEXT_POOL = _pool(112, 4_000)
HOSTILE_TEXT = st.one_of(
    st.sampled_from(TEXT_POOL), st.sampled_from(TEXT_POOL), st.sampled_from(TEXT_POOL),
    st.sampled_from(TEXT_POOL), ANY_TEXT, ID_LIKE, LONG_TEXT,
)
# Keys of JSON objects: mostly few and short (drawing unique hostile keys is slow).
KEY = st.one_of(st.sampled_from(["a", "", "\x00", "call_id", "by", "__proto__", "🚒"]),
                st.sampled_from(TEXT_POOL))

NUMBERS = [0, 1, -1, 2, 7, 10, 12, 13, 99, 100, 101, 500, 501, 2**31 - 1, 2**31, 2**53 + 1,
           2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30), 0.0, -0.0, 0.5, 1.5, -1.5,
           1e-300, 1e308, -1e308, 87600.0, 87600.000001, 3.14159]
JSON_SCALAR = st.one_of(
    st.sampled_from([None, True, False, *NUMBERS]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    HOSTILE_TEXT, HOSTILE_TEXT,
)
# Two levels at most, and some deep ones ready-made: st.recursive is several times slower.
DEEP = [[[[[]]]], {"a": {"b": {"c": {}}}}, [{"call_id": ["x"]}], {"": None}, [None] * 50,
        {"\x00": "\x00"}, {"__class__": {"__init__": 1}}, "x" * 10_000, 10**400 - 1]
JSON_VALUE = st.one_of(
    JSON_SCALAR,
    st.lists(JSON_SCALAR, max_size=3),
    st.dictionaries(st.sampled_from(["a", "", "\x00", "call_id", "by", "__proto__", "🚒"]),
                    JSON_SCALAR, max_size=3),
    st.sampled_from(DEEP),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value: the root, each key's value, each item."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            out += _paths(item, (*prefix, n))
    return out


def _at(value: Any, path: tuple[Any, ...], new: Any, delete: bool = False) -> Any:
    """A copy of value with the place at path replaced by new (or its key deleted)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _at(value[head], rest, new, delete)
        return copy
    items = list(value)
    items[head] = _at(value[head], rest, new, delete)
    return items


def spoiled(bases: list[Any], values: st.SearchStrategy[Any] | None = None,
            most: int = 2) -> st.SearchStrategy[Any]:
    """One of `bases` (valid messages) with up to `most` places in it spoiled: a value replaced
    by a hostile one (`values`, default any JSON), a key removed, an unknown key added. Far
    fewer draws than building a hostile message from nothing, and closer to what breaks."""
    table = [(base, _paths(base)) for base in bases]
    hostile = values if values is not None else JSON_VALUE

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        value, paths = table[draw(st.integers(0, len(table) - 1))]
        for _ in range(draw(st.integers(0, most))):
            path = paths[draw(st.integers(0, len(paths) - 1))]
            op = draw(st.integers(0, 5))
            try:
                if op == 0 and path:
                    value = _at(value, path, None, delete=True)
                elif op == 1 and isinstance(value, dict):
                    value = {**value, draw(KEY): draw(hostile)}
                else:
                    value = _at(value, path, draw(hostile))
            except (KeyError, IndexError, TypeError):
                pass  # the place went with an earlier spoil
        return value

    return build()


def dumps(value: Any) -> bytes:
    """JSON text of value; lone surrogates go out as \\udXXX escapes, as a client may send."""
    return json.dumps(value, ensure_ascii=True).encode()
