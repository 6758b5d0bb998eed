"""Deployments own ReplicaSets, ReplicaSets own pods, seen through the real
kubectl (and a pod watch from the official Python client) in a 2-node lab.

The pods run agnhost netexec with a readiness probe every second, so a
rollout takes a few seconds: a template change (env) rolls out with
maxSurge=1 / maxUnavailable=0 while a watch follows every pod event;
`kubectl rollout status / history / undo`, `kubectl get rs`, `kubectl
describe deployment`, `kubectl scale rs`; Recreate; a ReplicaSet on its
own; the garbage collector taking ReplicaSets and pods with their owner;
the scheduler's hostPort filter.
"""

from __future__ import annotations

import re
import threading

import pytest

from tests.api.conftest import kube_lab_fixture
from tests.helpers import wait_for

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config, watch  # noqa: E402


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab of 2 nodes and no workload of its own."""
    yield from kube_lab_fixture(tmp_path_factory, "ro", manifests=())


def deployment(name: str, strategy: str, env: str = "1", replicas: int = 3) -> str:
    rolling = "\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}" if strategy == "RollingUpdate" else ""
    return """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %(name)s
spec:
  replicas: %(replicas)d
  strategy:
    type: %(strategy)s%(rolling)s
  selector:
    matchLabels: {app: %(name)s}
  template:
    metadata:
      labels: {app: %(name)s}
    spec:
      containers:
      - name: netexec
        image: agnhost
        args: ["netexec", "--http-port=8080"]
        env: [{name: V, value: "%(env)s"}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
""" % dict(name=name, strategy=strategy, rolling=rolling, env=env, replicas=replicas)


def table(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    head = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(head, re.split(r"\s{2,}", ln.strip()), strict=True)) for ln in lines[1:]]


class PodWatch:
    """Every event of the pods with label app=<app>, from the official
    Python client's watch; after each one, a snapshot of what is there:
    {name: (template hash, Ready, terminating)}."""

    def __init__(self, kubeconfig: str, app: str):
        cfg = client.Configuration()
        config.load_kube_config(kubeconfig, client_configuration=cfg)
        self.v1 = client.CoreV1Api(client.ApiClient(cfg))
        self.app = app
        self.pods: dict[str, tuple[str, bool, bool]] = {}
        self.snapshots: list[dict[str, tuple[str, bool, bool]]] = []
        self.error: Exception | None = None
        self.stopping = threading.Event()
        listed = self.v1.list_namespaced_pod("default", label_selector="app=" + app)
        for p in listed.items:
            self._see("ADDED", p)
        self.snapshots = [dict(self.pods)]  # from the whole list on, not pod by pod
        self.rv = listed.metadata.resource_version
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _see(self, typ: str, p) -> None:
        if typ == "DELETED":
            self.pods.pop(p.metadata.name, None)
        else:
            ready = any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
            h = (p.metadata.labels or {}).get("pod-template-hash", "")
            self.pods[p.metadata.name] = (h, ready, p.metadata.deletion_timestamp is not None)
        self.snapshots.append(dict(self.pods))

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                w = watch.Watch()
                for ev in w.stream(
                    self.v1.list_namespaced_pod,
                    "default",
                    label_selector="app=" + self.app,
                    resource_version=self.rv,
                    timeout_seconds=2,
                ):
                    self.rv = ev["object"].metadata.resource_version
                    self._see(ev["type"], ev["object"])
        except Exception as exc:  # the test fails on it in stop()
            self.error = exc

    def stop(self) -> list[dict[str, tuple[str, bool, bool]]]:
        self.stopping.set()
        self.thread.join(10)
        assert self.error is None, "the pod watch failed: %r" % self.error
        return self.snapshots


def rs_rows(lab, app: str) -> dict[str, dict[str, str]]:
    return {r["NAME"]: r for r in table(lab.kubectl("get", "rs", "-l", "app=" + app).stdout)}


def test_rolling_update_keeps_every_replica_ready(lab):
    """maxSurge 1, maxUnavailable 0: 3 Ready pods all the way; then undo."""
    path = lab.write("roll.yaml", deployment("roll", "RollingUpdate"))
    try:
        lab.kubectl("apply", "-f", path)
        lab.kubectl("rollout", "status", "deployment/roll", "--timeout=60s", timeout=90)
        (first,) = rs_rows(lab, "roll")
        assert (rs_rows(lab, "roll")[first]["DESIRED"], rs_rows(lab, "roll")[first]["READY"]) == ("3", "3")
        rs = lab.kjson("get", "rs", first)
        h = rs["metadata"]["labels"]["pod-template-hash"]
        assert first == "roll-" + h and rs["spec"]["selector"]["matchLabels"]["pod-template-hash"] == h
        assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        pod = lab.kjson("get", "pods", "-l", "app=roll")["items"][0]
        assert pod["metadata"]["name"].startswith(first + "-") and len(pod["metadata"]["name"]) == len(first) + 6
        assert pod["metadata"]["ownerReferences"][0]["name"] == first

        seen = PodWatch(lab.kubeconfig, "roll")
        lab.write("roll.yaml", deployment("roll", "RollingUpdate", env="2"))
        lab.kubectl("apply", "-f", path)
        res = lab.kubectl("rollout", "status", "deployment/roll", "--timeout=60s", timeout=90)
        assert res.stdout.strip().endswith('deployment "roll" successfully rolled out'), res.stdout
        wait_for("the old pods gone", lambda: all(v[0] != h for v in seen.pods.values()), 30)
        snaps = seen.stop()
        new_hash = next(v[0] for v in snaps[-1].values())
        assert new_hash != h
        for s in snaps:  # maxUnavailable 0: never fewer than 3 Ready (not terminating) pods
            assert sum(1 for _, ready, term in s.values() if ready and not term) >= 3, s
            # maxSurge 1: at most 4 pods that are not terminating
            assert sum(1 for _, _, term in s.values() if not term) <= 4, s
            # an old pod goes only when as many new pods are Ready as old ones went
            old_left = sum(1 for hh, _, term in s.values() if hh == h and not term)
            new_ready = sum(1 for hh, ready, term in s.values() if hh == new_hash and ready and not term)
            assert new_ready >= 3 - old_left, s
        assert any(sum(1 for v in s.values() if v[0] == new_hash) for s in snaps if any(v[0] == h for v in s.values()))

        rows = rs_rows(lab, "roll")
        assert set(rows) == {first, "roll-" + new_hash}, rows
        assert (rows[first]["DESIRED"], rows[first]["CURRENT"]) == ("0", "0"), rows
        assert (rows["roll-" + new_hash]["DESIRED"], rows["roll-" + new_hash]["READY"]) == ("3", "3"), rows
        hist = lab.kubectl("rollout", "history", "deployment/roll").stdout
        assert re.search(r"^1\s", hist, re.M) and re.search(r"^2\s", hist, re.M), hist

        out = lab.kubectl("describe", "deployment", "roll").stdout
        assert re.search(r"^NewReplicaSet:\s+roll-%s \(3/3 replicas created\)" % new_hash, out, re.M), out
        assert re.search(r"^OldReplicaSets:\s+%s \(0/0 replicas created\)" % first, out, re.M), out
        assert "Scaled up replica set roll-%s to 1\n" % new_hash in out, out
        assert "Scaled down replica set %s to 0 from 1" % first in out, out

        lab.kubectl("rollout", "undo", "deployment/roll")
        lab.kubectl("rollout", "status", "deployment/roll", "--timeout=60s", timeout=90)
        rows = rs_rows(lab, "roll")
        assert set(rows) == {first, "roll-" + new_hash}, rows  # the old ReplicaSet again, none new
        assert (rows[first]["DESIRED"], rows[first]["READY"]) == ("3", "3"), rows
        rs = lab.kjson("get", "rs", first)
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        d = lab.kjson("get", "deployment", "roll")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert d["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "V", "value": "1"}]
        conds = {c["type"]: c["reason"] for c in d["status"]["conditions"]}
        assert conds == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
    finally:
        lab.kubectl("delete", "-f", path, "--ignore-not-found", timeout=120)
    # the garbage collector takes the ReplicaSets and their pods with the Deployment
    wait_for(
        "roll's ReplicaSets and pods gone",
        lambda: not lab.kjson("get", "rs,pods", "-l", "app=roll")["items"],
        60,
    )


def test_recreate_never_overlaps(lab):
    """Recreate: every old pod is gone before a new one starts."""
    path = lab.write("rec.yaml", deployment("rec", "Recreate"))
    try:
        lab.kubectl("apply", "-f", path)
        lab.kubectl("rollout", "status", "deployment/rec", "--timeout=60s", timeout=90)
        (first,) = rs_rows(lab, "rec")
        seen = PodWatch(lab.kubeconfig, "rec")
        lab.write("rec.yaml", deployment("rec", "Recreate", env="2"))
        lab.kubectl("apply", "-f", path)
        lab.kubectl("rollout", "status", "deployment/rec", "--timeout=60s", timeout=90)
        wait_for("3 new pods Ready", lambda: sum(v[1] for v in seen.pods.values()) == 3, 30)
        snaps = seen.stop()
        old = first[len("rec-") :]
        for s in snaps:  # never an old pod (even a terminating one) beside a new one
            hashes = {v[0] for v in s.values()}
            assert not (old in hashes and len(hashes) > 1), s
        assert any(not s for s in snaps)  # a moment with no pod at all
        assert len(rs_rows(lab, "rec")) == 2
        # foreground deletion: kubectl waits until the Deployment is gone, and
        # it goes only after its ReplicaSets, which go only after their pods
        lab.kubectl("delete", "deployment", "rec", "--cascade=foreground", "--timeout=60s", timeout=90)
        assert lab.kjson("get", "rs,pods", "-l", "app=rec")["items"] == []
    finally:
        lab.kubectl("delete", "-f", path, "--ignore-not-found", timeout=120)


SOLO = """\
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: solo
spec:
  replicas: 2
  selector:
    matchLabels: {app: solo}
  template:
    metadata:
      labels: {app: solo}
    spec:
      containers:
      - name: pause
        image: agnhost
        args: ["pause"]
"""


def test_a_standalone_replica_set_runs_its_pods(lab):
    """A ReplicaSet with no Deployment: its pods, a replacement, kubectl scale rs."""
    path = lab.write("solo.yaml", SOLO)
    try:
        lab.kubectl("apply", "-f", path)
        wait_for("solo 2/2 ready", lambda: table(lab.kubectl("get", "rs", "solo").stdout)[0]["READY"] == "2", 30)
        pods = lab.kjson("get", "pods", "-l", "app=solo")["items"]
        assert len(pods) == 2 and all(p["metadata"]["ownerReferences"][0]["name"] == "solo" for p in pods)
        victim = pods[0]["metadata"]["name"]
        lab.kubectl("delete", "pod", victim, "--wait=false")  # replaced
        wait_for(
            "a replacement pod",
            lambda: (lambda names: len(names) == 2 and victim not in names)(
                [p["metadata"]["name"] for p in lab.kjson("get", "pods", "-l", "app=solo")["items"]]
            ),
            30,
        )
        assert lab.kubectl("scale", "rs", "solo", "--replicas=1").stdout.strip() == "replicaset.apps/solo scaled"
        wait_for("one solo pod", lambda: len(lab.kjson("get", "pods", "-l", "app=solo")["items"]) == 1, 30)
        rs = lab.kjson("get", "rs", "solo")
        wait_for("solo status 1", lambda: lab.kjson("get", "rs", "solo")["status"]["replicas"] == 1, 15)
        rs = lab.kjson("get", "rs", "solo")
        assert rs["status"]["observedGeneration"] == rs["metadata"]["generation"]
        out = lab.kubectl("describe", "rs", "solo").stdout
        assert "SuccessfulCreate" in out and "SuccessfulDelete" in out and "Created pod: solo-" in out, out
    finally:
        lab.kubectl("delete", "-f", path, "--ignore-not-found", timeout=120)


HOSTPORT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hp
spec:
  replicas: 3
  selector:
    matchLabels: {app: hp}
  template:
    metadata:
      labels: {app: hp}
    spec:
      containers:
      - name: pause
        image: agnhost
        args: ["pause"]
        ports:
        - containerPort: 8080
          hostPort: 18080
"""


def test_a_third_pod_with_the_same_host_port_waits_on_2_nodes(lab):
    path = lab.write("hp.yaml", HOSTPORT)
    try:
        lab.kubectl("apply", "-f", path)

        def pending():
            pods = lab.kjson("get", "pods", "-l", "app=hp")["items"]
            waiting = [p for p in pods if not p["spec"].get("nodeName")]
            return waiting if len(pods) == 3 and len(waiting) == 1 else None

        (p,) = wait_for("one hp pod unschedulable", pending, 30)
        nodes = {q["spec"].get("nodeName") for q in lab.kjson("get", "pods", "-l", "app=hp")["items"]} - {None}
        assert len(nodes) == 2
        msg = "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports"
        wait_for(
            "FailedScheduling",
            lambda: msg in lab.kubectl("describe", "pod", p["metadata"]["name"]).stdout,
            15,
        )
    finally:
        lab.kubectl("delete", "-f", path, "--ignore-not-found", timeout=120)


def test_pause_resume_and_a_new_deployment_adopting_orphaned_replicasets(lab):
    path = lab.write("keep.yaml", deployment("keep", "RollingUpdate", replicas=2))
    try:
        lab.kubectl("apply", "-f", path)
        lab.kubectl("rollout", "status", "deployment/keep", "--timeout=60s", timeout=90)
        (first,) = rs_rows(lab, "keep")
        lab.kubectl("rollout", "pause", "deployment/keep")
        lab.kubectl("set", "env", "deployment/keep", "V=2")
        wait_for(
            "Progressing: DeploymentPaused",
            lambda: (
                "DeploymentPaused" in {c["reason"] for c in lab.kjson("get", "deploy", "keep")["status"]["conditions"]}
            ),
            15,
        )
        assert list(rs_rows(lab, "keep")) == [first]  # paused: no rollout
        lab.kubectl("rollout", "resume", "deployment/keep")
        lab.kubectl("rollout", "status", "deployment/keep", "--timeout=60s", timeout=90)
        rows = rs_rows(lab, "keep")
        assert len(rows) == 2 and rows[first]["DESIRED"] == "0", rows
        pods = sorted(p["metadata"]["name"] for p in lab.kjson("get", "pods", "-l", "app=keep")["items"])

        # the Deployment goes, its ReplicaSets and pods stay; a new one with the same selector takes them
        lab.kubectl("delete", "deployment", "keep", "--cascade=orphan")
        for rs in lab.kjson("get", "rs", "-l", "app=keep")["items"]:
            assert not rs["metadata"].get("ownerReferences"), rs["metadata"]
        lab.write("keep.yaml", deployment("keep", "RollingUpdate", env="2", replicas=2))
        lab.kubectl("apply", "-f", path)
        lab.kubectl("rollout", "status", "deployment/keep", "--timeout=60s", timeout=90)
        uid = lab.kjson("get", "deployment", "keep")["metadata"]["uid"]
        rss = lab.kjson("get", "rs", "-l", "app=keep")["items"]
        assert len(rss) == 2 and all(r["metadata"]["ownerReferences"][0]["uid"] == uid for r in rss), rss
        assert sorted(p["metadata"]["name"] for p in lab.kjson("get", "pods", "-l", "app=keep")["items"]) == pods
    finally:
        lab.kubectl("delete", "-f", path, "--ignore-not-found", timeout=120)
        lab.kubectl("delete", "rs", "-l", "app=keep", "--ignore-not-found", timeout=120)
