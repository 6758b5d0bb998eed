"""GatewayClass, Gateway and HTTPRoute (gateway.networking.k8s.io/v1)
through the API (issue 14): the Gateway API's defaults and rules with field
paths, what podnet's data plane does not do refused at its field, and the
kinds served to the real kubectl (columns, status subresource, watch) and
podnet's CLI. The nginx data plane is tested in tests/kernel/test_gateway.py.
"""

from __future__ import annotations

import copy
import json

import pytest

from podnet.api import FieldError, validate
from podnet.apiserver.table import to_table
from podnet.cli.printers import render_describe
from tests.api.conftest import kube_lab_fixture

GW = "gateway.networking.k8s.io/v1"
# not podnet's controllers: the lab's own gateway leaves these objects (and their status) to the tests
CLASS = {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "other"}}
CLASS["spec"] = {"controllerName": "example.com/other-gateway", "description": "not podnet's"}
GATEWAY = {
    "apiVersion": GW,
    "kind": "Gateway",
    "metadata": {"name": "gw"},
    "spec": {
        "gatewayClassName": "other",
        "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {
                "name": "https",
                "hostname": "*.example.com",
                "port": 443,
                "protocol": "HTTPS",
                "tls": {"certificateRefs": [{"name": "wild-tls"}]},
                "allowedRoutes": {"namespaces": {"from": "All"}},
            },
        ],
    },
}
ROUTE = {
    "apiVersion": GW,
    "kind": "HTTPRoute",
    "metadata": {"name": "split"},
    "spec": {
        "parentRefs": [{"name": "gw", "sectionName": "http"}],
        "hostnames": ["split.example.com"],
        "rules": [
            {"backendRefs": [{"name": "web", "port": 80, "weight": 80}, {"name": "canary", "port": 80, "weight": 20}]},
            {
                "matches": [{"path": {"type": "Exact", "value": "/v2"}, "headers": [{"name": "X-Env", "value": "qa"}]}],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}]},
                    },
                    {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/"}}},
                ],
                "backendRefs": [{"name": "web", "port": 80}],
            },
        ],
    },
}


def refused(obj: dict) -> FieldError:
    with pytest.raises(FieldError) as e:
        validate(obj)
    return e.value


def at(obj: dict, *path) -> dict:
    node = obj
    for k in path:
        node = node[k]
    return node


# ---- validation, no server ---------------------------------------------------------


