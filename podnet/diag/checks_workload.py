"""Workload checks: pod-status, service-selector, endpoints, target-port, dns.

They read API objects (pods, Services, EndpointSlices, Events) and, for
target-port and dns, what the doctor read inside the pods' namespaces.
"""

from __future__ import annotations

from podnet.api.selectors import format_labels, matches_map
from podnet.controllers.planners import pod_ready, target_port
from podnet.diag.checks_base import Facts, Finding, Obj, key_of

KUBE_DNS = "kube-system/kube-dns"


def _probe_text(probe: Obj) -> str:
    if "httpGet" in probe:
        h = probe["httpGet"]
        return "httpGet %s port %s" % (h.get("path", "/"), h.get("port"))
    if "tcpSocket" in probe:
        return "tcpSocket port %s" % probe["tcpSocket"].get("port")
    if "exec" in probe:
        return "exec %s" % " ".join(probe["exec"].get("command") or [])
    return "probe"


def _last_event(f: Facts, pod: Obj, word: str) -> str | None:
    """The newest matching Event's message: a probe that first found no
    server and now gets a 404 records two Events, and the 404 is the news."""
    meta = pod["metadata"]
    found = []
    for e in f.events:
        obj = e.get("involvedObject") or {}
        if obj.get("name") == meta["name"] and obj.get("namespace") == meta.get("namespace"):
            if word in (e.get("message") or "") or word in (e.get("reason") or ""):
                when = (
                    e.get("lastTimestamp")
                    or e.get("eventTime")
                    or (e.get("metadata") or {}).get("creationTimestamp")
                    or ""
                )
                found.append((when, e.get("message")))
    return max(found, key=lambda x: x[0])[1] if found else None


def check_pod_status(f: Facts) -> list[Finding]:
    out = []
    for pod in f.pods:
        key = key_of(pod)
        if not f.in_scope_pod(key) or pod["metadata"].get("deletionTimestamp"):
            continue
        st = pod.get("status", {})
        phase = st.get("phase")
        cmd = "podnet describe pod %s -n %s" % (pod["metadata"]["name"], pod["metadata"].get("namespace", "default"))
        if phase == "Succeeded":
            continue
        if phase != "Running":
            why = [
                "%s: %s" % (c.get("name"), (c.get("state") or {}).get("waiting", {}).get("message") or c.get("state"))
                for c in st.get("containerStatuses") or []
            ]
            out.append(
                Finding(
                    "pod-status",
                    "error",
                    "pod %s is %s, not Running" % (key, phase),
                    why,
                    cmd,
                    pod["spec"].get("nodeName"),
                )
            )
            continue
        if not pod_ready(pod):
            evidence = []
            probes = []
            for c in pod["spec"].get("containers") or []:
                if c.get("readinessProbe"):
                    probes.append("container %s readinessProbe %s" % (c["name"], _probe_text(c["readinessProbe"])))
            evidence += probes
            last = _last_event(f, pod, "Readiness probe failed") or _last_event(f, pod, "Unhealthy")
            if last:
                evidence.append("last failure: %s" % last)
            summary = "pod %s is not Ready" % key
            if probes:
                summary += ": its readiness probe fails (%s)" % probes[0].split("readinessProbe ", 1)[1]
            if last:
                summary += ", last failure: %s" % last
            out.append(Finding("pod-status", "error", summary, evidence, cmd, pod["spec"].get("nodeName")))
            continue
        for c in st.get("containerStatuses") or []:
            if c.get("restartCount", 0) >= 3:
                out.append(
                    Finding(
                        "pod-status",
                        "warning",
                        "container %s of pod %s restarted %d times" % (c.get("name"), key, c["restartCount"]),
                        ["lastState: %s" % c.get("lastState")],
                        cmd,
                        pod["spec"].get("nodeName"),
                    )
                )
    return out


