"""The operations API (HTTP): the centre's screens and scripts read the queue, the operators,
the calls, the blocklist, the referrals and the KPIs here, and act on calls, operators and the
blocklist. docs/api.md describes it for its users.

- app.py: the aiohttp application (`Api`): route table, error middleware, start and stop;
- routing.py: a route's way in: token and role, query, body and path parameters;
- errors.py: one exception class per refusal, and the one mapping of any error to its answer;
- auth.py: tokens and roles; schemas.py: every query, body and answer; openapi.py: the document;
- deps.py: what the API needs from the daemon, as Protocols;
- one module per resource: health.py (/health, /ready, /metrics), operators.py (/queue,
  /operators), calls.py, blocklist.py, reports.py (/referrals, /kpis), dispatches.py.
"""

from siaga112.api.app import Api

__all__ = ["Api"]