def test_http_route_defaults_as_the_spec_defines_them():
    route = copy.deepcopy(ROUTE)
    route["spec"]["rules"][1]["matches"][0]["queryParams"] = [{"name": "v", "value": "2"}]
    out = validate(route)
    assert out["spec"]["parentRefs"][0] == {
        "name": "gw",
        "sectionName": "http",
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
    }
    first, second = out["spec"]["rules"]
    # a rule without matches matches every path: PathPrefix /
    assert first["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert [b["weight"] for b in first["backendRefs"]] == [80, 20]
    assert second["backendRefs"] == [{"name": "web", "port": 80, "group": "", "kind": "Service", "weight": 1}]
    match = second["matches"][0]
    assert match["headers"][0]["type"] == "Exact" and match["queryParams"][0]["type"] == "Exact"
    assert out["status"] == {"parents": []}
    # a route without rules gets the one default rule; a redirect's status code defaults to 302
    bare = {"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": "r"}, "spec": {}}
    assert validate(bare)["spec"]["rules"] == [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]
    redirect = copy.deepcopy(bare)
    redirect["spec"]["rules"] = [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]}]
    assert at(validate(redirect), "spec", "rules", 0, "filters", 0, "requestRedirect")["statusCode"] == 302
    # the Gateway's listeners admit routes of their own namespace unless told otherwise; status is pending
    gw = validate(copy.deepcopy(GATEWAY))
    assert gw["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    assert gw["spec"]["listeners"][1]["tls"]["mode"] == "Terminate"
    assert gw["spec"]["listeners"][1]["tls"]["certificateRefs"][0] == {
        "name": "wild-tls",
        "group": "",
        "kind": "Secret",
    }
    assert [(c["type"], c["status"], c["reason"]) for c in gw["status"]["conditions"]] == [
        ("Accepted", "Unknown", "Pending"),
        ("Programmed", "Unknown", "Pending"),
    ]
    gc = validate(copy.deepcopy(CLASS))
    assert [(c["type"], c["status"]) for c in gc["status"]["conditions"]] == [("Accepted", "Unknown")]


ROUTE_ERRORS = [
    # (path under the route, value, the error's field path, words in it)
    (("spec", "hostnames"), ["10.0.0.1"], "spec.hostnames[0]", "not an IP address"),
    (("spec", "hostnames"), ["a.*.com"], "spec.hostnames[0]", "wildcard"),
    (
        ("spec", "rules", 1, "matches", 0, "path", "value"),
        "v2",
        "spec.rules[1].matches[0].path.value",
        "start with '/'",
    ),
    (("spec", "rules", 1, "matches", 0, "path", "value"), "/a//b", "spec.rules[1].matches[0].path.value", "'//'"),
    (("spec", "rules", 1, "matches", 0, "path", "type"), "Regex", "spec.rules[1].matches[0].path.type", "one of"),
    (("spec", "rules", 1, "matches", 0, "method"), "FETCH", "spec.rules[1].matches[0].method", "one of"),
    (
        ("spec", "rules", 1, "matches", 0, "headers", 0, "name"),
        "bad name",
        "spec.rules[1].matches[0].headers[0].name",
        "header name",
    ),
    (("spec", "rules", 0, "backendRefs", 0, "port"), None, "spec.rules[0].backendRefs[0].port", "Must have port"),
    (("spec", "rules", 0, "backendRefs", 0, "weight"), 1000001, "spec.rules[0].backendRefs[0].weight", "0-1000000"),
    (("spec", "parentRefs", 0, "name"), None, "spec.parentRefs[0].name", "required"),
    (
        ("spec", "rules", 1, "filters", 1, "urlRewrite", "path", "type"),
        "ReplacePrefixMatch",
        "spec.rules[1].filters[1].urlRewrite.path.replaceFullPath",
        "Forbidden",
    ),
    (
        ("spec", "rules", 1, "filters", 1, "urlRewrite", "path"),
        {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"},
        "spec.rules[1].matches[0].path.type",
        "must be PathPrefix",
    ),
    (
        ("spec", "rules", 1, "filters", 0, "type"),
        "URLRewrite",
        "spec.rules[1].filters[0].requestHeaderModifier",
        "Forbidden",
    ),
]


@pytest.mark.parametrize("where,value,path,words", ROUTE_ERRORS, ids=[e[2] + ":" + str(e[1]) for e in ROUTE_ERRORS])
def test_http_route_rules_name_the_field(where, value, path, words):
    route = copy.deepcopy(ROUTE)
    parent = at(route, *where[:-1])
    if value is None:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    e = refused(route)
    assert e.path == path and words in str(e), str(e)


REFUSALS = [
    # what the data plane does not do: refused at its field, never stored and ignored
    (
        ("spec", "rules", 0, "filters"),
        [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "x"}}}],
        "spec.rules[0].filters[0].requestMirror",
    ),
    (
        ("spec", "rules", 0, "filters"),
        [{"type": "ExtensionRef", "extensionRef": {"name": "x"}}],
        "spec.rules[0].filters[0].extensionRef",
    ),
    (("spec", "rules", 0, "filters"), [{"type": "ResponseHeaderModifier"}], "spec.rules[0].filters[0].type"),
    (("spec", "rules", 1, "matches", 0, "path", "type"), "RegularExpression", "spec.rules[1].matches[0].path.type"),
    (
        ("spec", "rules", 1, "matches", 0, "headers", 0, "type"),
        "RegularExpression",
        "spec.rules[1].matches[0].headers[0].type",
    ),
    (("spec", "rules", 0, "backendRefs", 0, "kind"), "Bucket", "spec.rules[0].backendRefs[0].kind"),
    (("spec", "rules", 0, "backendRefs", 0, "namespace"), "other", "spec.rules[0].backendRefs[0].namespace"),
    (("spec", "rules", 0, "timeouts"), {"request": "5s"}, "spec.rules[0].timeouts"),
    (("spec", "parentRefs", 0, "port"), 80, "spec.parentRefs[0].port"),
    (("spec", "parentRefs", 0, "kind"), "Service", "spec.parentRefs[0].kind"),
]


@pytest.mark.parametrize("where,value,path", REFUSALS, ids=[e[2] for e in REFUSALS])
def test_http_route_refusals_name_the_field(where, value, path):
    route = copy.deepcopy(ROUTE)
    at(route, *where[:-1])[where[-1]] = value
    e = refused(route)
    assert e.path == path and "not supported by podnet" in str(e), str(e)


