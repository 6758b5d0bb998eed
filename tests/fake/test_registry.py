"""The API server's object semantics (podnet.apiserver.registry: admission,
allocations, optimistic concurrency, graceful deletion, finalizers, owners)
over a real sqlite store in a temp dir and the watch cache, without HTTP:
cheap, and the code path every request takes. tests/api runs the same
server over HTTPS with the real kubectl and Python client."""

import pytest

from podnet.apiserver import errors
from podnet.apiserver.admission import Admission
from podnet.apiserver.cache import Cache, TooOld
from podnet.apiserver.gc import Collector
from podnet.apiserver.registry import Registry
from podnet.apiserver.resources import BY_KIND


@pytest.fixture
def reg(tmp_path):
    from podnet.store.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path / "store.db"))
    cache = Cache(store)
    cache.load()
    r = Registry(store, cache)
    r.admission = Admission(lambda: cache.list("/registry/services/"), service_cidr="10.96.0.0/29")
    r.create(BY_KIND["Namespace"], None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    yield r
    store.close()


SVC, POD, DEP = BY_KIND["Service"], BY_KIND["Pod"], BY_KIND["Deployment"]


def svc(name, **spec):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": dict({"selector": {"app": name}, "ports": [{"port": 80}]}, **spec),
    }


def pod(name, node=None, owner=None):
    p = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "agnhost"}]},
    }
    if node:
        p["spec"]["nodeName"] = node
    if owner:
        p["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    return p


def test_create_stamps_and_a_second_create_is_refused(reg):
    obj = reg.create(SVC, "default", svc("a"))
    assert obj["metadata"]["uid"] and obj["metadata"]["creationTimestamp"] and obj["metadata"]["generation"] == 1
    assert obj["spec"]["clusterIP"].startswith("10.96.0.")
    with pytest.raises(errors.StatusError) as e:
        reg.create(SVC, "default", svc("a"))
    assert e.value.code == 409 and e.value.reason == "AlreadyExists"
    with pytest.raises(errors.StatusError) as e:
        reg.get(SVC, "default", "nope")
    assert e.value.code == 404 and e.value.message == 'services "nope" not found'


def test_cluster_ips_and_node_ports_are_unique_and_run_out_clearly(reg):
    ips = {reg.create(SVC, "default", svc("s%d" % i))["spec"]["clusterIP"] for i in range(5)}
    assert len(ips) == 5 and "10.96.0.1" not in ips  # .1 is kept for the kubernetes service
    with pytest.raises(errors.StatusError) as e:
        reg.create(SVC, "default", svc("s9"))
    assert e.value.code == 422 and "spec.clusterIP: no free address" in e.value.message
    assert e.value.details["causes"][0]["field"] == "spec.clusterIP"
    assert reg.cache.get("/registry/services/default/s9") is None  # nothing half-created


def test_node_ports(reg):
    a = reg.create(
        SVC,
        "default",
        svc("np", type="NodePort", ports=[{"port": 80, "nodePort": 30080, "name": "a"}, {"port": 81, "name": "b"}]),
    )
    ports = [p["nodePort"] for p in a["spec"]["ports"]]
    assert ports[0] == 30080 and 30000 <= ports[1] <= 32767
    with pytest.raises(errors.StatusError) as e:
        reg.create(SVC, "default", svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated" in e.value.message
    # an update that does not name the ports keeps what was allocated
    cur = reg.get(SVC, "default", "np")
    new = svc("np", type="NodePort", ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "b"}])
    new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
    got = reg.update(SVC, "default", "np", new)
    assert [p["nodePort"] for p in got["spec"]["ports"]] == ports and got["spec"]["clusterIP"] == a["spec"]["clusterIP"]


def test_stale_update_is_a_conflict_and_status_is_its_own_subresource(reg):
    p = reg.create(POD, "default", pod("p"))
    stale = dict(p)
    upd = dict(p, metadata=dict(p["metadata"], labels={"x": "1"}))
    reg.update(POD, "default", "p", upd)
    with pytest.raises(errors.StatusError) as e:
        reg.update(POD, "default", "p", dict(stale, metadata=dict(stale["metadata"], labels={"x": "2"})))
    assert e.value.code == 409
    # the main resource does not change status; the status subresource changes only status
    cur = reg.get(POD, "default", "p")
    cur = dict(cur, status={"phase": "Running"}, metadata=dict(cur["metadata"], labels={"y": "1"}))
    assert reg.update(POD, "default", "p", cur)["status"] == {}
    cur = reg.get(POD, "default", "p")
    got = reg.update(POD, "default", "p", dict(cur, status={"phase": "Running"}, spec={}), subresource="status")
    assert got["status"] == {"phase": "Running"} and got["spec"]["containers"]  # spec untouched


def test_a_scheduled_pod_is_deleted_gracefully_then_for_good(reg):
    reg.create(POD, "default", pod("p", node="node1"))
    marked = reg.delete(POD, "default", "p")
    assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert reg.get(POD, "default", "p")["metadata"]["deletionTimestamp"]  # still there: its node finishes it
    reg.delete(POD, "default", "p", grace=0)
    with pytest.raises(errors.StatusError):
        reg.get(POD, "default", "p")
    reg.create(POD, "default", pod("q"))  # not scheduled: nobody to wait for
    reg.delete(POD, "default", "q")
    assert reg.cache.get("/registry/pods/default/q") is None


def test_finalizers_hold_an_object_until_removed(reg):
    s = svc("f")
    s["metadata"]["finalizers"] = ["example.com/hold"]
    reg.create(SVC, "default", s)
    assert reg.delete(SVC, "default", "f")["metadata"]["deletionTimestamp"]
    cur = reg.get(SVC, "default", "f")
    reg.update(SVC, "default", "f", dict(cur, metadata=dict(cur["metadata"], finalizers=[])))
    assert reg.cache.get("/registry/services/default/f") is None


def test_deleting_an_owner_deletes_its_dependents_unless_orphaned(reg):
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "agnhost"}]},
            },
        },
    }
    d = reg.create(DEP, "default", dep)
    reg.create(POD, "default", pod("owned", node="node1", owner=d))
    reg.create(POD, "default", pod("free"))
    gc = Collector(reg)
    reg.delete(DEP, "default", "d")
    import podnet.apiserver.gc as gcmod

    old, gcmod.GRACE_FOR_NEW = gcmod.GRACE_FOR_NEW, 0
    try:
        gc.sweep()
    finally:
        gcmod.GRACE_FOR_NEW = old
    assert reg.get(POD, "default", "owned")["metadata"]["deletionTimestamp"]  # graceful: its node finishes it
    assert not reg.get(POD, "default", "free")["metadata"].get("deletionTimestamp")
    d2 = reg.create(DEP, "default", dict(dep, metadata={"name": "d2"}))
    reg.create(POD, "default", pod("kept", owner=d2))
    reg.delete(DEP, "default", "d2", propagation="Orphan")
    assert "ownerReferences" not in reg.get(POD, "default", "kept")["metadata"]


def test_watch_history_resumes_and_expires(reg):
    rev = reg.cache.rev
    reg.create(SVC, "default", svc("w1"))
    reg.create(SVC, "default", svc("w2"))
    changes = reg.cache.since(rev, "services")
    assert [c.type for c in changes] == ["ADDED", "ADDED"]
    reg.cache.history.clear()
    with pytest.raises(TooOld):
        reg.cache.since(rev, "services")
