"""One citizen's call, in parts: the session (session.py) owns the call's state and runs one
item at a time; arrival.py (answer, screening, the blocked announcement), waiting.py (queue,
silence, overflow), operator_leg.py, agency_leg.py, ending.py and resume.py each do one step."""

from siaga112.call.deps import CallDeps, CallMetrics
from siaga112.call.items import Command, Resume
from siaga112.call.session import CallSession

__all__ = ["CallDeps", "CallMetrics", "CallSession", "Command", "Resume"]
