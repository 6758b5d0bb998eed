"""The official Python client (`kubernetes` from PyPI) against a lab: the
lab's kubeconfig loaded with `kubernetes.config.load_kube_config(path)`,
then what people's scripts do: list, create, patch, delete, watch, and a
watch that carries on across a restart of the API server, resuming from the
last resourceVersion it saw as client code does (or re-listing on 410).

One lab for the module: examples/lab.yaml (Deployment web with 3 netexec
pods, Service web, a client pod).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import threading
import time

import pytest
import urllib3

from tests.helpers import wait_for

pytestmark = pytest.mark.kernel

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


@pytest.fixture(scope="module")
def api(client_lab):
    """The client configured from the lab's kubeconfig; the process-wide
    default configuration is put back afterwards."""
    before = client.Configuration.get_default_copy()
    config.load_kube_config(client_lab.kubeconfig)
    try:
        yield client
    finally:
        client.Configuration.set_default(before)


def pod_is_ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def pod_body(name: str, labels: dict[str, str] | None = None):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {"test": "python-client"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="pause", image="agnhost", args=["pause"])]),
    )


def deployment_body(name: str, replicas: int):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=dict(labels)),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=dict(labels)),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=dict(labels)),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="netexec",
                            image="registry.k8s.io/e2e-test-images/agnhost:2.45",
                            args=["netexec", "--http-port=8080"],
                            ports=[client.V1ContainerPort(container_port=8080)],
                        )
                    ]
                ),
            ),
        ),
    )


def namespace(v1, name: str) -> None:
    ns = v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    assert ns.metadata.name == name and ns.metadata.uid


def drop_namespace(v1, name: str) -> None:
    try:
        v1.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise


def ready_pods(v1, ns: str, selector: str) -> dict:
    pods = v1.list_namespaced_pod(ns, label_selector=selector).items
    return {p.metadata.name: p for p in pods if pod_is_ready(p) and not p.metadata.deletion_timestamp}


def test_list_pods_nodes_and_services(api):
    v1 = api.CoreV1Api()
    nodes = {n.metadata.name: n for n in v1.list_node().items}
    assert sorted(nodes) == ["node1", "node2"]
    for name, ip in (("node1", "192.168.200.11"), ("node2", "192.168.200.12")):
        n = nodes[name]
        assert {(c.type, c.status) for c in n.status.conditions} >= {("Ready", "True")}
        assert ("InternalIP", ip) in {(a.type, a.address) for a in n.status.addresses}
    cidrs = {name: ipaddress.ip_network(n.spec.pod_cidr) for name, n in nodes.items()}

    pods = v1.list_namespaced_pod("default")
    assert pods.metadata.resource_version
    by_name = {p.metadata.name: p for p in pods.items}
    assert "client" in by_name and len([n for n in by_name if n.startswith("web-")]) == 3
    for p in by_name.values():
        assert p.status.phase == "Running" and pod_is_ready(p)
        assert ipaddress.ip_address(p.status.pod_ip) in cidrs[p.spec.node_name]

    webs = v1.list_namespaced_pod("default", label_selector="app=web").items
    assert sorted(p.metadata.name for p in webs) == sorted(n for n in by_name if n.startswith("web-"))
    on_node1 = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=node1").items
    assert on_node1 and all(p.spec.node_name == "node1" for p in on_node1)
    # paging: limit + continue give every pod once
    seen, token = [], None
    while True:
        page = v1.list_namespaced_pod("default", limit=2, _continue=token)
        assert len(page.items) <= 2
        seen += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert sorted(seen) == sorted(by_name)

    services = {s.metadata.name: s for s in v1.list_namespaced_service("default").items}
    assert services["kubernetes"].spec.cluster_ip == "10.96.0.1"
    assert [(p.port, p.protocol) for p in services["kubernetes"].spec.ports] == [(443, "TCP")]
    web = services["web"]
    assert web.spec.selector == {"app": "web"} and web.spec.type == "ClusterIP"
    assert [(p.name, p.port, p.target_port) for p in web.spec.ports] == [("http", 80, "http")]


def test_create_a_namespace_and_a_deployment_then_patch_it(api):
    v1, apps = api.CoreV1Api(), api.AppsV1Api()
    ns = "pyclient"
    namespace(v1, ns)
    try:
        d = apps.create_namespaced_deployment(ns, deployment_body("hello", 2))
        assert d.metadata.uid and d.spec.replicas == 2
        first = wait_for(
            "2 hello pods Ready",
            lambda: (lambda ps: ps if len(ps) == 2 else None)(ready_pods(v1, ns, "app=hello")),
            60,
            0.3,
        )

        scale = apps.patch_namespaced_deployment_scale("hello", ns, {"spec": {"replicas": 3}})
        assert scale.spec.replicas == 3
        assert apps.read_namespaced_deployment_scale("hello", ns).spec.replicas == 3
        second = wait_for(
            "3 hello pods Ready",
            lambda: (lambda ps: ps if len(ps) == 3 else None)(ready_pods(v1, ns, "app=hello")),
            60,
            0.3,
        )
        assert set(first) < set(second)

        d = apps.patch_namespaced_deployment("hello", ns, {"metadata": {"labels": {"tier": "front"}}})
        assert d.metadata.labels == {"app": "hello", "tier": "front"}
        assert apps.read_namespaced_deployment("hello", ns).metadata.labels == {"app": "hello", "tier": "front"}
        assert set(ready_pods(v1, ns, "app=hello")) == set(second)  # a label on the Deployment rolls nothing

        status = wait_for(
            "the Deployment's status",
            lambda: (lambda s: s if s.ready_replicas == 3 else None)(
                apps.read_namespaced_deployment_status("hello", ns).status
            ),
            30,
            0.3,
        )
        assert status.replicas == 3 and status.available_replicas == 3
    finally:
        drop_namespace(v1, ns)


def test_delete_a_deployment_and_watch_its_pods_go(api):
    v1, apps = api.CoreV1Api(), api.AppsV1Api()
    ns = "pydelete"
    namespace(v1, ns)
    try:
        apps.create_namespaced_deployment(ns, deployment_body("doomed", 2))
        pods = wait_for(
            "2 doomed pods Ready",
            lambda: (lambda ps: ps if len(ps) == 2 else None)(ready_pods(v1, ns, "app=doomed")),
            60,
            0.3,
        )
        listed = v1.list_namespaced_pod(ns)
        apps.delete_namespaced_deployment("doomed", ns)
        deleted = set()
        w = watch.Watch()
        for event in w.stream(
            v1.list_namespaced_pod, ns, resource_version=listed.metadata.resource_version, timeout_seconds=60
        ):
            if event["type"] == "DELETED":
                deleted.add(event["object"].metadata.name)
            if deleted >= set(pods):
                w.stop()
                break
        assert deleted >= set(pods), deleted
        assert v1.list_namespaced_pod(ns).items == []
        with pytest.raises(ApiException) as e:
            apps.read_namespaced_deployment("doomed", ns)
        assert e.value.status == 404
    finally:
        drop_namespace(v1, ns)


def test_api_errors_are_statuses_the_client_understands(api):
    v1 = api.CoreV1Api()
    ns = "pyerrors"
    namespace(v1, ns)
    try:
        with pytest.raises(ApiException) as e:
            v1.read_namespaced_pod("nosuchpod", ns)
        assert e.value.status == 404 and json.loads(e.value.body)["reason"] == "NotFound"

        cm = v1.create_namespaced_pod(ns, pod_body("once"))
        with pytest.raises(ApiException) as e:
            v1.create_namespaced_pod(ns, pod_body("once"))
        assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"

        # optimistic concurrency: a replace with a stale resourceVersion is refused
        v1.patch_namespaced_pod("once", ns, {"metadata": {"labels": {"changed": "yes"}}})
        stale = cm
        stale.metadata.labels = {"mine": "too"}
        with pytest.raises(ApiException) as e:
            v1.replace_namespaced_pod("once", ns, stale)
        assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "Conflict"
        assert v1.read_namespaced_pod("once", ns).metadata.labels == {"test": "python-client", "changed": "yes"}

        bad = pod_body("badport")
        bad.spec.containers[0].ports = [client.V1ContainerPort(container_port=70000)]
        with pytest.raises(ApiException) as e:
            v1.create_namespaced_pod(ns, bad)
        status = json.loads(e.value.body)
        assert e.value.status == 422 and status["reason"] == "Invalid", status
        assert "spec.containers[0].ports[0].containerPort" in status["message"], status
        assert [p.metadata.name for p in v1.list_namespaced_pod(ns).items] == ["once"]
    finally:
        drop_namespace(v1, ns)


# ---- a watch across the API server's restart ---------------------------------


class ResumingWatch:
    """What client code does with a watch: follow events from a
    resourceVersion; when the connection breaks, wait until `gate` is open,
    then watch again from the last resourceVersion it saw; on 410 Gone,
    list again and watch from the list's resourceVersion."""

    def __init__(self, v1, ns: str, rv: str):
        self.v1, self.ns, self.rv = v1, ns, rv
        self.events: list[tuple[str, str]] = []  # (type, pod name), in order
        self.relists: list[list[str]] = []  # pod names of each re-list after 410
        self.breaks: list[str] = []  # what ended a watch early
        self.fatal: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.broken = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(
                    self.v1.list_namespaced_pod,
                    self.ns,
                    resource_version=self.rv,
                    timeout_seconds=5,
                    allow_watch_bookmarks=True,
                ):
                    if ev["type"] == "BOOKMARK":
                        self.rv = ev["raw_object"]["metadata"]["resourceVersion"]
                        continue
                    self.rv = ev["object"].metadata.resource_version
                    self.events.append((ev["type"], ev["object"].metadata.name))
                    if self.stopping.is_set():
                        w.stop()
                        break
            except ApiException as e:
                if e.status == 410:
                    listed = self.v1.list_namespaced_pod(self.ns)
                    self.relists.append(sorted(p.metadata.name for p in listed.items))
                    self.rv = listed.metadata.resource_version
                    continue
                self._broke("%s %s" % (e.status, e.reason))
            except (urllib3.exceptions.HTTPError, OSError) as e:  # the connection: refused, reset, cut short
                self._broke("%s: %s" % (type(e).__name__, e))
            except Exception as e:  # anything else is a failure of the client or the server, not a restart
                self.fatal = e
                return

    def _broke(self, why: str) -> None:
        self.breaks.append(why)
        self.broken.set()
        self.gate.wait()
        if not self.stopping.is_set():
            time.sleep(0.2)  # as a client backs off before it tries again

    def _check(self) -> None:
        if self.fatal:
            raise AssertionError("the watch failed: %s: %s" % (type(self.fatal).__name__, self.fatal))

    def noticed_a_break(self) -> bool:
        self._check()
        return self.broken.is_set()

    def seen(self, typ: str, name: str, after: int = 0) -> bool:
        self._check()
        return (typ, name) in self.events[after:] or any(name in names for names in self.relists)

    def stop(self) -> None:
        self.stopping.set()
        self.gate.set()
        self.thread.join(15)


