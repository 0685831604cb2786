"""A real kube-apiserver in the lab, over a lab etcd (1 node each).

``start_cluster("kubernetes")`` starts a 1-member etcd (:mod:`.etcd`), then
kube-apiserver (built by ``scripts/install-stores.d/20-kube-apiserver``, found as
``$TENURE_KUBE_APISERVER_BIN``, ``$TENURE_CACHE/bin/kube-apiserver`` or on PATH) on
127.0.0.1 at a free port with:

* a generated service-account key pair (``sa.key``/``sa.pub``, by ``openssl``),
* a static token file (one ``system:masters`` user, token in :attr:`KubernetesCluster.token`,
  and one user RBAC grants nothing, :attr:`KubernetesCluster.unprivileged_token`),
* its self-signed serving certificate in ``certs/`` (kept across restarts), which the
  kubeconfig trusts as the cluster CA,
* ``kubeconfig.json`` (JSON is YAML): server, CA, token; :attr:`url` names it.

Readiness: ``/readyz`` answers ``ok`` and the ``default`` namespace exists (the apiserver
creates it shortly after it starts serving).

Faults: ``nodes[0].kill()``/``restart()`` (the apiserver; data stays in etcd),
:meth:`KubernetesCluster.kill_etcd`/:meth:`restart_etcd` (the etcd under it),
:meth:`KubernetesCluster.proxy` (a TCP proxy between clients and the apiserver; its
``url`` names a kubeconfig whose server is the proxy, same CA: the certificate is for
127.0.0.1, whatever the port). Teardown is SIGKILL: on SIGTERM the apiserver drains for
more than 10 s (it also runs with ``--shutdown-delay-duration=0s``).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tenure.conformance.lab.cluster import (
    HOST,
    ClientProxy,
    Cluster,
    LabError,
    Node,
    find_binary,
)
from tenure.conformance.lab.etcd import EtcdCluster
from tenure.conformance.lab.proxy import Proxy

NAMESPACE = "default"


class ApiServerNode(Node):
    """The kube-apiserver process."""

    cluster: KubernetesCluster

    @property
    def cert_dir(self) -> Path:
        return self.dir / "certs"

    @property
    def ca_file(self) -> Path:
        """The self-signed serving certificate (with its CA) the apiserver writes."""
        return self.cert_dir / "apiserver.crt"

    def prepare(self) -> None:
        key, pub = self.dir / "sa.key", self.dir / "sa.pub"
        if not key.exists():
            openssl = shutil.which("openssl")
            if openssl is None:
                raise LabError("openssl not found: the kubernetes lab generates its "
                               "service-account key with it (apt-get install openssl)")
            for argv in ([openssl, "genrsa", "-out", str(key), "2048"],
                         [openssl, "rsa", "-in", str(key), "-pubout", "-out", str(pub)]):
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise LabError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        (self.dir / "tokens.csv").write_text(
            f"{self.cluster.token},tenure-lab-admin,tenure-lab-admin,system:masters\n"
            f"{self.cluster.unprivileged_token},tenure-lab-nobody,tenure-lab-nobody\n")

    def argv(self) -> list[str]:
        return [
            find_binary("kube-apiserver", "TENURE_KUBE_APISERVER_BIN"),
            f"--etcd-servers={self.cluster.etcd.nodes[0].http}",
            f"--cert-dir={self.cert_dir}",
            f"--secure-port={self.client_port}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.dir / 'sa.key'}",
            f"--token-auth-file={self.dir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--disable-admission-plugins=ServiceAccount",
            "--shutdown-delay-duration=0s",
            "--watch-cache=true",
            "--v=1",
        ]

    def _get(self, path: str) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(
            f"https://{self.client_address}{path}",
            headers={"Authorization": f"Bearer {self.cluster.token}"})
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), b""

    def serves(self) -> bool:
        if not self.ca_file.exists():
            return False
        status, body = self._get("/readyz")
        if status != 200 or body.strip() != b"ok":
            return False
        return self._get(f"/api/v1/namespaces/{NAMESPACE}")[0] == 200

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["kubeconfig"] = str(self.cluster.kubeconfig)
        return info


class KubernetesCluster(Cluster):
    """kube-apiserver over a 1-member etcd; see the module docstring."""

    backend = "kubernetes"
    scheme = "kubernetes"
    node_class = ApiServerNode
    node_counts = (1,)
    nodes: list[ApiServerNode]  # type: ignore[assignment]

    def __init__(self, nodes: int = 1, **options: Any) -> None:
        super().__init__(nodes, **options)
        self.token = uuid.uuid4().hex
        self.unprivileged_token = uuid.uuid4().hex
        """A user that RBAC grants nothing (for tests of refused requests)."""
        self.etcd = EtcdCluster(1, base_dir=self.base_dir / "etcd")
        self.kubeconfig = self.base_dir / "kubeconfig.json"
        self._proxy_configs = 0

    @property
    def apiserver(self) -> ApiServerNode:
        return self.nodes[0]

    @property
    def url(self) -> str:
        return f"kubernetes://{NAMESPACE}?kubeconfig={self.kubeconfig}"

    def write_kubeconfig(self, path: Path, server: str, token: str | None = None) -> None:
        """A kubeconfig for ``server`` with the lab's CA and token (context ``lab``)."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "lab",
            "clusters": [{"name": "lab", "cluster": {
                "server": server, "certificate-authority": str(self.apiserver.ca_file)}}],
            "users": [{"name": "lab-admin", "user": {"token": token or self.token}}],
            "contexts": [{"name": "lab", "context": {
                "cluster": "lab", "user": "lab-admin", "namespace": NAMESPACE}}],
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)

    def start(self, timeout: float = 90.0) -> None:
        try:
            self.etcd.start(timeout)
        except LabError as exc:
            self.close()
            raise LabError(f"kubernetes: its etcd did not start: {exc}") from None
        self.write_kubeconfig(self.kubeconfig, f"https://{self.apiserver.client_address}")
        super().start(timeout)

    # -- faults ---------------------------------------------------------------------

    def kill_etcd(self) -> None:
        """SIGKILL the etcd under the apiserver (the apiserver keeps running)."""
        self.etcd.nodes[0].kill()

    def restart_etcd(self, timeout: float = 60.0) -> None:
        """Starts the etcd again with its data and waits until the apiserver serves."""
        self.etcd.nodes[0].restart(timeout=timeout)
        self.wait_serving(timeout)

    def proxy(self, node: int | None = None) -> ClientProxy:
        """A TCP proxy in front of the apiserver; its ``url`` names a kubeconfig whose
        server is the proxy."""
        proxy = Proxy((HOST, self.apiserver.client_port), name="client->kube-apiserver")
        self.proxies.append(proxy)
        self._proxy_configs += 1
        path = self.base_dir / f"kubeconfig-proxy{self._proxy_configs}.json"
        self.write_kubeconfig(path, f"https://{proxy.address}")
        group = ClientProxy(self.scheme, [proxy])
        group.url = f"kubernetes://{NAMESPACE}?kubeconfig={path}"
        return group

    # -- reporting and teardown -----------------------------------------------------

    def logs(self, lines: int = 40) -> str:
        return super().logs(lines) + "\n" + self.etcd.logs(lines)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["kubeconfig"] = str(self.kubeconfig)
        info["etcd"] = self.etcd.describe()
        return info

    def close(self) -> None:
        if self.closed:
            return
        keep_dir = not self._own_dir or bool(os.environ.get("TENURE_LAB_KEEP"))
        self._own_dir = False  # removed below, after etcd stopped writing into it
        super().close()
        self.etcd.close()
        if not keep_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
