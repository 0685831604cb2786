"""PostgreSQL in the lab: 1 server, or 2 = a primary and a synchronous streaming standby.

Debian's server binaries (``/usr/lib/postgresql/<version>/bin``, or
``$TENURE_POSTGRES_BIN``, a directory): ``initdb`` makes the primary's data dir,
``pg_basebackup -R`` copies it for the standby, and the primary lists the standby in
``synchronous_standby_names`` (``synchronous_commit=on``), so a commit is acknowledged
only once the standby has flushed it. Everything listens on 127.0.0.1 only (no Unix
socket), with ``fsync=on``, and loads ``pg_stat_statements`` so tests can count the
statements a client sends. The superuser is ``tenure``; the URL names the ``postgres``
database. As root, every server runs as the unprivileged ``postgres`` user
(``$TENURE_POSTGRES_USER``), owning its data dir, through a small re-exec that sets the
parent-death signal again after dropping privileges (the kernel clears it when the user
changes), so the servers still die with the Python process that started them.

Fault controls are the usual ones (``kill``, ``pause``, ``resume``, ``restart``) plus
:meth:`PostgresCluster.promote`: the standby leaves recovery and becomes the primary
(``pg_ctl promote``); the URL lists both nodes and clients keep only a read-write
connection (``target_session_attrs=read-write``), so they follow the promotion. The
promoted node then commits alone (it runs with ``synchronous_standby_names`` empty). The
old primary is not turned into a standby of the new one: restarting it after a
promotion is refused (it would be a second primary with a diverged history).

Options: ``password="..."`` (password authentication over TCP, SCRAM; the URL then
carries no password: give it the way users do), ``tls=True`` (a CA and a server
certificate for 127.0.0.1 are made with ``openssl``; :attr:`PostgresCluster.ca_file`).

Readiness: ``pg_isready`` answers, ``psql`` runs a query, and with a standby the
primary reports it as ``sync`` in ``pg_stat_replication``.

:meth:`PostgresCluster.pgbouncer` puts Debian's PgBouncer (``$TENURE_PGBOUNCER_BIN``)
in front of the primary, in ``transaction`` (or ``session``) pooling, and returns it
with its URL; it stops with the cluster.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tenure.conformance.lab.cluster import (
    HOST,
    Cluster,
    LabError,
    Node,
    find_binary,
    free_port,
    wait_until,
)
from tenure.conformance.lab.processes import StoreProcess, spawn

SUPERUSER = "tenure"
DATABASE = "postgres"

# Runs as root in the forked child: drop to the server's user, set the parent-death
# signal again (changing the uid clears it), then become the server.
_AS_USER = (
    "import ctypes,os,pwd,signal,sys\n"
    "u=pwd.getpwnam(sys.argv[1])\n"
    "os.setgroups([]);os.setgid(u.pw_gid);os.setuid(u.pw_uid)\n"
    "ctypes.CDLL(None).prctl(1,signal.SIGKILL,0,0,0)\n"
    "if os.getppid()!=int(sys.argv[2]):os._exit(1)\n"
    "os.environ['HOME']=u.pw_dir\n"
    "os.execv(sys.argv[3],sys.argv[3:])\n"
)


def bin_dir() -> Path:
    """Where the server binaries are: ``$TENURE_POSTGRES_BIN``, else the newest
    ``/usr/lib/postgresql/*/bin`` with ``initdb``; LabError naming the fix otherwise."""
    given = os.environ.get("TENURE_POSTGRES_BIN")
    if given:
        if not (Path(given) / "initdb").exists():
            raise LabError(f"TENURE_POSTGRES_BIN={given} has no initdb")
        return Path(given)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    raise LabError("PostgreSQL server binaries not found (looked at $TENURE_POSTGRES_BIN and "
                   "/usr/lib/postgresql/*/bin): run scripts/install-stores")


