"""`podnet doctor`: gather the facts once, run every check, rank the findings.

    resolve(...)   TARGET and --to -> the scope (pods, Services, nodes, path);
                   an unknown name raises NotFoundError (the CLI exits 2)
    gather(...)    API objects (one list per kind), then kernel reads: one
                   thread per node namespace and per pod namespace in scope
    run(...)       the checks over those facts, ranked (checks_base.rank)

The checks are pure (checks_*.py); everything that talks to the API server or
the kernel is here and in podnet.kernel.inspect.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from podnet.api.selectors import matches_map
from podnet.diag import checks_ingress, checks_node, checks_rules, checks_workload
from podnet.diag.checks_base import Facts, Finding, Path, key_of, rank
from podnet.kernel import inspect
from podnet.lab import topology as topo

CHECKS = [
    ("processes", checks_node.check_processes),
    ("pod-status", checks_workload.check_pod_status),
    ("service-selector", checks_workload.check_service_selector),
    ("endpoints", checks_workload.check_endpoints),
    ("ingress", checks_ingress.check_ingress),
    ("target-port", checks_workload.check_target_port),
    ("dns", checks_workload.check_dns),
    ("node-routes", checks_node.check_node_routes),
    ("vxlan-fdb", checks_node.check_vxlan_fdb),
    ("bgp", checks_node.check_bgp),
    ("mtu", checks_node.check_mtu),
    ("sysctls", checks_node.check_sysctls),
    ("network-policy", checks_rules.check_network_policy),
    ("conntrack", checks_rules.check_conntrack),
    ("nft-tables", checks_rules.check_nft_tables),
    ("foreign-rules", checks_rules.check_foreign_rules),
]


class NotFoundError(Exception):
    """An unknown name on the command line (the CLI exits 2)."""


# ---- the API's objects --------------------------------------------------------------


def api_facts(lab, client):
    doc = topo.load(lab)
    f = Facts(lab=lab, mode=(doc.get("routing") or {}).get("mode", "vxlan"))
    f.pods = client.list("Pod")
    f.services = client.list("Service")
    f.slices = client.list("EndpointSlice")
    f.policies = client.list("NetworkPolicy")
    f.namespaces = client.list("Namespace")
    f.events = client.list("Event")
    f.ingresses = client.list("Ingress")
    f.ingress_classes = client.list("IngressClass")
    # the type is all a check needs; the data is dropped here and never printed
    f.secrets = {key_of(x): x.get("type") or "Opaque" for x in client.list("Secret")}
    netns = {n["name"]: n["netns"] for n in doc["nodes"]}
    for n in client.list("Node"):
        name = n["metadata"]["name"]
        ip = next((a["address"] for a in n["status"].get("addresses") or [] if a["type"] == "InternalIP"), None)
        f.nodes[name] = {
            "ip": ip,
            "podCIDR": n["spec"].get("podCIDR"),
            "vtep_mac": (n["metadata"].get("annotations") or {}).get("podnet.io/vtep-mac"),
            "netns": netns.get(name, topo.ns_name(lab, name)),
        }
    f.procs = topo.processes(lab)
    return f


# ---- TARGET and --to -> the scope ------------------------------------------------------


def _split(text, namespace):
    """'name' | 'ns/name' -> (ns, name)."""
    if "/" in text:
        ns, name = text.split("/", 1)
        return ns, name
    return namespace or "default", text


def _kind_and_name(text):
    for prefix, kind in (
        ("svc/", "svc"),
        ("service/", "svc"),
        ("node/", "node"),
        ("pod/", "pod"),
        ("ing/", "ingress"),
        ("ingress/", "ingress"),
    ):
        if text.startswith(prefix):
            return kind, text[len(prefix) :]
    return "pod", text


def _selected(f, svc):
    ns = svc["metadata"].get("namespace", "default")
    sel = svc["spec"].get("selector")
    return [
        key_of(p)
        for p in f.pods
        if p["metadata"].get("namespace", "default") == ns and matches_map(sel, p["metadata"].get("labels"))
    ]


def _target(f, text, namespace):
    """-> (label, pods, services, nodes) of one TARGET (an Ingress sets
    f.scope_ingresses too)."""
    kind, rest = _kind_and_name(text)
    if kind == "node":
        if rest not in f.nodes:
            raise NotFoundError("node %s not found" % rest)
        pods = {key_of(p) for p in f.pods if p["spec"].get("nodeName") == rest}
        return "node " + rest, pods, set(), {rest}
    ns, name = _split(rest, namespace)
    key = "%s/%s" % (ns, name)
    if kind == "ingress":
        ing = next((i for i in f.ingresses if key_of(i) == key), None)
        if ing is None:
            raise NotFoundError("ingress %s not found" % key)
        f.scope_ingresses = {key}
        # the path end to end: the controller's pods and every backend's
        services = {checks_ingress.CONTROLLER_SVC}
        services |= {"%s/%s" % (ns, b.get("name")) for _, b in checks_ingress.backends(ing)}
        pods = {p for s_key in services if (svc := f.service(s_key)) is not None for p in _selected(f, svc)}
        nodes = {f.pod(p)["spec"].get("nodeName") for p in pods} - {None}
        return "ingress " + key, pods, services & {key_of(s) for s in f.services}, nodes
    if kind == "svc":
        svc = f.service(key)
        if svc is None:
            raise NotFoundError("service %s not found" % key)
        pods = set(_selected(f, svc))
        nodes = {f.pod(p)["spec"].get("nodeName") for p in pods} - {None}
        return "svc " + key, pods, {key}, nodes
    pod = f.pod(key)
    if pod is None:
        raise NotFoundError("pod %s not found" % key)
    services = {
        key_of(s)
        for s in f.services
        if s["metadata"].get("namespace", "default") == ns
        and matches_map(s["spec"].get("selector"), pod["metadata"].get("labels"))
    }
    nodes = {pod["spec"].get("nodeName")} - {None}
    return key, {key}, services, nodes


def resolve(f, target, to, namespace):
    """Set f's scope from TARGET and --to; -> the target's label."""
    if target is None:
        if to is not None:
            raise NotFoundError("--to needs a TARGET pod to start from")
        return "lab " + f.lab
    f.scope_ingresses = set()  # a TARGET that is no Ingress: no Ingress findings
    label, pods, services, nodes = _target(f, target, namespace)
    if to is not None:
        if not label.startswith(("node ", "svc ", "ingress ")):
            src = label
        else:
            raise NotFoundError("--to starts from a pod, not %s" % label)
        tlabel, tpods, tservices, tnodes = _target(f, to, namespace)
        path = Path(src=src, dst_pods=sorted(tpods))
        if tlabel.startswith("svc "):
            svc = f.service(tlabel[4:])
            port = (svc["spec"].get("ports") or [{}])[0]
            path.service = tlabel[4:]
            path.protocol = port.get("protocol", "TCP")
            refs = [ep.get("targetRef") or {} for ep in f.ready_endpoints(path.service)]
            ready = ["%s/%s" % (r.get("namespace", "default"), r.get("name")) for r in refs]
            path.dst_pods = sorted(set(ready) & tpods) or sorted(tpods)
            if path.dst_pods:
                path.port = checks_workload.target_port(f.pod(path.dst_pods[0]), port)
        f.path = path
        pods, services, nodes = pods | tpods, services | tservices, nodes | tnodes
        label = "%s --to %s" % (label, tlabel)
    f.scope_pods, f.scope_services, f.scope_nodes = pods, services, nodes
    return label


# ---- kernel facts ---------------------------------------------------------------------------


def _pod_dir(lab, pod):
    meta = pod["metadata"]
    return os.path.join(
        topo.state_dir(lab),
        "nodes",
        pod["spec"].get("nodeName") or "",
        "pods",
        "%s_%s_%s" % (meta.get("namespace", "default"), meta["name"], meta["uid"]),
    )


def _one_pod(f, pod, dns_ip):
    from podnet.agent.agent import pod_netns

    ns = pod_netns(f.lab, pod["metadata"]["uid"])
    pk = inspect.pod_facts(ns)
    try:
        with open(os.path.join(_pod_dir(f.lab, pod), "resolv.conf")) as fh:
            pk["resolv"] = fh.read()
    except OSError:
        pass
    if dns_ip and "error" not in pk and not key_of(pod).startswith("kube-system/"):
        pk["dns"] = inspect.dns_query(ns, dns_ip, "kubernetes.default.svc.cluster.local")
    return key_of(pod), pk


def _bird(f, node):
    from podnet.routing.bgp import BgpError, Bird

    b = Bird("/run/netns/" + f.nodes[node]["netns"], os.path.join(topo.state_dir(f.lab), "nodes", node, "bird"))
    out = {"ctl": b.ctl, "running": b.running}
    if out["running"]:
        try:
            out["sessions"] = b.sessions()
        except (BgpError, OSError) as exc:
            out["error"] = str(exc)
    return out


def kernel_facts(f):
    """Read every node in scope and every pod in scope, in parallel."""
    nodes = [n for n in f.nodes if f.in_scope_node(n)]
    # the path's ends and every node between them matter: all nodes for routes
    if f.path is not None:
        nodes = list(f.nodes)
    pods = [
        p
        for p in f.pods
        if f.in_scope_pod(key_of(p))
        and p.get("status", {}).get("phase") == "Running"
        and not p["spec"].get("hostNetwork")
        and not p["metadata"].get("deletionTimestamp")
    ]
    svc = f.service(checks_workload.KUBE_DNS)
    dns_ip = svc["spec"].get("clusterIP") if svc else None
    # the DNS query is for the pods a person asked about, not every pod of the lab
    ask_dns = f.scope_pods is not None
    with ThreadPoolExecutor(max_workers=8) as pool:
        node_jobs = {n: pool.submit(inspect.node_facts, f.nodes[n]["netns"], f.mode == "vxlan") for n in nodes}
        bird_jobs = {n: pool.submit(_bird, f, n) for n in nodes} if f.mode == "bgp" else {}
        pod_jobs = [pool.submit(_one_pod, f, p, dns_ip if ask_dns else None) for p in pods]
        for n, job in node_jobs.items():
            f.kernel[n] = job.result()
        for n, job in bird_jobs.items():
            f.bird[n] = job.result()
        for job in pod_jobs:
            key, pk = job.result()
            f.pod_kernel[key] = pk
        probe_ingresses(f, pool)


def _probe_targets(f):
    """[(ingress key, host, path, ip)]: each rule's first path, through the
    Ingress's address (a wildcard host gets a name under it)."""
    out = []
    for ing in f.ingresses:
        key = key_of(ing)
        lb = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if not f.in_scope_ingress(key) or not lb or not lb[0].get("ip"):
            continue
        for rule in (ing.get("spec") or {}).get("rules") or []:
            paths = (rule.get("http") or {}).get("paths") or []
            if not paths:
                continue
            host = (rule.get("host") or lb[0]["ip"]).replace("*", "doctor", 1)
            out.append((key, host, paths[0].get("path") or "/", lb[0]["ip"]))
    return out


def probe_ingresses(f, pool):
    """Real GETs from the external host (as a user outside would send them)."""
    ext = topo.load(f.lab).get("external", {}).get("netns")
    targets = _probe_targets(f) if ext else []
    jobs = [(t, pool.submit(inspect.http_get, ext, t[3], t[1], t[2])) for t in targets]
    for (key, host, path, ip), job in jobs:
        f.ingress_probes.setdefault(key, []).append(dict(job.result(), host=host, path=path, ip=ip))


# ---- the run -------------------------------------------------------------------------------------


def run(lab, client, target=None, to=None, namespace=None):
    """-> {"target", "findings", "checked", "elapsed"} (the JSON contract)."""
    t0 = time.monotonic()
    f = api_facts(lab, client)
    label = resolve(f, target, to, namespace)
    kernel_facts(f)
    findings: list[Finding] = []
    checked = []
    for name, check in CHECKS:
        checked.append(name)
        findings += check(f)
    return {
        "target": label,
        "findings": [x.to_json() for x in rank(findings)],
        "checked": checked,
        "elapsed": round(time.monotonic() - t0, 2),
    }
