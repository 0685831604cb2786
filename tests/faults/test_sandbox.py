"""The namespace sandbox leaves nothing behind: closed normally everything is gone; a
run killed by SIGKILL leaves a state file that scripts/check-orphans reports and
--kill (or any new Sandbox, through sweep) removes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tenure.conformance.faults.netns import Sandbox, leftovers, run, sweep

pytestmark = [pytest.mark.faults, pytest.mark.unit]

ROOT = Path(__file__).resolve().parents[2]


def namespaces() -> str:
    return run("ip", "netns", "list")


def links() -> str:
    return run("ip", "-o", "link", "show")


def test_a_closed_sandbox_removes_its_namespaces_links_and_state() -> None:
    with Sandbox() as sandbox:
        a, b = sandbox.add("a"), sandbox.add("b")
        assert a.name in namespaces() and sandbox.bridge in links()
        assert a.address != b.address and sandbox.state.exists()
        # The two namespaces reach each other across the bridge (a real link).
        b.run("ip", "link", "show", b.device)
    assert a.name not in namespaces() and b.name not in namespaces()
    assert sandbox.bridge not in links() and not sandbox.state.exists()


def test_a_sigkilled_owner_leaves_a_record_that_check_orphans_reports_and_removes() -> None:
    code = ("from tenure.conformance.faults.netns import Sandbox\n"
            "s = Sandbox(); ns = s.add('x'); print(s.prefix, ns.name, flush=True)\n"
            "import time; time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    prefix, name = child.stdout.readline().split()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert name in namespaces()
    assert any(state.name == prefix for state in leftovers())
    check = subprocess.run([str(ROOT / "scripts" / "check-orphans")], capture_output=True,
                           text=True, check=False)
    assert check.returncode == 1 and prefix in check.stderr, check.stderr
    done = subprocess.run([str(ROOT / "scripts" / "check-orphans"), "--kill"],
                          capture_output=True, text=True, check=False)
    assert name not in namespaces(), done.stderr
    assert f"{prefix}br" not in links()
    assert not any(state.name == prefix for state in leftovers())
    assert sweep() == []
