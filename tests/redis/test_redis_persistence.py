"""What the fencing token needs from Redis persistence (docs/redis.md):

* with AOF (``appendfsync always``) tokens keep rising when an instance, or all three,
  restart;
* without AOF, one of three instances restarted empty is outvoted by the majority that
  kept its counter: tokens keep rising;
* but if a majority of the instances (or the only one) loses its data, the next token
  CAN be lower than an earlier one. This test demonstrates it; the docs warn about it.
"""

from __future__ import annotations

import pytest

import tenure
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TTL = 1.0


def lead_once(cluster: Cluster, election: str) -> int:
    """One leadership by a fresh client (resigned at once); returns its token."""
    with tenure.connect(cluster.url, ttl=TTL) as client:
        lead = client.election(election).campaign(timeout=30)
        lead.resign()
        return lead.token


def rising_tokens(cluster: Cluster, election: str, count: int = 2) -> list[int]:
    return [lead_once(cluster, election) for _ in range(count)]


def test_with_aof_tokens_keep_rising_when_one_or_all_instances_restart(
    lab: LabFactory,
) -> None:
    cluster = lab.start("redis", nodes=3, persistence=True)
    tokens = rising_tokens(cluster, "aof/one")
    cluster.nodes[0].restart()  # SIGKILL, then start on its AOF
    tokens += rising_tokens(cluster, "aof/one")
    for node in cluster.nodes:
        node.kill()
    for node in cluster.nodes:
        node.restart()
    tokens += rising_tokens(cluster, "aof/one")
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens


def test_without_aof_one_wiped_instance_of_three_is_outvoted(lab: LabFactory) -> None:
    cluster = lab.start("redis", nodes=3)
    tokens = rising_tokens(cluster, "wipe/one")
    for node in cluster.nodes:  # each instance in turn loses everything
        node.restart(wipe=True)
        tokens += rising_tokens(cluster, "wipe/one")
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens


def test_when_a_majority_or_the_only_instance_loses_its_data_tokens_can_go_back(
    lab: LabFactory,
) -> None:
    three = lab.start("redis", nodes=3)
    before = rising_tokens(three, "wipe/two", count=3)
    three.nodes[2].kill()  # the only instance that would remember, unreachable
    three.nodes[0].restart(wipe=True)
    three.nodes[1].restart(wipe=True)
    after = lead_once(three, "wipe/two")
    assert after < before[-1], (before, after)  # the guarantee is gone: docs/redis.md

    single = lab.start("redis", nodes=1)  # no AOF
    before = rising_tokens(single, "wipe/single", count=3)
    single.nodes[0].restart()
    assert lead_once(single, "wipe/single") < before[-1]
