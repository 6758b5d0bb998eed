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
