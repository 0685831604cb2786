"""The one exception hierarchy of tenure.

Every error a caller can meet is a :class:`TenureError`. Errors about the caller's
input are also :class:`ValueError` (so generic input handling keeps working), and a
campaign timeout is also a :class:`TimeoutError`. Messages name the offending input
and say how to fix it. A call that raises leaves no partial state in the store.
"""

from __future__ import annotations


class TenureError(Exception):
    """Base class of every error raised by tenure."""


class ConfigError(TenureError, ValueError):
    """A backend URL, config file, option or environment variable is invalid."""


class InvalidNameError(TenureError, ValueError):
    """An election name breaks the naming rules (see :func:`tenure.names.check_election_name`)."""


class InvalidValueError(TenureError, ValueError):
    """A candidate value (or id, key, payload) is of the wrong type or too large."""


class StoreUnavailable(TenureError):
    """The store could not be reached or did not answer in time. Usually transient."""


class SessionExpired(StoreUnavailable):
    """The store ended this client's session; every leadership it held is lost.

    The client opens a new session for later campaigns on its own."""


class CampaignTimeout(TenureError, TimeoutError):
    """A campaign did not win before its timeout. Its queue entry has been removed."""


class CampaignCancelled(TenureError):
    """A campaign was cancelled before it won. Its queue entry has been removed."""


class LeadershipLost(TenureError):
    """This candidate no longer leads: its validity deadline passed, its session
    ended, it resigned, or a newer leader was seen. Stop acting as leader."""


class NotLeader(TenureError):
    """An operation that needs leadership (proclaim, guarded write) was attempted by a
    candidate that does not lead, or the store refused it because it no longer does."""


class StaleToken(TenureError):
    """A fencing check saw a token lower than one already accepted for the resource."""


class UsageError(TenureError):
    """The API was used in a way the contract does not allow, e.g. a second campaign
    for the same election on one client while the first is still running."""
