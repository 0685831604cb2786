"""Network namespaces on a bridge that one test run makes, owns and removes.

    with Sandbox() as sandbox:
        a = sandbox.add("etcd1")          # namespace tf3a9c-etcd1, address 10.213.7.1
        a.prefix                          # ["ip", "netns", "exec", "tf3a9c-etcd1"]
        sandbox.host_address              # the bridge's address: this process reaches a

Every name starts with a per-run prefix (``tf`` + 4 hex digits), every address is in a
/24 drawn per run from 10.200.0.0-10.249.255.0 that no route of this host uses. Before a
namespace, veth or bridge is made, its name is written to a state file
``/run/tenure-faults/<prefix>`` with the owner's pid, so a run killed by SIGKILL leaves a
record: :func:`sweep` (run by every new :class:`Sandbox`, by ``scripts/check-orphans
--kill`` and by ``python -m tenure.conformance.faults.netns --sweep``) removes what a dead
owner left. Needs root (CI runs as root); without it :class:`FaultUnavailable` says so.

The host side keeps working: this process (and candidates started without a namespace)
reach every namespace through the bridge's address. Namespaces do not share
``127.0.0.1``: a store in a namespace binds its namespace address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

STATE_DIR = Path(os.environ.get("TENURE_FAULTS_STATE", "/run/tenure-faults"))
PREFIX_LEN = 6  # "tf" + 4 hex digits: leaves 9 characters of IFNAMSIZ (15) for suffixes


class FaultUnavailable(RuntimeError):
    """The machine cannot make this fault (not root, no ``ip``/``nft``, no ``netem``);
    the message names what is missing and how to get it."""


def run(*argv: str, check: bool = True, input_text: str | None = None) -> str:
    """Runs a system command and returns its stdout; raises :class:`FaultUnavailable`
    when the tool is missing, ``RuntimeError`` with its stderr when it fails."""
    if shutil.which(argv[0]) is None:
        raise FaultUnavailable(
            f"{argv[0]} not found: run scripts/install-stores (install-stores.d/30-fault-tools)"
        )
    done = subprocess.run(list(argv), capture_output=True, text=True, input=input_text,
                          timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Namespace:
    """One network namespace with one veth on the sandbox bridge."""

    name: str
    address: str
    device: str
    host_device: str

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a program inside this namespace."""
        return ["ip", "netns", "exec", self.name]

    def run(self, *argv: str, check: bool = True, input_text: str | None = None) -> str:
        """Runs ``argv`` inside the namespace (``ip netns exec``)."""
        return run(*self.prefix, *argv, check=check, input_text=input_text)


