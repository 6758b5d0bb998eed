"""The pure parts of the ingress controller: objects -> nginx.conf and status.

The text is checked by what nginx would do with it (locations, server names,
upstream members); `nginx -t` runs on the rendered file when nginx is
installed (setup.sh installs nginx-light)."""

import base64
import os
import re
import shutil
import subprocess

import pytest

from podnet.ingress import status
from podnet.ingress.render import Inputs, render

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def meta(name, ts="2026-01-01T00:00:00Z", **kw):
    m = {"name": name, "namespace": "default", "creationTimestamp": ts}
    m.update(kw)
    return m


def svc(name):
    return {
        "kind": "Service",
        "metadata": meta(name),
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def slice_(name, ips, ready=True):
    return {
        "metadata": meta(name + "-1", labels={"kubernetes.io/service-name": name}),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips],
    }


CLASSES = [
    {
        "metadata": {"name": "podnet", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "podnet.io/ingress-nginx"},
    },
    {"metadata": {"name": "other"}, "spec": {"controller": "example.com/other"}},
]


def backend(name, port=None):
    return {"service": {"name": name, "port": port or {"number": 80}}}


def ing(name, rules=(), tls=None, default=None, cls=None, ts="2026-01-01T00:00:00Z"):
    spec = {"rules": list(rules)}
    if tls:
        spec["tls"] = tls
    if default:
        spec["defaultBackend"] = backend(default)
    if cls:
        spec["ingressClassName"] = cls
    return {"kind": "Ingress", "metadata": meta(name, ts), "spec": spec}


def rule(host, *paths):
    return {"host": host, "http": {"paths": [{"path": p, "pathType": t, "backend": backend(s)} for p, t, s in paths]}}


