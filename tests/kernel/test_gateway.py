"""The Gateway API on a real lab: a Gateway of the GatewayClass podnet and
HTTPRoutes, served by the same nginx as Ingresses, from the external host."""

import json
import math
import os

import pytest

from tests.kernel.test_ingress import IngressLab, app, served_by, start_lab
from tests.kernel.test_lab import leftovers

pytestmark = pytest.mark.kernel

GATEWAY = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "gw"},
    "spec": {"gatewayClassName": "podnet", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
}


def route(name, rules, host="g.example.com"):
    return json.dumps(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [host], "rules": rules},
        }
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = IngressLab("dg%d" % (os.getpid() % 10000), root)
    try:
        lab = start_lab(lab.name, root, app("a") + "---" + app("b") + "---\n" + json.dumps(GATEWAY))
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def test_gateway_status_gives_the_address(lab):
    def programmed():
        gw = json.loads(lab.run("get", "gateway", "gw", "-o", "json").stdout)
        conds = {c["type"]: c["status"] for c in (gw.get("status") or {}).get("conditions") or []}
        return conds.get("Programmed") == "True" and gw

    gw = lab.until("Gateway gw Programmed", programmed)
    assert gw["status"]["addresses"] == [{"type": "IPAddress", "value": lab.lbip}]
    assert {c["type"]: c["status"] for c in gw["status"]["conditions"]}["Accepted"] == "True"


def test_split_80_20_within_binomial_bounds(lab):
    rules = [{"backendRefs": [{"name": "a", "port": 80, "weight": 80}, {"name": "b", "port": 80, "weight": 20}]}]
    lab.apply(route("split", rules, "split.example.com"))
    try:
        served_by(lab, "split.example.com", "/hostname", "a")
        n = 1000
        got = lab.requests("split.example.com", "/hostname", n)
        assert all(code == 200 for code, _ in got), [r for r in got if r[0] != 200][:5]
        a = sum(1 for _, body in got if body.startswith("a-"))
        b = sum(1 for _, body in got if body.startswith("b-"))
        assert a + b == n
        sigma = math.sqrt(n * 0.8 * 0.2)  # binomial: 12.6 requests
        assert abs(a - 0.8 * n) <= 4 * sigma, "a got %d of %d (80%% is %d, 4 sigma %.0f)" % (a, n, 0.8 * n, 4 * sigma)
    finally:
        lab.delete("httproute", "split")


def test_header_match_rewrite_and_redirect(lab):
    rules = [
        {
            "matches": [
                {"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "X-Env", "value": "canary"}]}
            ],
            "backendRefs": [{"name": "b", "port": 80}],
        },
        {"backendRefs": [{"name": "a", "port": 80}]},
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
                },
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "X-Via", "value": "podnet"}]},
                },
            ],
            "backendRefs": [{"name": "a", "port": 80}],
        },
        {
            "matches": [{"path": {"type": "Exact", "value": "/old"}}],
            "filters": [
                {
                    "type": "RequestRedirect",
                    "requestRedirect": {"hostname": "new.example.com", "statusCode": 301},
                }
            ],
        },
    ]
    lab.apply(route("filters", rules))
    try:
        served_by(lab, "g.example.com", "/hostname", "a")
        served_by(lab, "g.example.com", "/hostname", "b", "-H", "X-Env: canary")  # the header match
        got = lab.requests("g.example.com", "/hostname", 20, {"X-Env": "canary"})
        assert all(body.startswith("b-") for _, body in got)
        got = lab.requests("g.example.com", "/hostname", 20, {"X-Env": "stable"})
        assert all(body.startswith("a-") for _, body in got)
        # /v1/hostname -> /hostname at the pod, with the header set
        served_by(lab, "g.example.com", "/v1/hostname", "a")
        assert lab.curl("g.example.com", "/v1/header?key=X-Via") == (200, "podnet")
        res = lab.exec_external(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--resolve",
            "g.example.com:80:" + lab.lbip, "http://g.example.com/old",
        )  # fmt: skip
        assert res.stdout == "301 http://new.example.com/old"
    finally:
        lab.delete("httproute", "filters")