class Sandbox:
    """A bridge and the namespaces of one run; see the module docstring."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise FaultUnavailable("network namespaces need root (CI runs as root)")
        sweep()
        self.prefix = "tf" + secrets.token_hex(2)
        self.state = STATE_DIR / self.prefix
        self.network = _free_subnet()
        hosts = list(self.network.hosts())
        self._addresses = iter(hosts[:-1])
        self.host_address = str(hosts[-1])
        self.bridge = f"{self.prefix}br"
        self.namespaces: dict[str, Namespace] = {}
        self.closed = False
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self._record("pid", str(os.getpid()))
        self._record("link", self.bridge)
        try:
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "addr", "add", f"{self.host_address}/{self.network.prefixlen}",
                "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def _record(self, kind: str, name: str) -> None:
        with self.state.open("a") as state:
            state.write(f"{kind} {name}\n")

    def add(self, label: str) -> Namespace:
        """Makes namespace ``<prefix>-<label>`` with the next address, on the bridge."""
        if label in self.namespaces:
            raise ValueError(f"namespace {label!r} already exists in this sandbox")
        index = len(self.namespaces) + 1
        name = f"{self.prefix}-{label}"
        host_device, device = f"{self.prefix}h{index}", f"{self.prefix}n{index}"
        address = str(next(self._addresses))
        self._record("netns", name)
        self._record("link", host_device)
        run("ip", "netns", "add", name)
        run("ip", "link", "add", host_device, "type", "veth", "peer", "name", device,
            "netns", name)
        run("ip", "link", "set", host_device, "master", self.bridge, "up")
        ns = Namespace(name, address, device, host_device)
        ns.run("ip", "addr", "add", f"{address}/{self.network.prefixlen}", "dev", device)
        ns.run("ip", "link", "set", device, "up")
        ns.run("ip", "link", "set", "lo", "up")
        self.namespaces[label] = ns
        return ns

    def close(self) -> None:
        """Removes every namespace, link and the state file. Idempotent."""
        if self.closed:
            return
        self.closed = True
        _remove(self.state)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _free_subnet() -> ipaddress.IPv4Network:
    used = [ipaddress.ip_network(r.get("dst"), strict=False)
            for r in json.loads(run("ip", "-j", "route", "show", "table", "all") or "[]")
            if r.get("dst") not in (None, "default") and ":" not in r.get("dst", ":")]
    rng = random.Random(secrets.randbits(32))
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randrange(200, 250)}.{rng.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise FaultUnavailable("no free /24 in 10.200.0.0/16-10.249.0.0/16 for the sandbox")


def _remove(state: Path) -> list[str]:
    """Deletes what the state file lists (namespaces first: their processes' sockets go
    with them; a veth goes with its namespace) and the file; returns what it removed."""
    try:
        lines = state.read_text().splitlines()
    except FileNotFoundError:
        return []
    removed = []
    entries = [line.split(" ", 1) for line in lines if " " in line]
    order = {"mount": 0, "netns": 1, "link": 2}
    for kind, name in sorted(entries, key=lambda e: order.get(e[0], 3)):
        if kind == "mount":
            done = subprocess.run(["umount", "-l", name], capture_output=True, check=False)
        elif kind == "netns":
            done = subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        elif kind == "link":
            done = subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
        else:
            continue
        if done.returncode == 0:
            removed.append(f"{kind} {name}")
    with contextlib.suppress(FileNotFoundError):
        state.unlink()
    return removed


def owner_alive(state: Path) -> bool:
    """True when the pid recorded in ``state`` is a live process."""
    try:
        pids = [int(line.split()[1]) for line in state.read_text().splitlines()
                if line.startswith("pid ")]
    except (OSError, ValueError, IndexError):
        return False
    for pid in pids:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            continue
        except PermissionError:
            return True
    return False


def leftovers() -> list[Path]:
    """State files whose owner is dead (what :func:`sweep` would remove)."""
    if not STATE_DIR.is_dir():
        return []
    return sorted(p for p in STATE_DIR.iterdir() if p.is_file() and not owner_alive(p))


def record_mount(owner: Sandbox | None, path: Path) -> Path:
    """Records a mount point to be unmounted by :func:`sweep` if the owner dies; returns
    the state file it went to (a per-process file when there is no sandbox)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state = owner.state if owner is not None else STATE_DIR / f"mnt-{os.getpid()}"
    if owner is None and not state.exists():
        state.write_text(f"pid {os.getpid()}\n")
    with state.open("a") as f:
        f.write(f"mount {path}\n")
    return state


def forget_mount(state: Path, path: Path) -> None:
    """Drops a mount point from ``state`` once it is unmounted."""
    try:
        lines = state.read_text().splitlines()
    except FileNotFoundError:
        return
    kept = [line for line in lines if line != f"mount {path}"]
    if all(line.startswith("pid ") for line in kept):
        with contextlib.suppress(FileNotFoundError):
            state.unlink()
    else:
        state.write_text("".join(line + "\n" for line in kept))


def sweep() -> list[str]:
    """Removes namespaces, links and mounts left by runs whose process is gone."""
    removed: list[str] = []
    for state in leftovers():
        removed += _remove(state)
    return removed


def main(argv: list[str] | None = None) -> int:
    """``--list``: print leftovers, exit 1 if any; ``--sweep``: remove them."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--sweep"]:
        for item in sweep():
            print(f"removed {item}")
        return 0
    if args == ["--list"]:
        found = leftovers()
        for state in found:
            print(f"leftover fault sandbox {state.name}: "
                  + ", ".join(state.read_text().split("\n")[1:]).strip(", "))
        return 1 if found else 0
    print("usage: python -m tenure.conformance.faults.netns --list | --sweep", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
