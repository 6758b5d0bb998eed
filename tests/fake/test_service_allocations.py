"""Service ClusterIP and NodePort allocations (podnet.apiserver.allocator) in
the registry, over a real sqlite store: a record per value written in the
Service's own txn, freed with it, and two registries on one store (two API
servers) that race for the same value. tests/api/test_service_allocation.py
runs the same against real API server processes and concurrent clients."""

import copy

import pytest

from podnet.apiserver import errors
from podnet.apiserver.allocator import IPS, PORTS
from podnet.apiserver.cache import Cache
from podnet.apiserver.registry import Registry
from podnet.apiserver.resources import BY_KIND
from podnet.store.sqlite import SqliteStore

SVC, NS = BY_KIND["Service"], BY_KIND["Namespace"]


def svc(name, **spec):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": dict({"selector": {"app": name}, "ports": [{"port": 80}]}, **spec),
    }


def registry(path, **ranges):
    store = SqliteStore(path)
    cache = Cache(store)
    cache.load()
    return Registry(store, cache, **ranges)


@pytest.fixture
def reg(tmp_path):
    r = registry(str(tmp_path / "store.db"), service_cidr="10.96.0.0/28", node_ports=range(30000, 30004))
    for ns in ("a", "b"):
        r.create(NS, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    yield r
    r.store.close()


def records(r):
    out = {}
    for prefix in (IPS, PORTS):
        for key, rec, _ in r.store.list(prefix)[0]:
            out[key[len(prefix) :]] = "%s/%s" % (rec["owner"]["namespace"], rec["owner"]["name"])
    return out


def test_same_names_in_two_namespaces_get_their_own_values_and_records(reg):
    a = reg.create(SVC, "a", svc("web", type="NodePort"))
    b = reg.create(SVC, "b", svc("web", type="NodePort"))
    assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
    assert a["spec"]["ports"][0]["nodePort"] != b["spec"]["ports"][0]["nodePort"]
    assert records(reg) == {
        a["spec"]["clusterIP"]: "a/web",
        b["spec"]["clusterIP"]: "b/web",
        str(a["spec"]["ports"][0]["nodePort"]): "a/web",
        str(b["spec"]["ports"][0]["nodePort"]): "b/web",
    }
    reg.delete(SVC, "a", "web")
    assert records(reg) == {b["spec"]["clusterIP"]: "b/web", str(b["spec"]["ports"][0]["nodePort"]): "b/web"}


def test_requested_values_that_are_taken_are_refused_with_their_path(reg):
    a = reg.create(SVC, "a", svc("x", type="NodePort", ports=[{"port": 80, "nodePort": 30001}]))
    before = records(reg)
    with pytest.raises(errors.StatusError) as e:
        reg.create(SVC, "b", svc("x", type="NodePort", ports=[{"port": 80, "nodePort": 30001}]))
    assert e.value.code == 422
    assert e.value.details["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 30001: provided port is already allocated",
            "field": "spec.ports[0].nodePort",
        }
    ]
    with pytest.raises(errors.StatusError) as e:
        reg.create(SVC, "b", svc("y", clusterIP=a["spec"]["clusterIP"]))
    assert e.value.code == 422 and e.value.details["causes"][0]["field"] == "spec.clusterIPs"
    assert "provided IP is already allocated" in e.value.message
    with pytest.raises(errors.StatusError) as e:
        reg.create(SVC, "b", svc("z", type="NodePort", ports=[{"port": 80, "nodePort": 30009}]))
    assert "The range of valid ports is 30000-30003" in e.value.message
    assert records(reg) == before  # nothing half-allocated
    # an update may not take another Service's port either
    reg.create(SVC, "b", svc("w", type="NodePort"))
    cur = copy.deepcopy(reg.get(SVC, "b", "w"))
    cur["spec"]["ports"][0]["nodePort"] = 30001
    with pytest.raises(errors.StatusError) as e:
        reg.update(SVC, "b", "w", cur)
    assert e.value.code == 422 and "spec.ports[0].nodePort" in e.value.message


def test_a_type_change_takes_and_frees_node_ports(reg):
    reg.create(SVC, "a", svc("t"))
    assert not any(v.isdigit() for v in records(reg))
    cur = copy.deepcopy(reg.get(SVC, "a", "t"))
    cur["spec"]["type"] = "NodePort"
    np = reg.update(SVC, "a", "t", cur)["spec"]["ports"][0]["nodePort"]
    assert records(reg)[str(np)] == "a/t"
    cur = copy.deepcopy(reg.get(SVC, "a", "t"))
    cur["spec"]["type"] = "ClusterIP"
    del cur["spec"]["ports"][0]["nodePort"]
    del cur["spec"]["externalTrafficPolicy"]
    got = reg.update(SVC, "a", "t", cur)
    assert "nodePort" not in got["spec"]["ports"][0] and str(np) not in records(reg)


