"""Objects (API-server semantics) over a real sqlite store in a temp dir:
cheap, and the same code path the lab uses."""

import pytest

from podnet.api import ApiError
from podnet.store.objects import AlreadyExists, NotFound, Objects


@pytest.fixture
def objects(tmp_path):
    from podnet.store.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path / "store.db"))
    yield Objects(store, service_cidr="10.96.0.0/29")
    store.close()


def svc(name, **spec):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": dict({"selector": {"app": name}, "ports": [{"port": 80}]}, **spec),
    }


def test_create_stamps_and_apply_reports_what_happened(objects):
    obj, what = objects.apply(svc("a"))
    assert what == "created" and obj["metadata"]["uid"] and obj["metadata"]["creationTimestamp"]
    assert objects.apply(svc("a"))[1] == "unchanged"
    again, what = objects.apply(svc("a", ports=[{"port": 81}]))
    assert what == "configured" and again["spec"]["clusterIP"] == obj["spec"]["clusterIP"]  # IP kept
    with pytest.raises(AlreadyExists):
        objects.create(objects.get("Service", "default", "a"))
    with pytest.raises(NotFound):
        objects.get("Service", "default", "nope")


def test_cluster_ips_and_node_ports_are_unique_and_run_out_clearly(objects):
    ips = {objects.apply(svc("s%d" % i))[0]["spec"]["clusterIP"] for i in range(5)}
    assert len(ips) == 5 and "10.96.0.1" not in ips  # .1 is kept for the kubernetes service
    with pytest.raises(ApiError) as e:
        objects.apply(svc("s9"))
    assert "spec.clusterIP: no free address" in str(e.value)
    assert objects.find("Service", "default", "s9") is None  # nothing half-created


def test_node_ports(objects):
    a = objects.apply(
        svc("np", type="NodePort", ports=[{"port": 80, "nodePort": 30080, "name": "a"}, {"port": 81, "name": "b"}])
    )
    ports = [p["nodePort"] for p in a[0]["spec"]["ports"]]
    assert ports[0] == 30080 and 30000 <= ports[1] <= 32767
    with pytest.raises(ApiError) as e:
        objects.apply(svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert "spec.ports[0].nodePort: 30080 is already allocated" in str(e.value)


def test_endpointslice_apply_updates_top_level_fields(objects):
    es = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "x"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}],
        "ports": [],
    }
    objects.apply(es)
    es["endpoints"] = [{"addresses": ["10.0.0.2"]}]
    assert objects.apply(es)[1] == "configured"
    assert objects.get("EndpointSlice", "default", "x")["endpoints"][0]["addresses"] == ["10.0.0.2"]