def test_a_missing_backend_is_reported_in_the_route_status(lab):
    rules = [{"backendRefs": [{"name": "nosuch", "port": 80}]}]
    lab.apply(route("missing", rules, "m.example.com"))
    try:

        def resolved():
            r = json.loads(lab.run("get", "httproute", "missing", "-o", "json").stdout)
            parents = (r.get("status") or {}).get("parents") or []
            return parents and {c["type"]: c for c in parents[0]["conditions"]}

        conds = lab.until("HTTPRoute missing has status", resolved)
        assert conds["Accepted"]["status"] == "True"
        assert conds["ResolvedRefs"]["status"] == "False"
        assert conds["ResolvedRefs"]["reason"] == "BackendNotFound"
        assert "nosuch" in conds["ResolvedRefs"]["message"]
        assert lab.curl("m.example.com", "/hostname")[0] == 500  # the spec: an invalid backend's share is 500
        # the Service appears: resolved, and served
        lab.apply(app("nosuch"))
        served_by(lab, "m.example.com", "/hostname", "nosuch")
        conds = lab.until(
            "ResolvedRefs True", lambda: (c := resolved()) and c["ResolvedRefs"]["status"] == "True" and c
        )
        assert conds["ResolvedRefs"]["reason"] == "ResolvedRefs"
    finally:
        lab.delete("httproute", "missing")
        lab.delete("deployment", "nosuch")
        lab.delete("service", "nosuch")


def gateway(listeners):
    gw = json.loads(json.dumps(GATEWAY))
    gw["spec"]["listeners"] = listeners
    return json.dumps(gw)


HTTP = {"name": "http", "port": 80, "protocol": "HTTP"}


def listener_conditions(lab, name):
    gw = json.loads(lab.run("get", "gateway", "gw", "-o", "json").stdout)
    for lis in (gw.get("status") or {}).get("listeners") or []:
        if lis["name"] == name:
            return {c["type"]: c for c in lis["conditions"]}, lis["attachedRoutes"]
    return None, None


def test_https_listener_terminates_tls(lab, tmp_path):
    from tests.kernel.test_ingress import self_signed, tls_secret

    crt, key = self_signed("tls.example.com")
    ca = str(tmp_path / "ca.crt")
    with open(ca, "wb") as f:
        f.write(crt)
    lab.apply(tls_secret("gw-cert", crt, key))
    ref = {"group": "", "kind": "Secret", "name": "gw-cert"}
    https = {
        "name": "https",
        "port": 443,
        "protocol": "HTTPS",
        "hostname": "tls.example.com",
        "tls": {"mode": "Terminate", "certificateRefs": [dict(ref, namespace="default")]},
    }
    other = {
        "name": "https-other",
        "port": 443,
        "protocol": "HTTPS",
        "hostname": "other.example.com",
        "tls": {"certificateRefs": [dict(ref, namespace="kube-system")]},
    }
    # a Secret in another namespace: no ReferenceGrants in podnet, so the API refuses it
    res = lab.run("apply", "-f", "-", input=gateway([HTTP, https, other]), check=False)
    assert res.returncode != 0 and "certificateRefs[0].namespace" in res.stderr and "ReferenceGrant" in res.stderr
    lab.apply(gateway([HTTP, https]))
    lab.apply(route("tls", [{"backendRefs": [{"name": "b", "port": 80}]}], "tls.example.com"))
    try:
        served_by(lab, "tls.example.com", "/hostname", "b", "--cacert", ca, scheme="https")
        conds, attached = lab.until("listener https Programmed", lambda: listener_conditions(lab, "https"))
        assert conds["Programmed"]["status"] == "True" and attached == 1
        # plain HTTP for the same name is served too (the listener http has no hostname)
        served_by(lab, "tls.example.com", "/hostname", "b")
    finally:
        lab.delete("httproute", "tls")
        lab.apply(json.dumps(GATEWAY))
        lab.delete("secret", "gw-cert")


def test_a_route_attaches_to_a_listener_by_section_name(lab):
    sec = {"name": "sec", "port": 80, "protocol": "HTTP", "hostname": "*.sec.example.com"}
    lab.apply(gateway([HTTP, sec]))
    body = json.loads(route("bysection", [{"backendRefs": [{"name": "b", "port": 80}]}]))
    body["spec"]["hostnames"] = []
    body["spec"]["parentRefs"] = [{"name": "gw", "sectionName": "sec"}]
    lab.apply(json.dumps(body))
    try:
        # no hostnames of its own: the listener's *.sec.example.com
        served_by(lab, "x.sec.example.com", "/hostname", "b")
        assert lab.curl("x.other.example.com", "/hostname")[0] == 404  # not attached to listener http
        lab.until("attachedRoutes of sec", lambda: listener_conditions(lab, "sec")[1] == 1)
        assert listener_conditions(lab, "http")[1] == 0
    finally:
        lab.delete("httproute", "bysection")
        lab.apply(json.dumps(GATEWAY))