def server_user() -> str | None:
    """The user servers run as when we are root (``postgres``), else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("TENURE_POSTGRES_USER", "postgres")
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise LabError(f"user {name!r} does not exist: PostgreSQL refuses to run as root; "
                       "install the postgresql package or set TENURE_POSTGRES_USER") from None
    return name


class PostgresNode(Node):
    cluster: PostgresCluster

    def __init__(self, cluster: Cluster, index: int) -> None:
        super().__init__(cluster, index)
        self.standby = index > 0
        self.retired = False
        """True for a primary whose standby was promoted (it must not run again)."""

    @property
    def bin(self) -> Path:
        return self.cluster.bin

    def run_as_server_user(self, argv: list[str], what: str,
                           env: dict[str, str] | None = None) -> str:
        """Runs a PostgreSQL tool as the server's user; LabError with its output if it fails."""
        user = self.cluster.user
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=120, check=False,
                user=user, group=None if user is None else pwd.getpwnam(user).pw_gid,
                extra_groups=None if user is None else [], cwd="/",
                env={**os.environ, **(env or {})},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LabError(f"{self.name}: {what} failed: {exc}") from exc
        if result.returncode != 0:
            raise LabError(f"{self.name}: {what} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def psql(self, query: str, timeout: float = 5.0) -> str:
        """``query``'s output (unaligned, tuples only) through psql as the superuser."""
        env = {**os.environ, "PGCONNECT_TIMEOUT": "2", "PGSSLMODE": "prefer"}
        if self.cluster.password is not None:
            env["PGPASSWORD"] = self.cluster.password
        result = subprocess.run(
            [str(self.bin / "psql"), "-X", "-At", "-h", HOST, "-p", str(self.client_port),
             "-U", SUPERUSER, "-d", DATABASE, "-v", "ON_ERROR_STOP=1", "-c", query],
            capture_output=True, text=True, timeout=timeout, check=False, env=env)
        if result.returncode != 0:
            raise LabError(f"{self.name}: psql {query!r}: {result.stderr.strip()}")
        return result.stdout.strip()

    def prepare(self) -> None:
        for directory in (self.cluster.base_dir, self.dir):
            directory.chmod(0o755)  # the server's user must reach its data dir
        if not (self.data_dir / "PG_VERSION").exists():
            self.cluster.give_to_server_user(self.data_dir)  # empty: made by Node.start
            self._make_data_dir()
        self.data_dir.chmod(0o700)

    def _make_data_dir(self) -> None:
        password = self.cluster.password
        if self.standby:
            env = {} if password is None else {"PGPASSWORD": password}
            self.run_as_server_user(
                [str(self.bin / "pg_basebackup"), "-h", HOST,
                 "-p", str(self.cluster.primary.client_port), "-U", SUPERUSER,
                 "-D", str(self.data_dir), "-R", "-X", "stream", "--checkpoint=fast",
                 "--no-sync"],
                "pg_basebackup from the primary", env)
            return
        argv = [str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                "-E", "UTF8", "--locale=C", "--no-sync", "--auth-local=trust"]
        if password is None:
            argv.append("--auth-host=trust")
        else:
            pwfile = self.dir / "pwfile"
            pwfile.write_text(password + "\n")
            self.cluster.give_to_server_user(pwfile)
            argv += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self.run_as_server_user(argv, "initdb")

    def argv(self) -> list[str]:
        if self.retired:
            raise LabError(f"{self.name} was the primary before a promotion; starting it "
                           "again would make a second primary")
        settings = {
            "listen_addresses": HOST, "port": str(self.client_port),
            "unix_socket_directories": "", "fsync": "on", "synchronous_commit": "on",
            "wal_level": "replica", "max_wal_senders": "5", "hot_standby": "on",
            "cluster_name": self.name, "shared_preload_libraries": "pg_stat_statements",
            "max_connections": "200", "logging_collector": "off",
            # A primary with a standby commits only once the standby has flushed; a
            # standby (and a promoted one, left alone) waits for nobody.
            "synchronous_standby_names": "*" if not self.standby and any(
                n.standby for n in self.cluster.nodes) else "",
        }
        if self.cluster.tls:
            settings.update(ssl="on", ssl_cert_file=str(self.cluster.tls_dir / "server.crt"),
                            ssl_key_file=str(self.cluster.tls_dir / "server.key"))
        argv = [str(self.bin / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        user = self.cluster.user
        if user is None:
            return argv
        return [sys.executable, "-I", "-S", "-c", _AS_USER, user, str(os.getpid()), *argv]

    def serves(self) -> bool:
        ready = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", HOST, "-p", str(self.client_port),
             "-U", SUPERUSER, "-d", DATABASE, "-t", "2"],
            capture_output=True, timeout=5, check=False)
        if ready.returncode != 0:
            return False
        return self.psql("SELECT 1") == "1"

    def in_recovery(self) -> bool:
        """True while this node is a standby."""
        return self.psql("SELECT pg_is_in_recovery()") == "t"

    def describe(self) -> dict[str, Any]:
        role = "retired" if self.retired else "standby" if self.standby else "primary"
        return {**super().describe(), "role": role}


class PostgresCluster(Cluster):
    """``options``: ``password`` (str), ``tls`` (bool)."""

    backend = "postgres"
    scheme = "postgresql"
    node_class = PostgresNode
    node_counts = (1, 2)
    nodes: list[PostgresNode]  # type: ignore[assignment]

    def __init__(self, nodes: int = 1, **options: Any) -> None:
        unknown = set(options) - {"password", "tls", "base_dir", "client_ports"}
        if unknown:
            raise ValueError(f"unknown postgres lab option(s) {sorted(unknown)}; "
                             "known: password, tls")
        self.bin = bin_dir()
        self.user = server_user()
        self.password: str | None = options.get("password")
        self.tls = bool(options.get("tls"))
        super().__init__(nodes, **options)
        self.tls_dir = self.base_dir / "tls"
        self.bouncers: list[PgBouncer] = []

    @property
    def primary(self) -> PostgresNode:
        """The node that currently accepts writes."""
        return next(n for n in self.nodes if not n.standby and not n.retired)

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients verify the server with (``tls=True``)."""
        return self.tls_dir / "ca.crt"

    @property
    def url(self) -> str:
        hosts = ",".join(n.client_address for n in self.nodes)
        return f"{self.scheme}://{SUPERUSER}@{hosts}/{DATABASE}"

    def give_to_server_user(self, path: Path) -> None:
        """Makes the server's user own ``path`` (when we run as root)."""
        if self.user is not None:
            owner = pwd.getpwnam(self.user)
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def start(self, timeout: float = 90.0) -> None:
        # The standby is copied from a serving primary, so nodes start one after the
        # other (the base class starts them all, then waits).
        began = time.monotonic()
        try:
            if self.tls:
                self._make_certificates()
            for node in self.nodes:
                node.start()
                node.wait_serving(timeout)
            self.wait_serving(timeout)
        except BaseException as exc:
            logs = self.logs()
            self.close()
            if isinstance(exc, LabError):
                raise LabError(f"postgres x{len(self.nodes)} did not start: {exc}\n{logs}") \
                    from None
            raise
        self.start_time = time.monotonic() - began

    def serves(self) -> bool:
        running = [n for n in self.nodes if n.running]
        if not running or not all(n.serves() for n in running):
            return False
        primary = self.primary
        if not primary.running or primary.in_recovery():
            return False
        standbys = [n for n in self.nodes if n.standby and n.running]
        if not standbys:
            return True
        synced = primary.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = "
                              "'sync' AND state = 'streaming'")
        return int(synced or 0) >= 1

    def pgbouncer(self, mode: str = "transaction", timeout: float = 30.0) -> PgBouncer:
        """Starts PgBouncer in front of the primary with ``pool_mode = mode``; its
        :attr:`PgBouncer.url` is the cluster's URL through it."""
        bouncer = PgBouncer(self, mode)
        self.bouncers.append(bouncer)
        bouncer.start(timeout)
        return bouncer

    def close(self) -> None:
        for bouncer in getattr(self, "bouncers", []):
            bouncer.close()
        super().close()

    def promote(self, node: int = 1, timeout: float = 60.0) -> None:
        """Promotes standby ``node`` to primary (``pg_ctl promote``) and waits until it
        accepts writes. The old primary is retired (killed if it still runs): restarting
        it is refused."""
        target = self.nodes[node]
        if not target.standby:
            raise LabError(f"{target.name} is not a standby")
        old = self.primary
        old.kill()
        old.retired = True
        target.run_as_server_user(
            [str(self.bin / "pg_ctl"), "promote", "-w", "-t", str(int(timeout)), "-D",
             str(target.data_dir)], "pg_ctl promote")
        target.standby = False
        wait_until(lambda: not target.in_recovery(), timeout,
                   f"{target.name} to leave recovery")

    def _make_certificates(self) -> None:
        directory = self.tls_dir
        directory.mkdir(parents=True, exist_ok=True)

        def openssl(*args: str) -> None:
            result = subprocess.run(["openssl", *args], capture_output=True, text=True,
                                    cwd=directory, timeout=60, check=False)
            if result.returncode != 0:
                raise LabError(f"openssl {' '.join(args)} failed: {result.stderr}")

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=tenure lab CA", "-keyout", "ca.key", "-out", "ca.crt")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOST}",
                "-keyout", "server.key", "-out", "server.csr")
        (directory / "san.ext").write_text(f"subjectAltName=IP:{HOST}\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
        directory.chmod(0o755)
        key = directory / "server.key"
        self.give_to_server_user(key)
        key.chmod(0o600)


class PgBouncer:
    """PgBouncer in front of a lab cluster's primary (see :meth:`PostgresCluster.pgbouncer`).
    Authentication is passed through as trust: use it with clusters without a password."""

    def __init__(self, cluster: PostgresCluster, mode: str) -> None:
        if mode not in ("transaction", "session", "statement"):
            raise ValueError(f"pool_mode must be transaction, session or statement, not {mode!r}")
        self.cluster = cluster
        self.mode = mode
        self.port = free_port()
        self.dir = cluster.base_dir / f"pgbouncer-{self.port}"
        self.process: StoreProcess | None = None

    @property
    def url(self) -> str:
        """The backend URL through PgBouncer."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{DATABASE}"

    def start(self, timeout: float) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        (self.dir / "users.txt").write_text(f'"{SUPERUSER}" ""\n')
        primary = self.cluster.primary
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{DATABASE} = host={HOST} port={primary.client_port} dbname={DATABASE}\n"
            "[pgbouncer]\n"
            f"listen_addr = {HOST}\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = {self.mode}\ndefault_pool_size = 10\nmax_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        argv = [find_binary("pgbouncer", "TENURE_PGBOUNCER_BIN"), str(self.dir / "pgbouncer.ini")]
        user = self.cluster.user
        if user is not None:
            argv = [sys.executable, "-I", "-S", "-c", _AS_USER, user, str(os.getpid()), *argv]
        self.process = spawn(f"pgbouncer-{self.port}", argv, self.dir / "pgbouncer.log",
                             cwd=self.dir)
        node = self.cluster.primary

        def serves() -> bool:
            assert self.process is not None
            if not self.process.alive():
                raise LabError(f"pgbouncer exited:\n{self.process.log_tail()}")
            result = subprocess.run(
                [str(node.bin / "psql"), "-X", "-At", "-h", HOST, "-p", str(self.port), "-U",
                 SUPERUSER, "-d", DATABASE, "-c", "SELECT 1"],
                capture_output=True, text=True, timeout=5, check=False)
            return result.stdout.strip() == "1"

        wait_until(serves, timeout, f"pgbouncer on {HOST}:{self.port}")

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