def test_gateway_refusals_name_the_field():
    def listener(**change):
        gw = copy.deepcopy(GATEWAY)
        gw["spec"]["listeners"][1].update(change)
        return gw

    for gw, path, words in (
        (listener(protocol="TCP"), "spec.listeners[1].protocol", "not supported by podnet"),
        (listener(protocol="TLS"), "spec.listeners[1].protocol", "not supported by podnet"),
        (listener(protocol="UDP"), "spec.listeners[1].protocol", "not supported by podnet"),
        (listener(protocol="SCTP"), "spec.listeners[1].protocol", "Unsupported value"),
        (
            listener(tls={"mode": "Passthrough", "certificateRefs": [{"name": "c"}]}),
            "spec.listeners[1].tls.mode",
            "not supported",
        ),
        (listener(tls={"certificateRefs": []}), "spec.listeners[1].tls.certificateRefs", "Required value"),
        (
            listener(tls={"certificateRefs": [{"name": "c", "namespace": "other"}]}),
            "spec.listeners[1].tls.certificateRefs[0].namespace",
            "ReferenceGrant",
        ),
        (
            listener(tls={"certificateRefs": [{"name": "c", "kind": "ConfigMap"}]}),
            "spec.listeners[1].tls.certificateRefs[0].kind",
            "not supported",
        ),
        (listener(tls=None), "spec.listeners[1].tls", "Required value"),
        (listener(name="http"), "spec.listeners[1].name", "Duplicate value"),
        (listener(hostname="1.2.3.4"), "spec.listeners[1].hostname", "not an IP address"),
        (listener(port=0), "spec.listeners[1].port", "1-65535"),
        (
            listener(allowedRoutes={"namespaces": {"from": "Selector", "selector": {}}}),
            "spec.listeners[1].allowedRoutes.namespaces.from",
            "not supported",
        ),
        (
            listener(allowedRoutes={"kinds": [{"kind": "TCPRoute"}]}),
            "spec.listeners[1].allowedRoutes.kinds[0].kind",
            "not supported",
        ),
    ):
        if gw["spec"]["listeners"][1].get("tls") is None:
            gw["spec"]["listeners"][1].pop("tls", None)
        e = refused(gw)
        assert e.path == path and words in str(e), (path, str(e))
    http_with_tls = copy.deepcopy(GATEWAY)
    http_with_tls["spec"]["listeners"][0]["tls"] = {"certificateRefs": [{"name": "c"}]}
    assert refused(http_with_tls).path == "spec.listeners[0].tls"
    same = copy.deepcopy(GATEWAY)
    same["spec"]["listeners"][1].update(name="https2", port=80, protocol="HTTP", hostname=None)
    del same["spec"]["listeners"][1]["tls"]
    assert "must be unique for each listener" in str(refused(same))
    for change, path in (
        ({"addresses": [{"type": "IPAddress", "value": "192.168.200.250"}]}, "spec.addresses"),
        ({"infrastructure": {"labels": {"a": "b"}}}, "spec.infrastructure"),
    ):
        gw = copy.deepcopy(GATEWAY)
        gw["spec"].update(change)
        e = refused(gw)
        assert e.path == path and "not supported by podnet" in str(e)
    gc = copy.deepcopy(CLASS)
    gc["spec"]["parametersRef"] = {"group": "example.com", "kind": "Config", "name": "c"}
    assert refused(gc).path == "spec.parametersRef"
    gc["spec"] = {"controllerName": "no-slash"}
    assert refused(gc).path == "spec.controllerName"


