"""The doctor's Ingress check on hand-made facts: a served Ingress with a
good probe finds nothing; each broken link of the path (class, controller,
backend Service, port, TLS Secret, a rejection by nginx, a 503 from outside)
is one finding naming the object."""

from podnet.diag import checks_ingress
from podnet.diag.checks_base import Facts

CLASS = {
    "metadata": {"name": "podnet", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
    "spec": {"controller": "podnet.io/ingress-nginx"},
}


def svc(name, ns="default", ports=({"name": "http", "port": 80},)):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"selector": {"app": name}, "ports": list(ports)}}


def ready_slice(name, ns):
    return {
        "metadata": {"name": name + "-x", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
        "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": True}}],
    }


def ingress(port=None, tls=None, cls=None, changed="2026-12-02T04:00:00Z"):
    spec = {
        "rules": [
            {
                "host": "a.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": port or {"number": 80}}},
                        }
                    ]
                },
            }
        ]
    }
    if tls:
        spec["tls"] = [{"hosts": ["a.example.com"], "secretName": tls}]
    if cls:
        spec["ingressClassName"] = cls
    return {
        "metadata": {
            "name": "site",
            "namespace": "default",
            "creationTimestamp": "2026-12-02T03:00:00Z",
            "managedFields": [{"manager": "kubectl", "time": changed}],
        },
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.200.241"}]}},
    }


def facts(ing=None, status=200):
    f = Facts(lab="t")
    f.ingress_classes = [CLASS]
    f.ingresses = [ing or ingress()]
    f.services = [svc("web"), svc("ingress-nginx", "podnet-ingress")]
    f.slices = [ready_slice("web", "default"), ready_slice("ingress-nginx", "podnet-ingress")]
    f.secrets = {"default/site-tls": "kubernetes.io/tls", "default/plain": "Opaque"}
    f.ingress_probes = {
        "default/site": [{"host": "a.example.com", "path": "/", "ip": "192.168.200.241", "status": status,
                          "detail": "HTTP %s" % status}]
    }  # fmt: skip
    return f


def one(f):
    got = checks_ingress.check_ingress(f)
    assert len(got) == 1, [g.summary for g in got]
    assert got[0].check == "ingress"
    return got[0]


def test_a_served_ingress_has_no_finding():
    assert checks_ingress.check_ingress(facts()) == []
    assert checks_ingress.check_ingress(facts(ingress(port={"name": "http"}, tls="site-tls"))) == []


def test_another_class_is_a_warning():
    x = one(facts(ingress(cls="nginx")))
    assert x.severity == "warning" and "class nginx" in x.summary and "default/site" in x.summary


def test_no_controller_pod():
    f = facts()
    f.slices = f.slices[:1]
    x = one(f)
    assert x.severity == "error" and "podnet-ingress/ingress-nginx" in x.summary


def test_a_missing_backend_service_and_a_missing_port():
    f = facts()
    f.services = f.services[1:]
    assert "Service default/web, which does not exist" in one(f).summary
    x = one(facts(ingress(port={"number": 8080})))
    assert "port 8080" in x.summary and "80(http)" in x.summary
    assert "port nope" in one(facts(ingress(port={"name": "nope"}))).summary


def test_tls_secret_missing_or_not_tls():
    assert "Secret default/gone, which does not exist" in one(facts(ingress(tls="gone"))).summary
    assert "is of type Opaque" in one(facts(ingress(tls="plain"))).summary


def test_a_rejection_counts_only_when_newer_than_the_last_change():
    event = {
        "involvedObject": {"kind": "Ingress", "name": "site", "namespace": "default"},
        "reason": "Rejected",
        "lastTimestamp": "2026-12-02T04:05:00Z",
        "message": "nginx -t: host name too long",
    }
    f = facts()
    f.events = [event]
    assert "left out of nginx" in one(f).summary and "too long" in one(f).summary
    f = facts(ingress(changed="2026-12-02T04:10:00Z"))  # fixed after the rejection
    f.events = [event]
    assert checks_ingress.check_ingress(f) == []


def test_a_failing_request_from_outside():
    x = one(facts(status=503))
    assert x.severity == "error" and "HTTP 503" in x.summary and "a.example.com" in x.command
    assert one(facts(status=None)).severity == "error"
    assert checks_ingress.check_ingress(facts(status=404)) == []  # the application's own answer


def test_scope():
    f = facts(status=503)
    f.scope_ingresses = set()
    assert checks_ingress.check_ingress(f) == []