def test_exhaustion_and_reuse(reg):
    for i in range(4):
        reg.create(SVC, "a", svc("s%d" % i, type="NodePort"))
    with pytest.raises(errors.StatusError) as e:
        reg.create(SVC, "b", svc("s4", type="NodePort"))
    assert e.value.code == 422 and "spec.ports[0].nodePort: no free port left in 30000-30003" in e.value.message
    assert reg.cache.get("/registry/services/b/s4") is None and len(records(reg)) == 8
    for i in range(4):
        reg.delete(SVC, "a", "s%d" % i)
    assert records(reg) == {}
    for i in range(4):
        reg.create(SVC, "b", svc("s%d" % i, type="NodePort"))
    assert len(records(reg)) == 8


def test_two_api_servers_on_one_store_never_hand_out_a_value_twice(tmp_path):
    """Registry B writes between A's pick and A's txn (B's cache does not
    know A's picks: a second API server): A's txn fails on the record and A
    picks again. A create that loses on its name leaves nothing allocated."""
    path = str(tmp_path / "store.db")
    a = registry(path, service_cidr="10.96.0.0/28", node_ports=range(30000, 30004))
    b = registry(path, service_cidr="10.96.0.0/28", node_ports=range(30000, 30004))
    a.create(NS, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    b.cache.load()
    real_txn = a.store.txn
    raced = []

    def txn_after_b(ops):  # B's create lands between A's pick and A's write
        if not raced:
            raced.append(b.create(SVC, "a", svc("from-b", type="NodePort")))
        return real_txn(ops)

    a.store.txn = txn_after_b
    got = a.create(SVC, "a", svc("from-a", type="NodePort"))
    assert raced and got["spec"]["clusterIP"] != raced[0]["spec"]["clusterIP"]
    assert got["spec"]["ports"][0]["nodePort"] != raced[0]["spec"]["ports"][0]["nodePort"]
    # B creates a name A already stored (its cache is behind): AlreadyExists, nothing leaked
    before = records(a)
    with pytest.raises(errors.StatusError) as e:
        b.create(SVC, "a", svc("from-a", type="NodePort"))
    assert e.value.code == 409 and records(a) == before
    a.store.close()
    b.store.close()


def test_services_stored_without_records_get_them_at_start(tmp_path):
    """A Service written by a podnet from before the records: the next API
    server start records what it holds, so nobody else is handed its values."""
    path = str(tmp_path / "store.db")
    r = registry(path, service_cidr="10.96.0.0/28", node_ports=range(30000, 30002))
    r.create(NS, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    old = r.create(SVC, "a", svc("old", type="NodePort"))
    for key, _, _ in r.store.list("/allocations/")[0]:
        r.store.delete(key)  # as an older podnet left it
    r.store.close()
    r = registry(path, service_cidr="10.96.0.0/28", node_ports=range(30000, 30002))
    assert r.record_allocations() == 1 and r.record_allocations() == 0
    assert records(r) == {old["spec"]["clusterIP"]: "a/old", str(old["spec"]["ports"][0]["nodePort"]): "a/old"}
    new = r.create(SVC, "a", svc("new", type="NodePort"))
    assert new["spec"]["ports"][0]["nodePort"] != old["spec"]["ports"][0]["nodePort"]
    assert new["spec"]["clusterIP"] != old["spec"]["clusterIP"]
    r.store.close()


def test_a_requested_value_taken_by_another_api_server_meanwhile_is_a_422(tmp_path):
    path = str(tmp_path / "store.db")
    a = registry(path, service_cidr="10.96.0.0/28", node_ports=range(30000, 30004))
    b = registry(path, service_cidr="10.96.0.0/28", node_ports=range(30000, 30004))
    a.create(NS, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    b.cache.load()
    real_txn = a.store.txn

    def txn_after_b(ops):  # B takes the port A asked for, after A checked it
        if b.cache.get("/registry/services/a/from-b") is None:
            b.create(SVC, "a", svc("from-b", type="NodePort", ports=[{"port": 80, "nodePort": 30003}]))
        return real_txn(ops)

    a.store.txn = txn_after_b
    with pytest.raises(errors.StatusError) as e:
        a.create(SVC, "a", svc("from-a", type="NodePort", ports=[{"port": 80, "nodePort": 30003}]))
    assert e.value.code == 422 and e.value.details["causes"][0]["field"] == "spec.ports[0].nodePort"
    assert "provided port is already allocated" in e.value.message
    assert records(a) == {"30003": "a/from-b", b.get(SVC, "a", "from-b")["spec"]["clusterIP"]: "a/from-b"}
    a.store.close()
    b.store.close()
