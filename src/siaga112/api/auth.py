"""Who is calling the HTTP API: bearer tokens from settings, and what each role may do.

Roles are ordered supervisor < operator < admin: a supervisor reads, an operator also acts on
calls and operators, an admin also changes the blocklist. An ``agency`` token (role "agency",
bound to one agency code) may only report that its team is moving, for its own agency.
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import SecretStr


class Role(StrEnum):
    AGENCY = "agency"
    AML = "aml"  # may only POST /aml: handsets' locations (api/aml.py)
    SUPERVISOR = "supervisor"
    OPERATOR = "operator"
    ADMIN = "admin"


_RANK = {Role.AGENCY: 0, Role.AML: 0, Role.SUPERVISOR: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


class TokenLike(Protocol):
    """settings.ApiToken: `agency` is the code an agency token speaks for (None otherwise)."""

    @property
    def token(self) -> SecretStr: ...
    @property
    def role(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def agency(self) -> str | None: ...
    @property
    def desk(self) -> str | None: ...


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    agency: str | None = None  # the agency an agency token speaks for
    desk: str | None = None  # the desk phone (operator name) an operator's token sits at

    def may(self, needed: Role) -> bool:
        """True when this role is at least `needed` on the supervisor < operator < admin scale.
        An agency token is at the bottom: it passes no check but its own (see Api)."""
        if needed is Role.AML:  # POST /aml: the aml token's own route (and an admin's)
            return self.role in (Role.AML, Role.ADMIN)
        return _RANK[self.role] >= _RANK[needed]


class AuthError(Exception):
    """401: no token, a malformed header or an unknown token."""


class Authenticator:
    def __init__(self, tokens: Iterable[TokenLike]) -> None:
        self._tokens = [
            (
                t.token.get_secret_value().encode(),
                Principal(name=t.name, role=Role(t.role), agency=t.agency, desk=t.desk),
            )
            for t in tokens
        ]

    def __len__(self) -> int:
        return len(self._tokens)

    def principal(self, authorization: str | None) -> Principal:
        """The principal behind an ``Authorization: Bearer <token>`` header; AuthError naming
        what is wrong (never echoing the token) otherwise."""
        if not authorization:
            raise AuthError("missing Authorization header (expected 'Bearer <token>')")
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise AuthError("Authorization header must be 'Bearer <token>'")
        given = presented.strip().encode()
        found: Principal | None = None
        for secret, principal in self._tokens:
            # Compare with every token, so the time taken does not tell which one matched.
            if hmac.compare_digest(secret, given) and found is None:
                found = principal
        if found is None:
            raise AuthError("unknown token")
        return found