def test_a_watch_survives_the_api_server_restart(api, client_lab):
    lab = client_lab
    v1 = api.CoreV1Api()
    ns = "pyrestart"
    namespace(v1, ns)
    rw = None
    try:
        listed = v1.list_namespaced_pod(ns)
        rw = ResumingWatch(v1, ns, listed.metadata.resource_version)
        v1.create_namespaced_pod(ns, pod_body("before"))
        wait_for("ADDED before", lambda: rw.seen("ADDED", "before"), 15)
        wait_for("pod before Ready", lambda: pod_is_ready(v1.read_namespaced_pod("before", ns)), 60, 0.3)

        # the API server goes away, by the PID the lab recorded
        rw.gate.clear()
        mark = len(rw.events)
        proc = lab.procs()["apiserver"]
        os.kill(proc["pid"], signal.SIGKILL)

        def dead():
            try:
                with open("/proc/%d/stat" % proc["pid"]) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except FileNotFoundError:
                return True

        wait_for("the API server process gone", dead, 15)
        wait_for("the watch to notice", rw.noticed_a_break, 15)
        # `podnet lab up` starts what is missing: the API server
        lab.run("lab", "up", "--name", lab.name, timeout=120)
        assert lab.procs()["apiserver"]["pid"] != proc["pid"]

        # while the watcher is still away, things change
        v1.create_namespaced_pod(ns, pod_body("during"))
        v1.delete_namespaced_pod("before", ns)
        rw.gate.set()

        wait_for("ADDED during, after the restart", lambda: rw.seen("ADDED", "during", mark), 30)
        if not rw.relists:  # resumed from its resourceVersion: it got what happened while away ...
            wait_for("DELETED before", lambda: rw.seen("DELETED", "before", mark), 60)
            assert ("ADDED", "before") not in rw.events[mark:], rw.events  # ... and no replay
        # the watch is live again
        v1.create_namespaced_pod(ns, pod_body("after"))
        wait_for("ADDED after", lambda: rw.seen("ADDED", "after", mark), 15)
        # and the lab's own components are API clients that came back too
        wait_for("pod during Ready", lambda: pod_is_ready(v1.read_namespaced_pod("during", ns)), 60, 0.3)
        wait_for("pod after Ready", lambda: pod_is_ready(v1.read_namespaced_pod("after", ns)), 60, 0.3)
    finally:
        if rw:
            rw.stop()
        drop_namespace(v1, ns)