def _selector_pods(f: Facts, svc: Obj) -> list[Obj]:
    ns = svc["metadata"].get("namespace", "default")
    sel = svc["spec"].get("selector")
    return [
        p
        for p in f.pods
        if p["metadata"].get("namespace", "default") == ns
        and matches_map(sel, p["metadata"].get("labels"))
        and not p["metadata"].get("deletionTimestamp")
    ]


def _near(a: str, b: str) -> bool:
    """One edit apart (substitution, insertion, deletion or swap of neighbours)."""
    if a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    if abs(len(a) - len(b)) != 1:
        return False
    s, t = (a, b) if len(a) < len(b) else (b, a)
    return any(s == t[:i] + t[i + 1 :] for i in range(len(t)))


def near_misses(f: Facts, svc: Obj) -> list[str]:
    """Labels one character away from the selector, and matching pods in other namespaces."""
    sel = svc["spec"].get("selector") or {}
    ns = svc["metadata"].get("namespace", "default")
    out = []
    for p in f.pods:
        labels = p["metadata"].get("labels") or {}
        pns = p["metadata"].get("namespace", "default")
        if pns != ns and matches_map(sel, labels):
            out.append("pod %s in namespace %s matches (a Service selects only its own namespace)" % (key_of(p), pns))
            continue
        if pns != ns:
            continue
        for k, v in sel.items():
            for lk, lv in labels.items():
                if (lk == k and _near(lv, v)) or (lv == v and _near(lk, k)):
                    out.append("pod %s has %s=%s, the selector wants %s=%s" % (key_of(p), lk, lv, k, v))
    return list(dict.fromkeys(out))


def check_service_selector(f: Facts) -> list[Finding]:
    out = []
    for svc in f.services:
        key = key_of(svc)
        if not f.in_scope_service(key) or not svc["spec"].get("selector"):
            continue
        if _selector_pods(f, svc):
            continue
        sel = svc["spec"]["selector"]
        near = near_misses(f, svc)
        summary = "Service %s selects no pod: no pod has labels %s" % (key, format_labels(sel))
        if near:
            summary += "; near miss: " + near[0]
        ns = svc["metadata"].get("namespace", "default")
        evidence = ["selector %s" % format_labels(sel)] + near
        evidence += [
            "pod %s labels %s" % (key_of(p), format_labels(p["metadata"].get("labels")))
            for p in f.pods
            if p["metadata"].get("namespace", "default") == ns
        ][:10]
        out.append(
            Finding(
                "service-selector",
                "error",
                summary,
                evidence,
                "podnet describe svc %s -n %s; podnet get pods -n %s -o json" % (svc["metadata"]["name"], ns, ns),
            )
        )
    return out


def check_endpoints(f: Facts) -> list[Finding]:
    out = []
    for svc in f.services:
        key = key_of(svc)
        if not f.in_scope_service(key) or not svc["spec"].get("selector"):
            continue
        pods = _selector_pods(f, svc)
        if not pods and key != KUBE_DNS:
            continue  # service-selector says why
        if f.ready_endpoints(key):
            continue
        ns = svc["metadata"].get("namespace", "default")
        out.append(
            Finding(
                "endpoints",
                "error",
                "Service %s has no ready endpoints (%d pods selected, none Ready): connections to it are rejected"
                % (key, len(pods)),
                ["%s ready=%s" % (key_of(p), pod_ready(p)) for p in pods] or ["no pod selected"],
                "podnet get endpointslices -n %s -l kubernetes.io/service-name=%s" % (ns, svc["metadata"]["name"]),
            )
        )
    return out


def _ports_text(pod: Obj) -> str:
    """'http=8080/TCP, 8081/UDP' (kubectl describe's way), '<none>'."""
    words = [
        "%s%s/%s" % (p["name"] + "=" if p.get("name") else "", p.get("containerPort"), p.get("protocol", "TCP"))
        for c in pod["spec"].get("containers") or []
        for p in c.get("ports") or []
    ]
    return ", ".join(words) or "<none>"


def _listens(pk: Obj, proto: str, port: int) -> bool:
    socks = (pk.get("listening") or {}).get(proto.lower(), [])
    return any(p == port for _, p in socks)