def inputs(ingresses=(), routes=(), secrets=(), services=("a", "b", "c"), slices=None):
    return Inputs(
        ingress_classes=CLASSES,
        ingresses=list(ingresses),
        gateway_classes=[{"metadata": {"name": "podnet"}, "spec": {"controllerName": "podnet.io/gateway-nginx"}}],
        gateways=[
            {
                "kind": "Gateway",
                "metadata": meta("gw"),
                "spec": {"gatewayClassName": "podnet", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
            }
        ],
        httproutes=list(routes),
        services=[svc(s) for s in services],
        slices=slices
        if slices is not None
        else [slice_("a", ["10.244.0.3", "10.244.1.3"]), slice_("b", ["10.244.2.3"]), slice_("c", ["10.244.0.9"])],
        secrets=list(secrets),
    )


def server_block(text, name):
    """The text of the server block whose server_name is `name`."""
    for block in re.split(r"\n  server \{\n", text)[1:]:
        if re.search(r"^    server_name %s;$" % re.escape(name), block, re.M):
            return block
    raise AssertionError("no server %s in\n%s" % (name, text))


def location(block, head):
    m = re.search(r"^    location %s \{\n(.*?)^    \}" % re.escape(head), block, re.M | re.S)
    assert m, "no location %s in\n%s" % (head, block)
    return m.group(1)


def nginx_ok(tmp_path, text):
    if NGINX is None:
        pytest.skip("nginx is not installed")  # setup.sh installs it; CI has it
    run = str(tmp_path)
    os.makedirs(os.path.join(run, "tmp"), exist_ok=True)
    conf = os.path.join(run, "nginx.conf")
    with open(conf, "w") as f:
        f.write(text)
    r = subprocess.run([NGINX, "-t", "-q", "-p", run, "-e", "stderr", "-c", conf], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_precedence_exact_then_longest_prefix_element_wise(tmp_path):
    r = render(
        inputs(
            [ing("i", [rule("a.example.com", ("/", "Prefix", "a"), ("/foo", "Prefix", "b"), ("/foo", "Exact", "c"))])]
        ),
        str(tmp_path),
        str(tmp_path / "certs"),
    )
    b = server_block(r.text, "a.example.com")
    assert "proxy_pass http://pn-default-c-80;" in location(b, '= "/foo"')  # Exact wins the exact path
    assert "proxy_pass http://pn-default-b-80;" in location(b, '"/foo/"')  # /foo/bar: the prefix
    assert "proxy_pass http://pn-default-a-80;" in location(b, '"/"')  # /foobar is not under /foo
    assert 'location "/foo" ' not in b  # no bare prefix /foo (it would take /foobar)
    # upstreams are the ready endpoints, not the ClusterIP
    assert re.search(
        r"upstream pn-default-a-80 \{\n    server 10.244.0.3:8080 max_fails=0;\n    server 10.244.1.3:8080", r.text
    )
    nginx_ok(tmp_path, r.text)


def test_wildcard_host_is_one_label_and_unknown_hosts_get_404_or_the_default_backend(tmp_path):
    r = render(inputs([ing("i", [rule("*.w.example.com", ("/", "Prefix", "a"))])]), str(tmp_path), str(tmp_path / "c"))
    assert re.search(r'server_name "~\^\[\^\.\]\+\\\.w\\\.example\\\.com\$";', r.text)
    default = server_block(r.text, '""')
    assert "listen 80 default_server;" in default and "return 404;" in location(default, '"/"')
    r = render(inputs([ing("i", [], default="b"), ing("j", [], default="c", ts="2026-02-01T00:00:00Z")]), "/r", "/c")
    assert "proxy_pass http://pn-default-b-80;" in location(server_block(r.text, '""'), '"/"')  # the oldest's
    # a known host whose paths do not match: the default backend as well (the Ingress spec)
    r = render(inputs([ing("i", [rule("k.example.com", ("/only", "Exact", "a"))], default="b")]), "/r", "/c")
    assert "proxy_pass http://pn-default-b-80;" in location(server_block(r.text, "k.example.com"), '"/"')


def test_other_class_is_ignored_and_no_class_is_the_default_class():
    r = render(inputs([ing("o", [rule("o.example.com", ("/", "Prefix", "a"))], cls="other")]), "/r", "/c")
    assert "o.example.com" not in r.text and r.ingresses == []
    r = render(inputs([ing("n", [rule("n.example.com", ("/", "Prefix", "a"))])]), "/r", "/c")
    assert "server_name n.example.com;" in r.text


def tls_secret(name):
    return {
        "metadata": meta(name),
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode(),
            "tls.key": base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n").decode(),
        },
    }


def test_tls_host_gets_its_certificate_and_a_308_redirect_and_a_missing_secret_leaves_the_ingress_out():
    tls = [{"hosts": ["s.example.com"], "secretName": "s"}]
    r = render(
        inputs([ing("t", [rule("s.example.com", ("/", "Prefix", "a"))], tls=tls)], secrets=[tls_secret("s")]),
        "/r",
        "/c",
    )
    (fname,) = r.files
    assert fname.startswith("default_s-") and r.files[fname].startswith(b"-----BEGIN PRIVATE KEY-----")
    blocks = [b for b in re.split(r"\n  server \{\n", r.text) if "server_name s.example.com;" in b]
    plain = [b for b in blocks if "listen 80;" in b][0]
    secure = [b for b in blocks if "listen 443 ssl;" in b][0]
    assert "return 308 https://$host$request_uri;" in plain
    assert "ssl_certificate /c/%s;" % fname in secure and "proxy_pass http://pn-default-a-80;" in secure
    default443 = [b for b in re.split(r"\n  server \{\n", r.text) if "listen 443 ssl default_server;" in b][0]
    assert "ssl_reject_handshake on;" in default443  # an unknown name gets no certificate at all
    r = render(inputs([ing("t", [rule("s.example.com", ("/", "Prefix", "a"))], tls=tls)]), "/r", "/c")
    assert "s.example.com" not in r.text
    assert [(p.name, p.message) for p in r.problems] == [
        ("t", "spec.tls[0].secretName: Secret default/s not found (not served)")
    ]


def test_a_path_that_is_not_absolute_or_unsafe_leaves_only_that_ingress_out():
    r = render(
        inputs(
            [
                ing("bad", [rule("b.example.com", ("foo", "Prefix", "a"))]),
                ing("evil", [rule("e.example.com", ('/x"; }', "Prefix", "a"))]),
                ing("ok", [rule("k.example.com", ("/", "Prefix", "a"))]),
            ]
        ),
        "/r",
        "/c",
    )
    assert "k.example.com" in r.text and "b.example.com" not in r.text and "e.example.com" not in r.text
    assert sorted(p.name for p in r.problems) == ["bad", "evil"]
    assert "must be an absolute path" in [p for p in r.problems if p.name == "bad"][0].message


def test_no_ready_endpoint_answers_503():
    r = render(
        inputs(
            [ing("i", [rule("a.example.com", ("/", "Prefix", "a"))])], slices=[slice_("a", ["10.244.0.3"], ready=False)]
        ),
        "/r",
        "/c",
    )
    assert "return 503;" in location(server_block(r.text, "a.example.com"), '"/"')
    assert "upstream pn-default-a-80" not in r.text


def route(name, rules, hostnames=("g.example.com",)):
    return {
        "kind": "HTTPRoute",
        "metadata": meta(name),
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": list(hostnames), "rules": rules},
    }


def test_httproute_weights_headers_and_filters(tmp_path):
    rules = [
        {
            "matches": [
                {"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "X-Env", "value": "canary"}]}
            ],
            "backendRefs": [{"name": "c", "port": 80}],
        },
        {
            "backendRefs": [{"name": "a", "port": 80, "weight": 80}, {"name": "b", "port": 80, "weight": 20}],
            "filters": [
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}], "remove": ["X-C"]},
                }
            ],
        },
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
                }
            ],
            "backendRefs": [{"name": "a", "port": 80}],
        },
        {
            "matches": [{"path": {"type": "Exact", "value": "/go"}}],
            "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}],
        },
    ]
    r = render(inputs(routes=[route("r", rules)]), str(tmp_path), str(tmp_path / "c"))
    b = server_block(r.text, "g.example.com")
    root = location(b, '"/"')
    # the header match goes first (a jump to its named location), then the split
    assert root.index('if ($http_x_env = "canary") { return 460; }') < root.index("proxy_pass http://$pn_split")
    assert "error_page 460 = @pn_r" in root
    assert re.search(
        r'split_clients "\$\{request_id\}" \$pn_split\d+ \{ 80\.00% pn-default-a-80; \* pn-default-b-80; \}', r.text
    )
    assert 'proxy_set_header X-A "1";' in root and 'proxy_set_header X-C "";' in root
    assert 'rewrite "^/v1/?(.*)$" "/$1" break;' in location(b, '"/v1/"')
    assert 'return 301 "https://$host$request_uri";' in location(b, '= "/go"')
    nginx_ok(tmp_path, r.text)


