"""Kubernetes backend without an apiserver: Lease names within Kubernetes' rules, URL and
credential errors that name the input and the fix, and the watch's re-list after 410."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenure.adapters.kubernetes import holder_of, lease_name
from tenure.adapters.kubernetes_client import LeaseWatch, parse_url
from tenure.config import parse_backend_url
from tenure.errors import ConfigError

pytestmark = [pytest.mark.kubernetes, pytest.mark.unit]

SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
ELECTION_NAMES = st.from_regex(r"[A-Za-z0-9._-]{1,40}(/[A-Za-z0-9._-]{1,40}){0,4}",
                               fullmatch=True).filter(
    lambda n: ".." not in n.split("/") and len(n) <= 200)


def test_a_valid_lease_name_is_used_as_it_is() -> None:
    assert lease_name("my-controller") == "my-controller"
    assert lease_name("kube-scheduler.example.com") == "kube-scheduler.example.com"


def test_other_names_get_a_hash_and_stay_distinct() -> None:
    names = {lease_name(n) for n in ("Jobs/A", "jobs/a", "jobs-a", "jobs_a", "tenure-session-1")}
    assert len(names) == 5
    assert lease_name("jobs-a") == "jobs-a"
    assert re.fullmatch(r"jobs-a-[0-9a-f]{10}", lease_name("jobs/a"))
    assert lease_name("tenure-session-1") != "tenure-session-1"  # reserved prefix


@settings(max_examples=60, deadline=None)
@given(ELECTION_NAMES)
def test_every_election_name_maps_to_a_dns1123_subdomain(election: str) -> None:
    name = lease_name(election)
    assert len(name) <= 253
    assert SUBDOMAIN.fullmatch(name), name
    assert lease_name(election) == name


def test_a_200_character_name_fits() -> None:
    election = "/".join(["Segment_" + "x" * 30] * 5)[:200]
    name = lease_name(election)
    assert len(name) <= 253 and SUBDOMAIN.fullmatch(name)


def test_client_go_annotations_left_behind_are_not_taken_for_a_tenure_holder() -> None:
    lease = {"metadata": {"annotations": {
        "tenure.dev/holder": "old", "tenure.dev/acquired": "t1", "tenure.dev/token": "4",
        "tenure.dev/session": "tenure-session-x", "tenure.dev/ticket": "k"}},
        "spec": {"holderIdentity": "client-go-pod", "acquireTime": "t2",
                 "leaseTransitions": 5}}
    holder = holder_of(lease)
    assert holder is not None
    assert (holder.identity, holder.session, holder.token) == ("client-go-pod", None, 5)


def _kubeconfig(tmp_path: Path, namespace: str | None = None) -> Path:
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    path = tmp_path / "kubeconfig.json"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "ctx", "context": context}]}))
    return path


def _parse(url: str) -> Any:
    return parse_url(parse_backend_url(url)[0])


def test_namespace_comes_from_the_url_then_the_context(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path, namespace="team-a")
    assert _parse(f"kubernetes://ops?kubeconfig={path}").namespace == "ops"
    assert _parse(f"kubernetes://?kubeconfig={path}").namespace == "team-a"
    config = _parse(f"kubernetes://?kubeconfig={path}&layout=native&timeout=2")
    assert config.native and config.timeout == 2
    assert "secret-token" not in config.description


@pytest.mark.parametrize(("url", "message"), [
    ("kubernetes://Bad_NS?kubeconfig={k}", r"namespace 'Bad_NS' is not a Kubernetes namespace"),
    ("kubernetes://ns?kubeconfig={k}&colour=red", r"unknown option\(s\) colour .*kubeconfig"),
    ("kubernetes://ns?kubeconfig={k}&layout=fancy", r"layout='fancy' must be one of tenure"),
    ("kubernetes://ns?kubeconfig={k}&context=nope", r"context 'nope'.*kubectl config"),
    ("kubernetes://ns?kubeconfig=/no/such/file", r"kubeconfig='/no/such/file': no such file"),
    ("kubernetes://ns/extra?kubeconfig={k}", r"names only a namespace"),
])
def test_bad_urls_name_the_input_and_the_fix(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _parse(url.format(k=_kubeconfig(tmp_path)))
    assert "secret-token" not in str(caught.value)


# -- the watch re-lists after 410 Gone ----------------------------------------------------


class _Stream:
    """A watch response: gives ``events`` then blocks until shut down."""

    def __init__(self, events: list[dict[str, Any]], go: threading.Event) -> None:
        self.events = events
        self.go = go
        self.stopped = threading.Event()

    def stream(self, size: int, decode_content: bool) -> Any:
        self.go.wait(30)
        for event in self.events:
            yield json.dumps(event).encode() + b"\n"
        self.stopped.wait(30)

    def shutdown(self) -> None:
        self.stopped.set()

    def release_conn(self) -> None:
        pass


class _FakeApi:
    """Lease ``l`` at resourceVersion 10; the first watch answers 410 Gone."""

    def __init__(self) -> None:
        self.config = type("C", (), {"timeout": 5.0})()
        self.rv = 10
        self.watched_from: list[str] = []
        self.streams: list[_Stream] = []
        self.go = threading.Event()

    def get(self, name: str, action: str = "") -> dict[str, Any]:
        return {"metadata": {"name": name, "resourceVersion": str(self.rv)}}

    def watch(self, name: str, resource_version: str) -> _Stream:
        self.watched_from.append(resource_version)
        if len(self.watched_from) == 1:
            self.rv = 20  # compacted past 10 meanwhile
            stream = _Stream([{"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}],
                             self.go)
        else:
            stream = _Stream([], self.go)
        self.streams.append(stream)
        return stream


def test_a_410_gone_re_reads_the_lease_fires_waiters_and_watches_from_the_new_version() -> None:
    from tenure.store import EventSignal

    api = _FakeApi()
    watch = LeaseWatch(api, "l", lambda w: None)  # type: ignore[arg-type]
    try:
        signal = EventSignal()
        watch.add(signal, timeout=5)
        assert not signal.event.is_set()
        api.go.set()  # now the server answers the first watch with 410 Gone
        assert signal.wait(10), "the 410 must wake the waiter (changes may have been missed)"
        deadline_streams = threading.Event()
        for _ in range(100):
            if len(api.watched_from) >= 2:
                break
            deadline_streams.wait(0.05)
        assert api.watched_from[:2] == ["10", "20"]
        assert watch.relists == 2
    finally:
        watch.stop()
        for stream in api.streams:
            stream.shutdown()
