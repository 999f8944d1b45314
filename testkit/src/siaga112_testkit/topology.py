"""The test PBX's loopback topology: one definition for the load test's phones
(loadtest/phones.py) and the integration tests' (tests/integration/phones.py).

Every party has its own loopback address (Linux routes 127.0.0.0/8 to lo) and the test PBX
(asterisk-conf/pjsip.conf) identifies each by its source address only. README.md, "The test PBX
topology", has the table.
"""

from __future__ import annotations

PBX_HOST = "127.0.0.1"  # Asterisk: SIP on 5060 UDP, ARI on 8088
PBX_SIP = f"{PBX_HOST}:5060"
MOBILE_TRUNK = "127.0.0.2"  # the mobile carrier's trunk (caller IDs +628..., 08...)
LANDLINE_TRUNK = "127.0.0.3"  # the landline trunk (caller IDs 0254...)
BENCH_TRUNK = "127.0.0.4"  # trunk-bench, `make bench` only: 112 straight to Queue()
DESK_PHONES = 8  # op1..op8
SUPERVISOR_PHONES = 1  # sup1


def operator_ip(n: int) -> str:
    """Operator desk phone opN (N = 1..8), SIP on port 5060."""
    return f"127.0.1.{n}"


def agency_ip(code: str, fallback: bool = False) -> str:
    """Agency NN's duty line (127.0.2.NN), or its fallback line (127.0.3.NN)."""
    return f"127.0.{3 if fallback else 2}.{int(code)}"


def supervisor_ip(n: int) -> str:
    """Supervisor desk phone supN (N = 1), SIP on port 5060."""
    return f"127.0.4.{n}"
