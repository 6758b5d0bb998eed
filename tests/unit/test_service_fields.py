"""Service fields whose effect is a controller's decision (issue 11: nothing
accepted and ignored): the LoadBalancer IP a Service asks for, and the
appProtocol of a port carried to its EndpointSlices as Kubernetes does."""

from podnet.api import validate
from podnet.controllers import planners


def _svc(name, **spec):
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default", "uid": name}}
    obj["spec"] = dict({"ports": [{"port": 80}]}, **spec)
    return validate(obj)


def test_load_balancer_ip_asked_for_is_given():
    pool = "192.168.200.240/28"
    plain = _svc("a", type="LoadBalancer")
    asks = _svc("b", type="LoadBalancer", loadBalancerIP="192.168.200.250")
    outside = _svc("c", type="LoadBalancer", loadBalancerIP="10.0.0.1")
    got = planners.plan_lb_ips([plain, asks, outside], pool)
    assert got[("default", "b")] == "192.168.200.250"
    # without the field (or with one outside the pool) the lowest free address
    assert got[("default", "a")] == "192.168.200.241"
    assert got[("default", "c")] == "192.168.200.242"


def test_app_protocol_is_copied_to_the_endpoint_slice():
    svc = _svc("web", selector={"app": "web"}, ports=[{"name": "h", "port": 80, "appProtocol": "kubernetes.io/h2c"}])
    pod = {
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}, "uid": "u"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {"podIP": "10.244.1.5", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    (sl,) = planners.plan_endpointslices(svc, [pod])
    assert sl["ports"] == [{"name": "h", "port": 80, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]
    # a port without it has none (as the EndpointSlice controller leaves it out)
    (sl,) = planners.plan_endpointslices(_svc("web", selector={"app": "web"}), [pod])
    assert "appProtocol" not in sl["ports"][0]