def test_allowed_routes_from_same_or_all_namespaces(lab):
    lab.apply('{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}')
    lab.apply(app("t").replace("metadata: {name: t}", "metadata: {name: t, namespace: team}"))
    body = json.loads(route("cross", [{"backendRefs": [{"name": "t", "port": 80}]}], "team.example.com"))
    body["metadata"]["namespace"] = "team"
    body["spec"]["parentRefs"] = [{"name": "gw", "namespace": "default"}]
    lab.apply(json.dumps(body))
    try:

        def accepted():
            r = json.loads(lab.run("get", "httproute", "cross", "-n", "team", "-o", "json").stdout)
            parents = (r.get("status") or {}).get("parents") or []
            return parents and {c["type"]: c for c in parents[0]["conditions"]}["Accepted"]

        # from: Same (the default): a route in another namespace is not allowed
        cond = lab.until("route cross has status", accepted)
        assert cond["status"] == "False" and cond["reason"] == "NotAllowedByListeners"
        assert lab.curl("team.example.com", "/hostname")[0] == 404
        lab.apply(gateway([dict(HTTP, allowedRoutes={"namespaces": {"from": "All"}})]))
        served_by(lab, "team.example.com", "/hostname", "t")
        assert lab.until("Accepted", lambda: (c := accepted()) and c["status"] == "True" and c)["reason"] == "Accepted"
    finally:
        lab.apply(json.dumps(GATEWAY))
        for kind, name in (("httproute", "cross"), ("deployment", "t"), ("service", "t")):
            lab.run("delete", kind, name, "-n", "team", check=False)
        lab.run("delete", "namespace", "team", check=False)


def test_header_and_query_parameter_matches(lab):
    rules = [
        {"matches": [{"queryParams": [{"name": "v", "value": "2"}]}], "backendRefs": [{"name": "b", "port": 80}]},
        {"matches": [{"method": "POST"}], "backendRefs": [{"name": "b", "port": 80}]},
        {"backendRefs": [{"name": "a", "port": 80}]},
    ]
    lab.apply(route("qp", rules, "qp.example.com"))
    try:
        served_by(lab, "qp.example.com", "/hostname", "a")
        served_by(lab, "qp.example.com", "/hostname?v=2", "b")
        served_by(lab, "qp.example.com", "/hostname?v=3", "a")
        served_by(lab, "qp.example.com", "/hostname", "b", "-X", "POST")
    finally:
        lab.delete("httproute", "qp")


def test_header_modifier_rewrite_and_redirect_filters(lab):
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/add"}}],
            "filters": [
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"add": [{"name": "X-Add", "value": "podnet"}]},
                },
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "hostname": "rewritten.example.com",
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/header"},
                    },
                },
            ],
            "backendRefs": [{"name": "a", "port": 80}],
        },
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/anything"}}],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/hostname"}},
                }
            ],
            "backendRefs": [{"name": "a", "port": 80}],
        },
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/moved"}}],
            "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "port": 8443}}],
        },
    ]
    lab.apply(route("mods", rules, "mods.example.com"))
    try:
        served_by(lab, "mods.example.com", "/anything/at/all", "a")  # ReplaceFullPath: /hostname at the pod
        assert lab.curl("mods.example.com", "/add?key=X-Add") == (200, "podnet")
        assert lab.curl("mods.example.com", "/add?key=X-Add", "-H", "X-Add: one") == (200, "one,podnet")
        assert lab.curl("mods.example.com", "/add?key=Host") == (200, "rewritten.example.com")
        res = lab.exec_external(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--resolve",
            "mods.example.com:80:" + lab.lbip, "http://mods.example.com/moved/x",
        )  # fmt: skip
        assert res.stdout == "302 https://mods.example.com:8443/moved/x"
    finally:
        lab.delete("httproute", "mods")