def test_columns_and_describe_of_the_gateway_kinds():
    route = validate(copy.deepcopy(ROUTE))
    route["metadata"].update(creationTimestamp="2026-01-01T00:00:00Z")
    route["status"] = {
        "parents": [
            {
                "parentRef": {"name": "gw", "kind": "Gateway"},
                "controllerName": "example.com/other-gateway",
                "conditions": [
                    {"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""},
                    {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound", "message": "canary"},
                ],
            }
        ]
    }
    table = to_table("HTTPRoute", [route])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Hostnames", "Age"]
    assert table["rows"][0]["cells"][:2] == ["split", '["split.example.com"]']
    gw = validate(copy.deepcopy(GATEWAY))
    gw["status"]["addresses"] = [{"type": "IPAddress", "value": "192.168.200.241"}]
    table = to_table("Gateway", [gw])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Class", "Address", "Programmed", "Age"]
    assert table["rows"][0]["cells"][:4] == ["gw", "other", "192.168.200.241", "Unknown"]
    table = to_table("GatewayClass", [validate(copy.deepcopy(CLASS))])
    assert [c["name"] for c in table["columnDefinitions"]][:4] == ["Name", "Controller", "Accepted", "Age"]
    assert table["rows"][0]["cells"][:3] == ["other", "example.com/other-gateway", "Unknown"]
    services = {"web": {"spec": {"ports": [{"port": 80, "name": "http"}]}}}
    slices = [
        {
            "metadata": {"labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}}],
        }
    ]
    text = render_describe(route, events=[], related={"services": services, "slices": slices})
    assert "Hostnames:    split.example.com" in text
    assert "web:80 weight 80 (80%) 10.244.0.5:8080" in text
    assert 'canary:80 weight 20 (20%) <error: services "canary" not found>' in text
    assert "Match:    Exact /v2, header X-Env=qa" in text
    assert "Filter:   URLRewrite: ReplaceFullPath /" in text
    assert "ResolvedRefs:  False  BackendNotFound  canary" in text


# ---- through the API server ----------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_lab(tmp_path_factory):
    """A lab without workloads: these tests only talk to its API server."""
    yield from kube_lab_fixture(tmp_path_factory, "cag", manifests=())


def test_gateway_api_kinds_create_get_watch_update_delete(gateway_lab, background):
    lab = gateway_lab
    watch = background(["/usr/bin/kubectl", "get", "httproutes", "--watch", "-o", "name"], lab.kenv, lab.work)
    items = [CLASS, GATEWAY, ROUTE]
    res = lab.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    assert "httproute.gateway.networking.k8s.io/split created" in res.stdout, res.stdout
    watch.wait_line("the watch sees the route", lambda x: x == "httproute.gateway.networking.k8s.io/split")
    gc = lab.kjson("get", "gatewayclass", "other")
    assert gc["spec"]["description"] == "not podnet's" and "namespace" not in gc["metadata"]
    route = lab.kjson("get", "httproute", "split")
    assert route["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert route["status"] == {"parents": []}
    # kubectl's columns, from the server's Table
    out = lab.kubectl("get", "gtw").stdout.splitlines()
    assert out[0].split() == ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"] and out[1].split()[:3] == [
        "gw",
        "other",
        "Unknown",
    ]
    out = lab.kubectl("get", "httproutes").stdout.splitlines()
    assert out[0].split() == ["NAME", "HOSTNAMES", "AGE"] and out[1].split()[:2] == ["split", '["split.example.com"]']
    out = lab.kubectl("get", "gatewayclass", "other").stdout.splitlines()
    assert out[0].split() == ["NAME", "CONTROLLER", "ACCEPTED", "AGE"] and out[1].split()[:3] == [
        "other",
        "example.com/other-gateway",
        "Unknown",
    ]
    # status through the status subresource (the controller's part); a spec update does not touch it
    status = {
        "parents": [
            {
                "parentRef": {"name": "gw", "sectionName": "http"},
                "controllerName": "example.com/other-gateway",
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "True",
                        "reason": "Accepted",
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": 1,
                    }
                ],
            }
        ]
    }
    lab.kubectl(
        "patch", "httproute", "split", "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )
    changed = copy.deepcopy(ROUTE)
    changed["spec"]["hostnames"].append("b.example.com")
    lab.kubectl("apply", "-f", "-", input=json.dumps(changed))
    route = lab.kjson("get", "httproute", "split")
    assert route["spec"]["hostnames"] == ["split.example.com", "b.example.com"] and route["metadata"]["generation"] == 2
    assert route["status"] == status
    # refused at the API with the field path; nothing stored
    bad = copy.deepcopy(ROUTE)
    bad["metadata"]["name"] = "mirror"
    bad["spec"]["rules"][0]["filters"] = [
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "x", "port": 80}}}
    ]
    res = lab.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0 and "spec.rules[0].filters[0].requestMirror: not supported by podnet" in res.stderr, (
        res.stderr
    )
    assert lab.kubectl("get", "httproute", "mirror", check=False).returncode != 0
    # podnet's CLI: get, describe, delete
    assert "split" in lab.run("get", "httproutes").stdout
    text = lab.run("describe", "httproute", "split").stdout
    assert "Hostnames:" in text and "Accepted:" in text
    lab.run("delete", "httproute", "split")
    lab.kubectl("delete", "gateway", "gw")
    lab.kubectl("delete", "gatewayclass", "other")
    assert lab.kjson("get", "httproutes")["items"] == [] and lab.kjson("get", "gateways")["items"] == []
