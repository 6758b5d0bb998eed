"""ClusterIPs and NodePorts under concurrent creates, with the official
Python client (`kubernetes` from PyPI) in 10 processes against real API
server processes: one over sqlite, and two over one real etcd.

The ranges are small (--service-cluster-ip-range 10.96.0.0/26: 60 usable
addresses; --service-node-port-range 30000-30049: 50 ports), so that 50
NodePort Services fill the ports: one more is refused, and after deleting
them all, creating all 50 again succeeds only if every value came back.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from podnet.apiserver.local import ApiServer

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

RANGES = ("--service-cluster-ip-range", "10.96.0.0/26", "--service-node-port-range", "30000-30049")
NAMESPACES = ("alloc-a", "alloc-b")
NAMES = ["svc-%02d" % i for i in range(25)]  # the same 25 names in both namespaces
PROCS = 10


def _api(kubeconfig):
    return client.CoreV1Api(config.new_client_from_config(kubeconfig))


def _body(name, **spec):
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(
            type="NodePort", selector={"app": name}, ports=[client.V1ServicePort(port=80)], **spec
        ),
    )


def _create(kubeconfig, jobs, start_at):
    """In a worker process: wait for the common start, create the Services.
    -> [(ns, name, clusterIP, nodePort, error)]"""
    api = _api(kubeconfig)
    time.sleep(max(0.0, start_at - time.time()))
    out = []
    for ns, name in jobs:
        try:
            s = api.create_namespaced_service(ns, _body(name))
            out.append((ns, name, s.spec.cluster_ip, s.spec.ports[0].node_port, None))
        except ApiException as exc:
            out.append((ns, name, None, None, "%s %s" % (exc.status, exc.body)))
    return out


def create_all(kubeconfigs):
    """Every (namespace, name) created at once by PROCS processes, round
    robin over the given API servers' kubeconfigs."""
    jobs = [(ns, name) for name in NAMES for ns in NAMESPACES]
    chunks = [jobs[i::PROCS] for i in range(PROCS)]
    ctx = multiprocessing.get_context("spawn")  # no forked copy of pytest's threads
    with ctx.Pool(PROCS) as pool:
        start_at = time.time() + 3  # the workers' imports take a moment
        args = [(kubeconfigs[i % len(kubeconfigs)], chunk, start_at) for i, chunk in enumerate(chunks)]
        results = [r for rs in pool.starmap(_create, args) for r in rs]
    errors = [r for r in results if r[4]]
    assert not errors, errors[:5]
    assert len(results) == 50
    return results


def assert_unique(results, api):
    ips = [r[2] for r in results]
    ports = [r[3] for r in results]
    assert len(set(ips)) == 50, sorted(ips)
    assert len(set(ports)) == 50, sorted(ports)
    assert set(ports) == set(range(30000, 30050))
    # what the server stores says the same
    stored = [s for ns in NAMESPACES for s in api.list_namespaced_service(ns).items]
    assert len(stored) == 50
    assert len({s.spec.cluster_ip for s in stored}) == 50
    assert len({s.spec.ports[0].node_port for s in stored}) == 50


def delete_all(api):
    for ns in NAMESPACES:
        for name in NAMES:
            api.delete_namespaced_service(name, ns)


def check_refusals(api, results):
    # the range is full: one more NodePort Service is refused, and names the field
    with pytest.raises(ApiException) as e:
        api.create_namespaced_service(NAMESPACES[0], _body("one-more"))
    assert e.value.status == 422 and "spec.ports[0].nodePort" in e.value.body and "no free port" in e.value.body
    # a requested ClusterIP or NodePort that is taken: 422 with the field path, as upstream
    taken_ip, taken_port = results[0][2], results[0][3]
    with pytest.raises(ApiException) as e:
        api.create_namespaced_service(
            NAMESPACES[1],
            client.V1Service(
                metadata=client.V1ObjectMeta(name="ip-taken"),
                spec=client.V1ServiceSpec(
                    selector={"app": "x"}, ports=[client.V1ServicePort(port=80)], cluster_ip=taken_ip
                ),
            ),
        )
    assert e.value.status == 422 and "spec.clusterIPs" in e.value.body
    assert "provided IP is already allocated" in e.value.body
    with pytest.raises(ApiException) as e:
        api.create_namespaced_service(
            NAMESPACES[1],
            client.V1Service(
                metadata=client.V1ObjectMeta(name="port-taken"),
                spec=client.V1ServiceSpec(
                    type="NodePort",
                    selector={"app": "x"},
                    ports=[client.V1ServicePort(port=80, node_port=taken_port)],
                ),
            ),
        )
    assert e.value.status == 422 and "spec.ports[0].nodePort" in e.value.body
    assert "provided port is already allocated" in e.value.body


def make_namespaces(api):
    for ns in NAMESPACES:
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))


def test_concurrent_creates_on_one_api_server(tmp_path):
    server = ApiServer(tmp_path / "api", args=RANGES)
    try:
        api = _api(server.kubeconfig)
        make_namespaces(api)
        results = create_all([server.kubeconfig])
        assert_unique(results, api)
        check_refusals(api, results)
        delete_all(api)
        # every value came back: all 50 again, in the same small ranges
        assert_unique(create_all([server.kubeconfig]), api)
    finally:
        server.stop()


@pytest.mark.skipif(not os.path.exists("/usr/bin/etcd"), reason="needs etcd (./setup.sh installs etcd-server)")
def test_concurrent_creates_on_two_api_servers_over_one_etcd(tmp_path):
    from tests.store.conftest import EtcdServer

    etcd = EtcdServer()
    servers = []
    try:
        etcd.start()
        store = "etcd://" + etcd.endpoint
        servers = [ApiServer(tmp_path / ("api%d" % i), store=store, args=RANGES) for i in range(2)]
        api = _api(servers[0].kubeconfig)
        make_namespaces(api)
        api1 = _api(servers[1].kubeconfig)
        deadline = time.time() + 10
        while {n.metadata.name for n in api1.list_namespace().items} < set(NAMESPACES):
            assert time.time() < deadline, "the second API server never saw the namespaces"
            time.sleep(0.1)
        kubeconfigs = [s.kubeconfig for s in servers]
        results = create_all(kubeconfigs)
        assert_unique(results, api)
        assert_unique(results, api1)
        check_refusals(api1, results)
        delete_all(api1)
        assert_unique(create_all(kubeconfigs), api)
    finally:
        for s in servers:
            s.stop()
        etcd.cleanup()
