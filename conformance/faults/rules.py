"""Fault rules between namespaces of a :class:`~.netns.Sandbox`: nftables drops and
``tc netem``.

    faults = Faults(sandbox)
    faults.isolate("etcd1", peers=["etcd2", "etcd3"])  # etcd1 cut from its peers
    faults.partition(["etcd1"], ["etcd2", "etcd3"])     # minority | majority
    faults.bridge(["etcd1"], ["etcd3"], via="etcd2")    # etcd2 sees both sides
    faults.one_way("etcd1", "etcd2")                    # etcd1 -> etcd2 lost, back fine
    faults.loss("etcd1", "etcd2", percent=30)           # random loss both ways
    faults.latency("etcd1", 100)                        # netem on etcd1's link (if any)
    faults.heal()                                       # every rule removed

Each namespace gets one nftables table ``inet tenure_fault`` with an input and an output
chain (hooks in that namespace only: the host and other runs are untouched). A cut pair
drops in both namespaces, both directions, TCP and UDP alike (Consul's gossip included),
so neither side's packets arrive: a real partition, not a refused connection. The host
(the bridge address: this process and candidates outside namespaces) is never cut by
these rules unless it is named as ``"host"``.

``latency`` needs the kernel's ``sch_netem``; kernels without it (this project's CI
VM has no netem, tbf or prio qdiscs) raise :class:`~.netns.FaultUnavailable`, and
callers fall back to the user-space proxy (:mod:`tenure.conformance.lab.proxy`), which
delays a client's TCP stream instead of a link's packets. Random loss needs no netem:
nftables ``numgen random`` drops that share of packets.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterable

from tenure.conformance.faults.netns import FaultUnavailable, Namespace, Sandbox, run

TABLE = "tenure_fault"
HOST = "host"


class Faults:
    """Installs and removes fault rules among the namespaces of ``sandbox``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.active: list[str] = []

    def _ns(self, label: str) -> Namespace | None:
        if label == HOST:
            return None
        try:
            return self.sandbox.namespaces[label]
        except KeyError:
            known = ", ".join(self.sandbox.namespaces) or "none"
            raise ValueError(f"no namespace {label!r} in the sandbox (have: {known})") from None

    def _address(self, label: str) -> str:
        ns = self._ns(label)
        return self.sandbox.host_address if ns is None else ns.address

    def _table(self, ns: Namespace) -> None:
        ns.run("nft", "-f", "-", input_text=(
            f"table inet {TABLE} {{\n"
            "  chain input { type filter hook input priority 0; policy accept; }\n"
            "  chain output { type filter hook output priority 0; policy accept; }\n"
            "}\n"))

    def _rule(self, label: str, chain: str, match: str) -> None:
        ns = self._ns(label)
        if ns is None:
            raise ValueError("rules are installed inside namespaces; the host is only a peer")
        self._table(ns)
        ns.run("nft", "add", "rule", "inet", TABLE, chain, *match.split())

    def drop(self, src: str, dst: str, percent: int = 100) -> None:
        """Drops packets from ``src`` to ``dst`` (``percent`` of them, at random), both at
        the sender's output and at the receiver's input."""
        if not 0 < percent <= 100:
            raise ValueError(f"percent must be 1..100, got {percent!r}")
        chance = "" if percent == 100 else f"numgen random mod 100 < {percent} "
        if self._ns(src) is not None:
            self._rule(src, "output", f"ip daddr {self._address(dst)} {chance}drop")
        if self._ns(dst) is not None and percent == 100:
            self._rule(dst, "input", f"ip saddr {self._address(src)} drop")
        self.active.append(f"drop {src}->{dst} {percent}%")

    def cut(self, a: str, b: str) -> None:
        """No packet between ``a`` and ``b`` either way."""
        self.drop(a, b)
        self.drop(b, a)

    def isolate(self, label: str, peers: Iterable[str]) -> None:
        """``label`` cut from every one of ``peers`` (the host still reaches it)."""
        for peer in peers:
            if peer != label:
                self.cut(label, peer)

    def partition(self, *sides: Iterable[str]) -> None:
        """Every member of one side cut from every member of the others."""
        groups = [list(s) for s in sides]
        for one, other in itertools.combinations(groups, 2):
            for a in one:
                for b in other:
                    self.cut(a, b)

    def bridge(self, left: Iterable[str], right: Iterable[str], via: str) -> None:
        """``left`` and ``right`` cut from each other; ``via`` reaches both (the Jepsen
        "bridge": a majority for each side through one node)."""
        self.partition(left, right)
        self.active.append(f"bridge via {via}")

    def one_way(self, src: str, dst: str) -> None:
        """Asymmetric: ``src``'s packets to ``dst`` are lost, ``dst``'s to ``src`` arrive."""
        ns = self._ns(src)
        if ns is None:
            raise ValueError("one_way needs src inside a namespace")
        self._rule(src, "output", f"ip daddr {self._address(dst)} drop")
        self.active.append(f"one-way {src}->{dst}")

    def loss(self, a: str, b: str, percent: int) -> None:
        """``percent`` % of packets between ``a`` and ``b`` lost, each way independently."""
        self.drop(a, b, percent)
        self.drop(b, a, percent)

    def latency(self, label: str, ms: int, jitter_ms: int = 0) -> None:
        """Delays every packet leaving ``label``'s veth by ``ms`` (``tc netem``).
        Raises :class:`FaultUnavailable` when the kernel has no netem."""
        ns = self._ns(label)
        if ns is None:
            raise ValueError("latency is set on a namespace's link")
        if not netem_available():
            raise FaultUnavailable("this kernel has no sch_netem (tc qdisc netem): "
                                   "use the TCP proxy's latency instead")
        extra = [f"{jitter_ms}ms"] if jitter_ms else []
        ns.run("tc", "qdisc", "replace", "dev", ns.device, "root", "netem", "delay",
               f"{ms}ms", *extra)
        self.active.append(f"latency {label} {ms}ms")

    def heal(self) -> None:
        """Removes every rule and qdisc this object installed (idempotent)."""
        for ns in self.sandbox.namespaces.values():
            ns.run("nft", "delete", "table", "inet", TABLE, check=False)
            ns.run("tc", "qdisc", "del", "dev", ns.device, "root", check=False)
        self.active.clear()

    def rules(self, label: str) -> str:
        """The nftables rules in force in ``label``'s namespace (for test evidence)."""
        ns = self._ns(label)
        assert ns is not None
        return ns.run("nft", "list", "ruleset", check=False)


@functools.cache
def netem_available() -> bool:
    """True when ``tc qdisc add ... netem`` works on this kernel (tried on a dummy link
    in a throw-away namespace)."""
    probe = f"tfprobe{os.getpid() % 10000}"
    try:
        run("ip", "netns", "add", probe)
    except (FaultUnavailable, RuntimeError):
        return False
    try:
        run("ip", "netns", "exec", probe, "ip", "link", "add", "d0", "type", "dummy")
        out = run("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "d0", "root",
                  "netem", "delay", "1ms", check=False)
        check = run("ip", "netns", "exec", probe, "tc", "qdisc", "show", "dev", "d0")
        return "netem" in check or "netem" in out
    except (FaultUnavailable, RuntimeError):
        return False
    finally:
        run("ip", "netns", "del", probe, check=False)


__all__ = ["HOST", "FaultUnavailable", "Faults", "netem_available"]