def test_route_status_says_backend_not_found():
    rules = [{"backendRefs": [{"name": "nosuch", "port": 80}]}]
    inp = inputs(routes=[route("r", rules)])
    r = render(inp, "/r", "/c")
    res = r.routes[("default", "r")]
    st = status.route_status(inp.httproutes[0], res, None, "2026-01-01T00:00:00Z")
    (parent,) = st["parents"]
    conds = {c["type"]: c for c in parent["conditions"]}
    assert conds["Accepted"]["status"] == "True"
    assert conds["ResolvedRefs"]["status"] == "False" and conds["ResolvedRefs"]["reason"] == "BackendNotFound"
    assert parent["controllerName"] == "podnet.io/gateway-nginx" and parent["parentRef"]["name"] == "gw"
    assert "return 500;" in r.text  # the Gateway API: an invalid backend's share is a 500
    gst = status.gateway_status(inp.gateways[0], r.gateways[("default", "gw")], ["192.168.200.241"], None, "now")
    assert gst["addresses"] == [{"type": "IPAddress", "value": "192.168.200.241"}]
    assert {c["type"]: c["status"] for c in gst["conditions"]} == {"Accepted": "True", "Programmed": "True"}
    assert gst["listeners"][0]["attachedRoutes"] == 1


def test_rendering_is_deterministic():
    ings = [ing("i%d" % i, [rule("h%d.example.com" % i, ("/p%d" % i, "Prefix", "abc"[i % 3]))]) for i in range(10)]
    one = render(inputs(ings), "/r", "/c").text
    two = render(inputs(list(reversed(ings))), "/r", "/c").text
    assert one == two


# ---- the controller's pass, on fakes ---------------------------------------------------


class FakeCluster:
    def __init__(self, objects):
        import threading

        self.objects = objects  # kind -> [obj]
        self.stop = threading.Event()
        self.writes = []

    def list(self, kind):
        return self.objects.get(kind, [])

    def find(self, kind, ns, name):
        return next((o for o in self.objects.get(kind, []) if o["metadata"]["name"] == name), None)

    def mutate(self, kind, ns, name, fn, status=False):
        obj = self.find(kind, ns, name)
        fn(obj)
        self.writes.append((kind, name, status))
        return obj


class FakeNginx:
    """nginx -t refuses any text holding `refuse`; load records what went live."""

    def __init__(self, refuse="bad.example.com"):
        self.refuse, self.loaded, self.run_dir, self.cert_dir = refuse, [], "/r", "/r/certs"
        self.reloads = 0

    def write_files(self, files):
        pass

    def prune_files(self, keep):
        pass

    def test(self, text):
        return "nginx: [emerg] refused %s" % self.refuse if self.refuse in text else None

    def load(self, text):
        self.loaded.append(text)

    def alive(self):
        return bool(self.loaded)


