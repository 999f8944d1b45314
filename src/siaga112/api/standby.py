"""A standby changes nothing (HA, docs/cluster.md). `Lead` says whether this daemon leads now
(for /health and /ready too), and `Lead.check` is what every route that changes state passes
(routing.endpoint: any method but GET, HEAD and OPTIONS): after its token is checked, so a
caller without one gets the same 401 as from the active daemon and learns nothing more, and
again just before its handler runs, so a daemon that lost the lead while the request was being
read does not act. It raises errors.Standby: 503, naming the active daemon if this one knows it.
"""

from __future__ import annotations

from siaga112.api.deps import DaemonLike
from siaga112.api.errors import Standby


class Lead:
    def __init__(self, daemon: DaemonLike) -> None:
        self._d = daemon

    @property
    def active(self) -> bool:
        """This daemon leads: Daemon.role, and the leadership loop has not just stepped it down
        (Daemon.role still says "active" from then until the daemon has stopped)."""
        lead = self._d.leadership
        return self._d.role == "active" and (lead is None or lead.role == "active")

    def check(self) -> None:
        if not self.active:
            lead = self._d.leadership
            raise Standby(lead.node if lead else None, lead.leader if lead else None)
