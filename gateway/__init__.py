"""tenure: one leader-election contract over etcd, ZooKeeper, Consul, Redis and SQLite.

    import tenure
    with tenure.connect("sqlite:///tmp/demo.db") as client:
        with client.election("jobs/nightly").campaign() as lead:
            run_job(fencing_token=lead.token)

See :mod:`tenure.client` for the contract and its guarantees. Logs go to the
``tenure`` logger (and its children); it has only a NullHandler, so nothing is printed
unless the application configures logging.

Import package ``tenure``, folder ``gateway/`` (``tenure.cli`` is ``gateway/cli/``,
``tenure.http`` is ``gateway/http/``; see ``[tool.setuptools]`` in pyproject.toml).
"""

import logging

from tenure.client import Client, Election, Leadership, Observer, connect
from tenure.errors import (
    CampaignCancelled,
    CampaignTimeout,
    ConfigError,
    InvalidNameError,
    InvalidValueError,
    LeadershipLost,
    NotLeader,
    SessionExpired,
    StaleToken,
    StoreUnavailable,
    TenureError,
    UsageError,
)
from tenure.fencing import FencingGuard
from tenure.store import Contender, LeaderInfo

__all__ = [
    "CampaignCancelled",
    "CampaignTimeout",
    "Client",
    "ConfigError",
    "Contender",
    "Election",
    "FencingGuard",
    "InvalidNameError",
    "InvalidValueError",
    "LeaderInfo",
    "Leadership",
    "LeadershipLost",
    "NotLeader",
    "Observer",
    "SessionExpired",
    "StaleToken",
    "StoreUnavailable",
    "TenureError",
    "UsageError",
    "connect",
]

__version__ = "0.1.0"

# A library logs but never decides where logs go: without this, an application that
# configured no logging would get tenure's warnings on stderr through logging's
# lastResort handler. Applications (the tenure command among them) add their own.
logging.getLogger("tenure").addHandler(logging.NullHandler())
