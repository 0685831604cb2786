"""ZooKeeper 3.8 in the lab: standalone, or a 3-server ensemble.

``tickTime=200``, so the server grants session timeouts from 400 ms to 4 s (larger
requests are silently capped at 4 s). Readiness: every server answers the ``srvr``
four-letter command with a ``Mode:`` line, and an ensemble has exactly one leader.

Peer isolation: server *i*'s ``zoo.cfg`` names every other server *j* by a
:class:`Proxy` (i→j) in front of *j*'s quorum and election ports (ZooKeeper identifies
servers by ``myid``, not by address, so each server may see its peers at different
addresses). :meth:`ZooKeeperCluster.isolate` cuts every proxy to and from the node.

Ports. A server binds its quorum port only while it leads -- possibly minutes after the
port was chosen, when a restart or an isolation makes it the leader -- and binds its
client and election ports again after each restart. A port in the kernel's ephemeral
range (``net.ipv4.ip_local_port_range``) may meanwhile become the source port of any
outgoing connection (the peers' own, the proxies', kazoo's, a four-letter probe), and
the server then fails with ``Address already in use`` until that connection closes
(a CI run saw "Leader failed to initialize any of the following sockets" for minutes,
and every ensemble test after it timed out). So these ports are drawn, at random, from
below that range (:func:`~tenure.conformance.lab.ports.free_port`), where the kernel
never picks ports by itself.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from tenure.conformance.lab.cluster import HOST, Cluster, LabError, Node, find_binary, free_port
from tenure.conformance.lab.proxy import Proxy

_LOG4J = """\
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] %-5p %c{1}: %m%n
"""


def four_letter(address: tuple[str, int], command: str, timeout: float = 2.0) -> str:
    """Sends a ZooKeeper four-letter command and returns the whole answer."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(command.encode())
        chunks = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class ZooKeeperNode(Node):
    cluster: ZooKeeperCluster

    def __init__(self, cluster: Cluster, index: int) -> None:
        super().__init__(cluster, index)
        if not cluster.client_ports:  # fixed client ports are the caller's to choose
            self.client_port = free_port()
        self.quorum_port = free_port()
        self.election_port = free_port()
        self.conf_dir = self.dir / "conf"

    @property
    def myid(self) -> int:
        return self.index + 1

    def prepare(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "tickTime=200",
            "initLimit=20",
            "syncLimit=10",
            f"dataDir={self.data_dir}",
            f"clientPort={self.client_port}",
            f"clientPortAddress={self.host}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=ruok,stat,srvr,mntr",
            "maxClientCnxns=500",
            "standaloneEnabled=true",
        ]
        if len(self.cluster.nodes) > 1:
            for peer in self.cluster.nodes:
                host = HOST
                if peer is self:
                    q, e = self.quorum_port, self.election_port
                    host = self.host
                elif self.cluster.pair_proxies:
                    q, e = self.cluster.pair_ports(self.index, peer.index)
                else:  # tenure.conformance.faults: peers in namespaces, no proxies
                    q, e, host = peer.quorum_port, peer.election_port, peer.host
                lines.append(f"server.{peer.myid}={host}:{q}:{e}")
            (self.data_dir / "myid").write_text(f"{self.myid}\n")
        (self.conf_dir / "zoo.cfg").write_text("\n".join(lines) + "\n")
        (self.conf_dir / "log4j.properties").write_text(_LOG4J)

    def argv(self) -> list[str]:
        jar = os.environ.get("TENURE_ZOOKEEPER_JAR", "/usr/share/java/zookeeper.jar")
        if not Path(jar).is_file():
            raise LabError(
                f"ZooKeeper jar {jar} not found: run scripts/install-stores "
                "or set TENURE_ZOOKEEPER_JAR"
            )
        classpath = ":".join([
            str(self.conf_dir), jar,
            "/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar",
        ])
        return [
            find_binary("java", "TENURE_JAVA_BIN"),
            f"-Dzookeeper.log.dir={self.dir}",
            f"-Dlog4j.configuration=file:{self.conf_dir}/log4j.properties",
            "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
            "-cp", classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(self.conf_dir / "zoo.cfg"),
        ]

    def mode(self) -> str:
        """``standalone``, ``leader`` or ``follower`` (raises if not serving)."""
        for line in four_letter((self.host, self.client_port), "srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        raise LabError(f"{self.name} is not serving (no Mode in srvr)")

    def serves(self) -> bool:
        return self.mode() in ("standalone", "leader", "follower")

    def wipe(self) -> None:
        super().wipe()
        self.data_dir.mkdir(parents=True, exist_ok=True)


class ZooKeeperCluster(Cluster):
    backend = "zookeeper"
    scheme = "zookeeper"
    node_class = ZooKeeperNode
    nodes: list[ZooKeeperNode]  # type: ignore[assignment]

    def __init__(self, nodes: int = 1, **options: Any) -> None:
        super().__init__(nodes, **options)
        # (from, to) -> (quorum proxy, election proxy)
        self.pair_proxies: dict[tuple[int, int], tuple[Proxy, Proxy]] = {}
        if len(self.nodes) > 1:
            for src in self.nodes:
                for dst in self.nodes:
                    if src is not dst:
                        pair = (
                            Proxy((HOST, dst.quorum_port), name=f"{src.name}->{dst.name}:q"),
                            Proxy((HOST, dst.election_port), name=f"{src.name}->{dst.name}:e"),
                        )
                        self.pair_proxies[(src.index, dst.index)] = pair
                        self.proxies.extend(pair)

    def pair_ports(self, src: int, dst: int) -> tuple[int, int]:
        quorum, election = self.pair_proxies[(src, dst)]
        return quorum.port, election.port

    def serves(self) -> bool:
        modes = [n.mode() for n in self.nodes if n.running]
        if len(self.nodes) == 1:
            return modes == ["standalone"]
        return modes.count("leader") == 1 and len(modes) >= 2

    def isolate(self, node: int) -> None:
        for proxy in self._pairs_of(node):
            proxy.cut()
        self.isolated.add(node)

    def rejoin(self, node: int) -> None:
        for proxy in self._pairs_of(node):
            proxy.heal()
        self.isolated.discard(node)

    def _pairs_of(self, node: int) -> list[Proxy]:
        if len(self.nodes) < 3:
            raise LabError("isolate/rejoin needs a 3-server ZooKeeper ensemble")
        return [p for (s, d), pair in self.pair_proxies.items() if node in (s, d) for p in pair]