def check_target_port(f: Facts) -> list[Finding]:
    out = []
    for svc in f.services:
        key = key_of(svc)
        if not f.in_scope_service(key) or not svc["spec"].get("selector"):
            continue
        for ep in f.ready_endpoints(key):
            ref = ep.get("targetRef") or {}
            pkey = "%s/%s" % (ref.get("namespace", "default"), ref.get("name"))
            pod = f.pod(pkey)
            pk = f.pod_kernel.get(pkey)
            if pod is None or pk is None or "listening" not in pk:
                continue
            ip = ep["addresses"][0]
            for port in svc["spec"].get("ports") or []:
                proto = port.get("protocol", "TCP")
                tp = target_port(pod, port)
                if tp is None:
                    out.append(
                        Finding(
                            "target-port",
                            "error",
                            "Service %s port %s: targetPort %r names no %s port of pod %s"
                            % (key, port.get("port"), port.get("targetPort"), proto, pkey),
                            ["containers' ports: %s" % _ports_text(pod)],
                            "podnet describe svc %s -n %s" % (svc["metadata"]["name"], key.split("/")[0]),
                            pod["spec"].get("nodeName"),
                        )
                    )
                    continue
                if _listens(pk, proto, tp):
                    continue
                socks = ["%s %s:%d" % (proto.lower(), a, p) for a, p in (pk["listening"].get(proto.lower()) or [])]
                out.append(
                    Finding(
                        "target-port",
                        "error",
                        "Service %s port %s sends to %s:%d (%s), where nothing in pod %s listens"
                        % (key, port.get("port"), ip, tp, proto, pkey),
                        ["pod %s listens on: %s" % (pkey, ", ".join(socks) or "nothing")],
                        "podnet exec -n %s %s -- ss -lntu" % tuple(pkey.split("/", 1)),
                        pod["spec"].get("nodeName"),
                    )
                )
    return out


def check_dns(f: Facts) -> list[Finding]:
    out = []
    svc = f.service(KUBE_DNS)
    for pod in f.pods:
        key = key_of(pod)
        if not f.in_scope_pod(key) or pod["spec"].get("hostNetwork"):
            continue
        if pod["spec"].get("dnsPolicy", "ClusterFirst") != "ClusterFirst" or key.startswith("kube-system/coredns"):
            continue
        pk = f.pod_kernel.get(key)
        if pk is None:
            continue
        cmd = "podnet exec -n %s %s -- nslookup kubernetes.default" % tuple(key.split("/", 1))
        if svc is None:
            out.append(
                Finding(
                    "dns", "error", "Service %s does not exist: pod %s cannot resolve names" % (KUBE_DNS, key), [], cmd
                )
            )
            continue
        eps = f.ready_endpoints(KUBE_DNS)
        ip = svc["spec"].get("clusterIP")
        evidence = ["Service %s clusterIP %s, %d ready endpoints" % (KUBE_DNS, ip, len(eps))]
        resolv = pk.get("resolv")
        if resolv is not None:
            evidence.append("pod %s resolv.conf: %s" % (key, " | ".join(resolv.strip().splitlines())))
        q = pk.get("dns") or {}
        if q:
            evidence.append("query from %s: %s" % (key, q.get("detail")))
        if not eps:
            out.append(
                Finding(
                    "dns",
                    "error",
                    "Service %s has no ready endpoints: pod %s cannot resolve names" % (KUBE_DNS, key),
                    evidence,
                    "podnet get deploy coredns -n kube-system; " + cmd,
                )
            )
        elif resolv is not None and "nameserver %s" % ip not in resolv:
            out.append(
                Finding("dns", "error", "pod %s's resolv.conf does not name kube-dns %s" % (key, ip), evidence, cmd)
            )
        elif q and not q.get("ok"):
            out.append(
                Finding(
                    "dns",
                    "error",
                    "a DNS query from pod %s to %s failed: %s" % (key, ip, q.get("detail")),
                    evidence,
                    cmd,
                )
            )
    return out