class FakeRecorder:
    def __init__(self):
        self.events = []

    def event(self, obj, etype, reason, message):
        self.events.append((obj["metadata"]["name"], etype, reason, message))


def test_controller_reloads_only_on_change_and_leaves_out_what_nginx_rejects():
    from podnet.ingress.controller import Controller

    inp = inputs([ing("good", [rule("good.example.com", ("/", "Prefix", "a"))])])
    lb = {
        "kind": "Service",
        "metadata": meta("ingress-nginx"),
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.200.241"}]}},
    }
    objects = {
        "IngressClass": inp.ingress_classes,
        "Ingress": inp.ingresses,
        "Service": inp.services + [lb],
        "EndpointSlice": inp.slices,
    }
    cluster, nginx, rec = FakeCluster(objects), FakeNginx(), FakeRecorder()
    ctl = Controller(cluster, nginx, ("default", "ingress-nginx"), rec)
    ctl.sync()
    ctl.sync()
    assert len(nginx.loaded) == 1  # the same text twice: one load
    assert objects["Ingress"][0]["status"] == {"loadBalancer": {"ingress": [{"ip": "192.168.200.241"}]}}
    assert cluster.writes == [("Ingress", "good", True)]  # and the status written once
    objects["Ingress"].append(ing("bad", [rule("bad.example.com", ("/", "Prefix", "b"))], ts="2026-01-02T00:00:00Z"))
    objects["Ingress"].append(
        ing("later", [rule("later.example.com", ("/", "Prefix", "c"))], ts="2026-01-03T00:00:00Z")
    )
    ctl.sync()
    assert len(nginx.loaded) == 2
    live = nginx.loaded[-1]
    assert "good.example.com" in live and "later.example.com" in live and "bad.example.com" not in live
    assert (
        "bad",
        "Warning",
        "Rejected",
        "nginx -t rejects this object's configuration: nginx: [emerg] refused bad.example.com",
    ) in rec.events
    # fixed: served again, and no longer left out
    objects["Ingress"][1] = ing("bad", [rule("fixed.example.com", ("/", "Prefix", "b"))], ts="2026-01-02T00:00:00Z")
    ctl.sync()
    assert "fixed.example.com" in nginx.loaded[-1] and ctl.left_out == {}


def test_a_route_nginx_could_not_express_is_not_accepted_and_says_why():
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}, "queryParams": [{"name": "a-b", "value": "1"}]}],
            "backendRefs": [{"name": "a", "port": 80}],
        }
    ]
    r = render(inputs(routes=[route("q", rules, hostnames=("q.example.com",))]), "/r", "/c")
    (parent,) = r.routes[("default", "q")].parents
    assert not parent.accepted and parent.reason == "UnsupportedValue" and "'a-b'" in parent.message
    assert "q.example.com" not in r.text


def test_https_listener_serves_the_route_with_the_listener_certificate():
    inp = inputs(routes=[route("s", [{"backendRefs": [{"name": "a", "port": 80}]}], hostnames=("s.example.com",))])
    inp.secrets = [tls_secret("gw-cert")]
    inp.gateways[0]["spec"]["listeners"].append(
        {"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "gw-cert"}]}}
    )
    r = render(inp, "/r", "/c")
    (fname,) = r.files
    secure = [b for b in re.split(r"\n  server \{\n", r.text) if "listen 443 ssl;" in b and "s.example.com" in b]
    assert secure and "ssl_certificate /c/%s;" % fname in secure[0]
    assert r.gateways[("default", "gw")].attached == {"http": 1, "https": 1}


def test_a_listener_on_a_port_the_service_does_not_publish_is_not_accepted():
    inp = inputs(routes=[route("p", [{"backendRefs": [{"name": "a", "port": 80}]}], hostnames=("p.example.com",))])
    inp.gateways[0]["spec"]["listeners"] = [{"name": "alt", "port": 8080, "protocol": "HTTP"}]
    r = render(inp, "/r", "/c")
    res = r.gateways[("default", "gw")]
    assert not res.accepted and res.reason == "ListenersNotValid"
    assert res.listeners["alt"][0] == "PortUnavailable" and "listen 8080" not in r.text
    gst = status.gateway_status(inp.gateways[0], res, ["192.168.200.241"], None, "now")
    conds = {c["type"]: c for c in gst["listeners"][0]["conditions"]}
    assert conds["Accepted"]["reason"] == "PortUnavailable" and conds["Programmed"]["status"] == "False"
