"""Pure `kubectl describe`-like text for one object (plain dict as an API
server returns it). Follows kubectl's describers (pkg/describe) in layout
and wording, written through the same tabwriter settings (padding 2), but
byte-for-byte compatibility is not a goal. podnet additions: a pod list under
a NetworkPolicy ("Selected pods:") and pod IPs in a Node's pod table.

`related` carries what a describer would look up through the API:
  Service:       {"endpoints": ["10.244.1.5:8080", ...]}   (or {port name: [...]},
                 or an Endpoints object)
  Node:          {"pods": [pod, ...]}        pods bound to the node
  NetworkPolicy: {"pods": [pod or name, ...]} pods the policy selects
  ReplicaSet:    {"pods": [pod, ...]}        for the Pods Status line
  Deployment:    {"replicasets": [rs, ...]}  for OldReplicaSets / NewReplicaSet
"""

from datetime import UTC, datetime

from podnet.cli.printers import (
    _cond,
    _meta,
    age,
    format_endpoints,
    format_labels,
    format_selector,
    human_duration,
    list_with_more,
    node_roles,
    parse_time,
    tabwrite,
)

__all__ = ["render_describe", "describe_probe", "rfc1123z"]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc1123z(ts):
    """Go's time.RFC1123Z in UTC: "Sat, 21 Nov 2026 22:27:00 +0000"; "<unknown>" if absent."""
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    t = t.astimezone(UTC)
    return "%s, %02d %s %d %02d:%02d:%02d +0000" % (
        _DAYS[t.weekday()],
        t.day,
        _MONTHS[t.month - 1],
        t.year,
        t.hour,
        t.minute,
        t.second,
    )


class _Out:
    """kubectl's PrefixWriter over one tabwriter: write(level, line) indents by
    2*level spaces; flush() ends the current alignment blocks (as Go's Flush)."""

    def __init__(self):
        self.segments, self.lines = [], []

    def __call__(self, level, line=""):
        self.lines.append("  " * level + line)

    def flush(self):
        self.segments.append(self.lines)
        self.lines = []

    def text(self):
        self.flush()
        out = "\n".join(tabwrite(seg, minwidth=0, padding=2) for seg in self.segments if seg)
        return "\n".join(line.rstrip() for line in out.split("\n"))


def _multiline(w, title, pairs):
    """Labels:/Annotations: style: first value on the title line, the rest aligned."""
    if not pairs:
        w(0, "%s:\t<none>" % title)
        return
    for i, p in enumerate(pairs):
        w(0, ("%s:\t%s" % (title, p)) if i == 0 else "\t" + p)


def _labels(w, title, labels):
    _multiline(w, title, ["%s=%s" % (k, labels[k]) for k in sorted(labels or {})])


def _annotations(w, title, annotations):
    lines = []
    for k in sorted(annotations or {}):
        if k == "kubectl.kubernetes.io/last-applied-configuration":
            continue
        line = ("%s: %s" % (k, annotations[k])).replace("\n", "\\n")
        lines.append(line[:140] + "..." if len(line) > 140 else line)
    _multiline(w, title, lines)


def _header(w, obj, namespaced=True):
    m = _meta(obj)
    w(0, "Name:\t%s" % m.get("name", ""))
    if namespaced:
        w(0, "Namespace:\t%s" % m.get("namespace", ""))


def _tolerations(w, title, tolerations):
    lines = []
    for t in tolerations or []:
        s = t.get("key", "")
        if t.get("value"):
            s += "=" + t["value"]
        if t.get("effect"):
            s += ":" + t["effect"]
        if t.get("operator") == "Exists" and not t.get("value"):
            s += " op=Exists"
        if t.get("tolerationSeconds") is not None:
            s += " for %ds" % t["tolerationSeconds"]
        lines.append(s)
    _multiline(w, title, lines)


def describe_probe(probe):
    """kubectl's DescribeProbe: "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3"."""
    attrs = "delay=%ds timeout=%ds period=%ds #success=%d #failure=%d" % (
        probe.get("initialDelaySeconds") or 0,
        probe.get("timeoutSeconds") or 1,
        probe.get("periodSeconds") or 10,
        probe.get("successThreshold") or 1,
        probe.get("failureThreshold") or 3,
    )
    if probe.get("exec") is not None:
        return "exec [%s] %s" % (" ".join(probe["exec"].get("command") or []), attrs)
    if probe.get("httpGet") is not None:
        h = probe["httpGet"]
        host, port = h.get("host") or "", h.get("port")
        hostport = (
            ("[%s]:%s" % (host, port) if ":" in host else "%s:%s" % (host, port)) if port not in (None, "") else host
        )
        return "http-get %s://%s%s %s" % ((h.get("scheme") or "HTTP").lower(), hostport, h.get("path") or "", attrs)
    if probe.get("tcpSocket") is not None:
        t = probe["tcpSocket"]
        return "tcp-socket %s:%s %s" % (t.get("host") or "", t.get("port"), attrs)
    if probe.get("grpc") is not None:
        g = probe["grpc"]
        return "grpc <pod>:%s %s %s" % (g.get("port"), g.get("service") or "", attrs)
    return "unknown " + attrs


def _state(w, title, state):
    state = state or {}
    if state.get("running") is not None:
        w(2, "%s:\tRunning" % title)
        w(3, "Started:\t%s" % rfc1123z(state["running"].get("startedAt")))
    elif state.get("terminated") is not None:
        t = state["terminated"]
        w(2, "%s:\tTerminated" % title)
        if t.get("reason"):
            w(3, "Reason:\t%s" % t["reason"])
        if t.get("message"):
            w(3, "Message:\t%s" % t["message"])
        w(3, "Exit Code:\t%d" % (t.get("exitCode") or 0))
        if t.get("signal"):
            w(3, "Signal:\t%d" % t["signal"])
        w(3, "Started:\t%s" % rfc1123z(t.get("startedAt")))
        w(3, "Finished:\t%s" % rfc1123z(t.get("finishedAt")))
    else:
        w(2, "%s:\tWaiting" % title)
        if (state.get("waiting") or {}).get("reason"):
            w(3, "Reason:\t%s" % state["waiting"]["reason"])


def _env_value(e):
    if "valueFrom" not in e:
        return e.get("value", "")
    vf = e["valueFrom"] or {}
    if vf.get("fieldRef"):
        return "(%s:%s)" % (vf["fieldRef"].get("apiVersion", "v1"), vf["fieldRef"].get("fieldPath", ""))
    if vf.get("resourceFieldRef"):
        return "%s (%s)" % (vf["resourceFieldRef"].get("resource", ""), vf["resourceFieldRef"].get("containerName", ""))
    for src, what in (("configMapKeyRef", "of config map"), ("secretKeyRef", "in secret")):
        if vf.get(src):
            r = vf[src]
            return "<set to the key '%s' %s '%s'>  Optional: %s" % (
                r.get("key", ""),
                what,
                r.get("name", ""),
                str(bool(r.get("optional"))).lower(),
            )
    return ""


def _containers(w, title, containers, statuses, indent=""):
    by_name = {s.get("name"): s for s in statuses or []}
    w(0, "%s%s:" % (indent, title))
    for c in containers or []:
        st = by_name.get(c.get("name"))
        w(1, "%s%s:" % (indent, c.get("name", "")))
        if st is not None:
            w(2, "%sContainer ID:\t%s" % (indent, st.get("containerID", "")))
        w(2, "%sImage:\t%s" % (indent, c.get("image", "")))
        if st is not None:
            w(2, "%sImage ID:\t%s" % (indent, st.get("imageID", "")))
        ports = c.get("ports") or []
        ps = ",".join("%s/%s" % (p.get("containerPort"), p.get("protocol") or "TCP") for p in ports)
        hps = ",".join("%s/%s" % (p.get("hostPort") or 0, p.get("protocol") or "TCP") for p in ports)
        w(2, "%s%s:\t%s" % (indent, "Ports" if len(ports) > 1 else "Port", ps or "<none>"))
        w(2, "%s%s:\t%s" % (indent, "Host Ports" if len(ports) > 1 else "Host Port", hps or "<none>"))
        for key, label in (("command", "Command"), ("args", "Args")):
            if c.get(key):
                w(2, "%s%s:" % (indent, label))
                for arg in c[key]:
                    for part in str(arg).split("\n"):
                        w(3, indent + part)
        if st is not None:
            _state(w, indent + "State", st.get("state"))
            if ((st.get("lastState") or {}).get("terminated")) is not None:
                _state(w, indent + "Last State", st["lastState"])
            w(2, "%sReady:\t%s" % (indent, "True" if st.get("ready") else "False"))
            w(2, "%sRestart Count:\t%d" % (indent, st.get("restartCount") or 0))
        res = c.get("resources") or {}
        for key, label in (("limits", "Limits"), ("requests", "Requests")):
            if res.get(key):
                w(2, "%s%s:" % (indent, label))
                for name in sorted(res[key]):
                    w(3, "%s%s:\t%s" % (indent, name, res[key][name]))
        for key, label in (("livenessProbe", "Liveness"), ("readinessProbe", "Readiness"), ("startupProbe", "Startup")):
            if c.get(key) is not None:
                w(2, "%s%s:\t%s" % (indent, label, describe_probe(c[key])))
        env = c.get("env") or []
        w(2, "%sEnvironment:%s" % (indent, "" if env else "\t<none>"))
        for e in env:
            w(3, "%s%s:\t%s" % (indent, e.get("name", ""), _env_value(e)))
        mounts = sorted(c.get("volumeMounts") or [], key=lambda m: m.get("mountPath", ""))
        w(2, "%sMounts:%s" % (indent, "" if mounts else "\t<none>"))
        for m in mounts:
            flags = ["ro" if m.get("readOnly") else "rw"] + (['path="%s"' % m["subPath"]] if m.get("subPath") else [])
            w(3, "%s%s from %s (%s)" % (indent, m.get("mountPath", ""), m.get("name", ""), ",".join(flags)))


_VOLUME_TYPES = {
    "emptyDir": "EmptyDir (a temporary directory that shares a pod's lifetime)",
    "hostPath": "HostPath (bare host directory volume)",
    "configMap": "ConfigMap (a volume populated by a ConfigMap)",
    "secret": "Secret (a volume populated by a Secret)",
    "projected": "Projected (a volume that contains injected data from multiple sources)",
    "persistentVolumeClaim": "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
}


def _volumes(w, volumes, indent=""):
    if not volumes:
        w(0, "%sVolumes:\t<none>" % indent)
        return
    w(0, "%sVolumes:" % indent)
    for v in volumes:
        w(1, "%s%s:" % (indent, v.get("name", "")))
        for key, val in v.items():
            if key == "name":
                continue
            w(2, "%sType:\t%s" % (indent, _VOLUME_TYPES.get(key, key[:1].upper() + key[1:])))
            for fk, fv in sorted((val or {}).items()):
                if isinstance(fv, (str, int, bool)):
                    w(2, "%s%s:\t%s" % (indent, fk[:1].upper() + fk[1:], fv))


def _qos(pod):
    q = (pod.get("status") or {}).get("qosClass")
    if q:
        return q
    cs = (pod.get("spec") or {}).get("containers") or []
    reqs = [(c.get("resources") or {}) for c in cs]
    if not any(r.get("requests") or r.get("limits") for r in reqs):
        return "BestEffort"
    for r in reqs:
        lim = r.get("limits") or {}
        req = r.get("requests") or lim
        if not all(k in lim and req.get(k, lim[k]) == lim[k] for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def _controller(obj):
    for o in _meta(obj).get("ownerReferences") or []:
        if o.get("controller"):
            return "%s/%s" % (o.get("kind", ""), o.get("name", ""))
    return ""


def _events(w, events, now):
    if not events:
        w(0, "Events:\t<none>")
        return
    w.flush()

    def key(e):
        t = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
        return parse_time(t) or parse_time("1970-01-01T00:00:00Z")

    w(0, "Events:")
    w(1, "Type\tReason\tAge\tFrom\tMessage")
    w(1, "----\t------\t----\t----\t-------")
    for e in sorted(events, key=key):
        first = age(e.get("eventTime") or e.get("firstTimestamp") or e.get("lastTimestamp"), now)
        series = e.get("series") or {}
        if series:
            interval = "%s (x%d over %s)" % (age(series.get("lastObservedTime"), now), series.get("count") or 0, first)
        elif (e.get("count") or 0) > 1:
            interval = "%s (x%d over %s)" % (age(e.get("lastTimestamp"), now), e["count"], first)
        else:
            interval = first
        source = (
            (e.get("source") or {}).get("component")
            or e.get("reportingController")
            or e.get("reportingComponent")
            or ""
        )
        message = (e.get("message") or e.get("note") or "").strip().replace("\n", " ")
        w(1, "%s\t%s\t%s\t%s\t%s" % (e.get("type", ""), e.get("reason", ""), interval, source, message))


# ---------------------------------------------------------------- per kind


def _pod(w, pod, events, related, now):
    spec, status, m = pod.get("spec") or {}, pod.get("status") or {}, _meta(pod)
    _header(w, pod)
    if spec.get("priority") is not None:
        w(0, "Priority:\t%s" % spec["priority"])
    if spec.get("serviceAccountName"):
        w(0, "Service Account:\t%s" % spec["serviceAccountName"])
    node = spec.get("nodeName")
    w(0, "Node:\t%s" % (("%s/%s" % (node, status["hostIP"]) if status.get("hostIP") else node) if node else "<none>"))
    if status.get("startTime"):
        w(0, "Start Time:\t%s" % rfc1123z(status["startTime"]))
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    if m.get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        until = parse_time(m["deletionTimestamp"])
        now_ = now or datetime.now(UTC)
        now_ = now_ if now_.tzinfo else now_.replace(tzinfo=UTC)
        w(0, "Status:\tTerminating (lasts %s)" % (human_duration(until - now_) if until else "<unknown>"))
        if m.get("deletionGracePeriodSeconds") is not None:
            w(0, "Termination Grace Period:\t%ds" % m["deletionGracePeriodSeconds"])
    else:
        w(0, "Status:\t%s" % (status.get("phase") or ""))
    if status.get("reason"):
        w(0, "Reason:\t%s" % status["reason"])
    if status.get("message"):
        w(0, "Message:\t%s" % status["message"])
    w(0, "IP:\t%s" % (status.get("podIP") or ""))
    ips = status.get("podIPs") or ([{"ip": status["podIP"]}] if status.get("podIP") else [])
    if ips:
        w(0, "IPs:")
        for ip in ips:
            w(1, "IP:\t%s" % ip.get("ip", ""))
    else:
        w(0, "IPs:\t<none>")
    if _controller(pod):
        w(0, "Controlled By:\t%s" % _controller(pod))
    if status.get("nominatedNodeName"):
        w(0, "NominatedNodeName:\t%s" % status["nominatedNodeName"])
    if spec.get("initContainers"):
        _containers(w, "Init Containers", spec["initContainers"], status.get("initContainerStatuses"))
    _containers(w, "Containers", spec.get("containers"), status.get("containerStatuses") or [])
    if spec.get("readinessGates"):
        w(0, "Readiness Gates:")
        w(1, "Type\tStatus")
        for g in spec["readinessGates"]:
            c = _cond(status.get("conditions"), g.get("conditionType"))
            w(1, "%s \t%s " % (g.get("conditionType", ""), c.get("status") if c else "<none>"))
    if status.get("conditions"):
        w(0, "Conditions:")
        w(1, "Type\tStatus")
        for c in status["conditions"]:
            w(1, "%s \t%s " % (c.get("type", ""), c.get("status", "")))
    _volumes(w, spec.get("volumes"))
    w(0, "QoS Class:\t%s" % _qos(pod))
    _labels(w, "Node-Selectors", spec.get("nodeSelector"))
    _tolerations(w, "Tolerations", spec.get("tolerations"))
    _events(w, events, now)


def _service_endpoints(related, port, nports):
    eps = (related or {}).get("endpoints")
    if isinstance(eps, dict) and "subsets" in eps:  # an Endpoints object
        return format_endpoints(eps.get("subsets"), {port.get("name") or ""})
    if isinstance(eps, dict):  # {port name: ["ip:port", ...]}
        eps = eps.get(port.get("name") or "", [])
    eps = list(eps or [])
    target = port.get("targetPort", port.get("port"))
    if nports > 1 and isinstance(target, int):
        eps = [e for e in eps if str(e).rpartition(":")[2] == str(target)] or eps
    return list_with_more(eps, len(eps), empty="<none>")


def _service(w, svc, events, related, now):
    spec, status, m = svc.get("spec") or {}, svc.get("status") or {}, _meta(svc)
    _header(w, svc)
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w(0, "Selector:\t%s" % format_labels(spec.get("selector")))
    w(0, "Type:\t%s" % (spec.get("type") or "ClusterIP"))
    if spec.get("ipFamilyPolicy"):
        w(0, "IP Family Policy:\t%s" % spec["ipFamilyPolicy"])
    w(0, "IP Families:\t%s" % (",".join(spec.get("ipFamilies") or []) or "<none>"))
    w(0, "IP:\t%s" % (spec.get("clusterIP") or ""))
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    w(0, "IPs:\t%s" % (",".join(cluster_ips) or "<none>"))
    if spec.get("externalIPs"):
        w(0, "External IPs:\t%s" % ",".join(spec["externalIPs"]))
    if spec.get("loadBalancerIP"):
        w(0, "IP:\t%s" % spec["loadBalancerIP"])
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        w(0, "LoadBalancer Ingress:\t%s" % ", ".join(i.get("ip") or i.get("hostname") or "" for i in ingress))
    if spec.get("type") == "ExternalName":
        w(0, "External Name:\t%s" % spec.get("externalName", ""))
    ports = spec.get("ports") or []
    for p in ports:
        name, proto = p.get("name") or "<unset>", p.get("protocol") or "TCP"
        w(0, "Port:\t%s\t%s/%s" % (name, p.get("port"), proto))
        w(0, "TargetPort:\t%s/%s" % (p.get("targetPort", p.get("port")), proto))
        if p.get("nodePort"):
            w(0, "NodePort:\t%s\t%s/%s" % (name, p["nodePort"], proto))
        w(0, "Endpoints:\t%s" % _service_endpoints(related, p, len(ports)))
    w(0, "Session Affinity:\t%s" % (spec.get("sessionAffinity") or "None"))
    if spec.get("externalTrafficPolicy"):
        w(0, "External Traffic Policy:\t%s" % spec["externalTrafficPolicy"])
    if spec.get("internalTrafficPolicy"):
        w(0, "Internal Traffic Policy:\t%s" % spec["internalTrafficPolicy"])
    _events(w, events, now)


def _node(w, node, events, related, now):
    spec, status, m = node.get("spec") or {}, node.get("status") or {}, _meta(node)
    _header(w, node, namespaced=False)
    w(0, "Roles:\t%s" % (",".join(node_roles(node)) or "<none>"))
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w(0, "CreationTimestamp:\t%s" % rfc1123z(m.get("creationTimestamp")))
    _multiline(
        w,
        "Taints",
        [
            "%s%s:%s" % (t.get("key", ""), "=" + t["value"] if t.get("value") else "", t.get("effect", ""))
            for t in spec.get("taints") or []
        ],
    )
    w(0, "Unschedulable:\t%s" % ("true" if spec.get("unschedulable") else "false"))
    if status.get("conditions"):
        w(0, "Conditions:")
        w(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage")
        w(1, "----\t------\t-----------------\t------------------\t------\t-------")
        for c in status["conditions"]:
            w(
                1,
                "%s \t%s \t%s \t%s \t%s \t%s"
                % (
                    c.get("type", ""),
                    c.get("status", ""),
                    rfc1123z(c.get("lastHeartbeatTime")),
                    rfc1123z(c.get("lastTransitionTime")),
                    c.get("reason", ""),
                    c.get("message", ""),
                ),
            )
    w(0, "Addresses:")
    for a in status.get("addresses") or []:
        w(1, "%s:\t%s" % (a.get("type", ""), a.get("address", "")))
    for key, title in (("capacity", "Capacity"), ("allocatable", "Allocatable")):
        if status.get(key):
            w(0, "%s:" % title)
            for name in sorted(status[key]):
                w(1, "%s:\t%s" % (name, status[key][name]))
    info = status.get("nodeInfo") or {}
    if info:
        w(0, "System Info:")
        for key, title in (
            ("machineID", "Machine ID"),
            ("systemUUID", "System UUID"),
            ("bootID", "Boot ID"),
            ("kernelVersion", "Kernel Version"),
            ("osImage", "OS Image"),
            ("operatingSystem", "Operating System"),
            ("architecture", "Architecture"),
            ("containerRuntimeVersion", "Container Runtime Version"),
            ("kubeletVersion", "Kubelet Version"),
            ("kubeProxyVersion", "Kube-Proxy Version"),
        ):
            if info.get(key):
                w(1, "%s:\t%s" % (title, info[key]))
    w(0, "PodCIDR:\t%s" % (spec.get("podCIDR") or "<none>"))
    w(0, "PodCIDRs:\t%s" % (",".join(spec.get("podCIDRs") or []) or spec.get("podCIDR") or "<none>"))
    if spec.get("providerID"):
        w(0, "ProviderID:\t%s" % spec["providerID"])
    if related is not None and "pods" in related:
        pods = [
            p for p in related.get("pods") or [] if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        w(0, "Non-terminated Pods:\t(%d in total)" % len(pods))
        if pods:
            w(1, "Namespace\tName\tIP\tAge")
            w(1, "---------\t----\t--\t---")
            for p in pods:
                w(
                    1,
                    "%s\t%s\t%s\t%s"
                    % (
                        _meta(p).get("namespace", ""),
                        _meta(p).get("name", ""),
                        (p.get("status") or {}).get("podIP") or "<none>",
                        age(_meta(p).get("creationTimestamp"), now),
                    ),
                )
    _events(w, events, now)


def _peer(w, peer, indent):
    if peer.get("podSelector") is not None and peer.get("namespaceSelector") is not None:
        w(1, "%sNamespaceSelector: %s" % (indent, format_selector(peer["namespaceSelector"])))
        w(1, "%sPodSelector: %s" % (indent, format_selector(peer["podSelector"])))
    elif peer.get("podSelector") is not None:
        w(1, "%sPodSelector: %s" % (indent, format_selector(peer["podSelector"])))
    elif peer.get("namespaceSelector") is not None:
        w(1, "%sNamespaceSelector: %s" % (indent, format_selector(peer["namespaceSelector"])))
    elif peer.get("ipBlock") is not None:
        w(1, "%sIPBlock:" % indent)
        w(2, "%sCIDR: %s" % (indent, peer["ipBlock"].get("cidr", "")))
        w(2, "%sExcept: %s" % (indent, ", ".join(peer["ipBlock"].get("except") or [])))


def _netpol_rules(w, rules, direction):
    indent = "    "
    peers_key, word = ("from", "From") if direction == "ingress" else ("to", "To")
    if not rules:
        w(0, "%s<none> (Selected pods are isolated for %s connectivity)" % (indent, direction))
        return
    for i, rule in enumerate(rules):
        if not rule.get("ports"):
            w(0, indent + "To Port: <any> (traffic allowed to all ports)")
        for p in rule.get("ports") or []:
            port = p.get("port")
            port = "<any>" if port is None else ("%s-%s" % (port, p["endPort"]) if p.get("endPort") else port)
            w(0, "%sTo Port: %s/%s" % (indent, port, p.get("protocol") or "TCP"))
        if not rule.get(peers_key):
            w(
                0,
                indent
                + (
                    "From: <any> (traffic not restricted by source)"
                    if direction == "ingress"
                    else "To: <any> (traffic not restricted by destination)"
                ),
            )
        for peer in rule.get(peers_key) or []:
            w(0, "%s%s:" % (indent, word))
            _peer(w, peer, indent)
        if i != len(rules) - 1:
            w(0, indent + "----------")


def _netpol(w, np, events, related, now):
    spec, m = np.get("spec") or {}, _meta(np)
    _header(w, np)
    created = parse_time(m.get("creationTimestamp"))
    w(0, "Created on:\t%s" % (created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC") if created else "<unknown>"))
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w(0, "Spec:")
    sel = spec.get("podSelector") or {}
    if not sel.get("matchLabels") and not sel.get("matchExpressions"):
        w(1, "PodSelector:     <none> (Allowing the specific traffic to all pods in this namespace)")
    else:
        w(1, "PodSelector:     %s" % format_selector(sel))
    types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else []))
    for direction, key in (("ingress", "Ingress"), ("egress", "Egress")):
        if key in types:
            w(1, "Allowing %s traffic:" % direction)
            _netpol_rules(w, spec.get(direction), direction)
        else:
            w(1, "Not affecting %s traffic" % direction)
    w(1, "Policy Types: %s" % ", ".join(types))
    if related is not None and "pods" in related:
        pods = related.get("pods") or []
        w.flush()
        if not pods:
            w(0, "Selected pods:\t<none>")
        else:
            w(0, "Selected pods:")
            for p in pods:
                if isinstance(p, str):
                    w(1, p)
                else:
                    st, sp = p.get("status") or {}, p.get("spec") or {}
                    w(
                        1,
                        "%s\t%s\t%s"
                        % (_meta(p).get("name", ""), st.get("podIP") or "<none>", sp.get("nodeName") or "<none>"),
                    )


def _pod_template(w, template):
    template = template or {}
    spec, m = template.get("spec") or {}, template.get("metadata") or {}
    w(0, "Pod Template:")
    _labels(w, "  Labels", m.get("labels"))
    if m.get("annotations"):
        _annotations(w, "  Annotations", m["annotations"])
    if spec.get("serviceAccountName"):
        w(1, "Service Account:\t%s" % spec["serviceAccountName"])
    if spec.get("initContainers"):
        _containers(w, "Init Containers", spec["initContainers"], None, indent="  ")
    _containers(w, "Containers", spec.get("containers"), None, indent="  ")
    _volumes(w, spec.get("volumes"), indent="  ")
    _labels(w, "  Node-Selectors", spec.get("nodeSelector"))
    _tolerations(w, "  Tolerations", spec.get("tolerations"))


def _rs_list(rss):
    return (
        ", ".join(
            "%s (%d/%d replicas created)"
            % (
                _meta(r).get("name", ""),
                (r.get("status") or {}).get("replicas") or 0,
                1 if (r.get("spec") or {}).get("replicas") is None else r["spec"]["replicas"],
            )
            for r in rss
        )
        or "<none>"
    )


def _strip_hash(template):
    """The template without pod-template-hash, and without null / {} / []
    fields (as Go's Semantic.DeepEqual compares them)."""

    def pruned(v):
        if isinstance(v, dict):
            out = {k: pruned(x) for k, x in v.items()}
            return {k: x for k, x in out.items() if x is not None and x != {} and x != []}
        if isinstance(v, list):
            return [pruned(x) for x in v]
        return v

    t = dict(template or {})
    meta = dict(t.get("metadata") or {})
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k != "pod-template-hash"}
    t["metadata"] = meta
    return pruned(t)


def _new_rs(d, rss):
    """The Deployment's new ReplicaSet: the one its template equals (ignoring
    the hash), the oldest first, as deploymentutil.FindNewReplicaSet."""
    want = _strip_hash((d.get("spec") or {}).get("template"))
    rss = sorted(rss, key=lambda r: (str(_meta(r).get("creationTimestamp") or ""), _meta(r).get("name", "")))
    return [r for r in rss if _strip_hash((r.get("spec") or {}).get("template")) == want][:1]


def _deployment(w, d, events, related, now):
    spec, status, m = d.get("spec") or {}, d.get("status") or {}, _meta(d)
    _header(w, d)
    w(0, "CreationTimestamp:\t%s" % rfc1123z(m.get("creationTimestamp")))
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w(0, "Selector:\t%s" % format_selector(spec.get("selector"), ""))
    replicas = 1 if spec.get("replicas") is None else spec["replicas"]
    w(
        0,
        "Replicas:\t%d desired | %d updated | %d total | %d available | %d unavailable"
        % (
            replicas,
            status.get("updatedReplicas") or 0,
            status.get("replicas") or 0,
            status.get("availableReplicas") or 0,
            status.get("unavailableReplicas") or 0,
        ),
    )
    strategy = spec.get("strategy") or {}
    w(0, "StrategyType:\t%s" % (strategy.get("type") or "RollingUpdate"))
    w(0, "MinReadySeconds:\t%d" % (spec.get("minReadySeconds") or 0))
    if (strategy.get("type") or "RollingUpdate") == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        w(
            0,
            "RollingUpdateStrategy:\t%s max unavailable, %s max surge"
            % (ru.get("maxUnavailable", "25%"), ru.get("maxSurge", "25%")),
        )
    _pod_template(w, spec.get("template"))
    if status.get("conditions"):
        w(0, "Conditions:")
        w(1, "Type\tStatus\tReason")
        w(1, "----\t------\t------")
        for c in status["conditions"]:
            w(1, "%s \t%s\t%s" % (c.get("type", ""), c.get("status", ""), c.get("reason", "")))
    if related is not None and "replicasets" in related:
        uid = m.get("uid")
        rss = [  # the ReplicaSets this Deployment controls (all of them when the caller did not say)
            r
            for r in related.get("replicasets") or []
            if not uid
            or any(o.get("controller") and o.get("uid") == uid for o in _meta(r).get("ownerReferences") or [])
        ]
        new = _new_rs(d, rss)
        old = [r for r in rss if r not in new]  # kubectl 1.32 lists every old one, those at 0 too
        w(0, "OldReplicaSets:\t%s" % _rs_list(old))
        w(0, "NewReplicaSet:\t%s" % _rs_list(new))
    _events(w, events, now)


def _owned(rs, pods):
    """The pods among `pods` this ReplicaSet controls: by ownerReference, or
    (for pods without owners) by namespace and selector.matchLabels."""
    m, sel = _meta(rs), ((rs.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    out = []
    for p in pods:
        pm = _meta(p)
        refs = [o for o in pm.get("ownerReferences") or [] if o.get("controller")]
        if refs:
            if any(
                o.get("kind") == "ReplicaSet"
                and (o.get("uid") == m.get("uid") if o.get("uid") and m.get("uid") else o.get("name") == m.get("name"))
                for o in refs
            ):
                out.append(p)
        elif (
            sel
            and pm.get("namespace") == m.get("namespace")
            and all((pm.get("labels") or {}).get(k) == v for k, v in sel.items())
        ):
            out.append(p)
    return out


def _replicaset(w, rs, events, related, now):
    spec, status, m = rs.get("spec") or {}, rs.get("status") or {}, _meta(rs)
    _header(w, rs)
    w(0, "Selector:\t%s" % format_selector(spec.get("selector"), ""))
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    if _controller(rs):
        w(0, "Controlled By:\t%s" % _controller(rs))
    w(
        0,
        "Replicas:\t%d current / %d desired"
        % (status.get("replicas") or 0, 1 if spec.get("replicas") is None else spec["replicas"]),
    )
    if related is not None and "pods" in related:
        phases = [(p.get("status") or {}).get("phase") for p in _owned(rs, related.get("pods") or [])]
        w(
            0,
            "Pods Status:\t%d Running / %d Waiting / %d Succeeded / %d Failed"
            % tuple(phases.count(ph) for ph in ("Running", "Pending", "Succeeded", "Failed")),
        )
    _pod_template(w, spec.get("template"))
    _events(w, events, now)


def _endpointslice(w, es, events, related, now):
    m = _meta(es)
    _header(w, es)
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w(0, "AddressType:\t%s" % es.get("addressType", ""))
    ports = es.get("ports") or []
    if not ports:
        w(0, "Ports:\t<unset>")
    else:
        w(0, "Ports:")
        w(1, "Name\tPort\tProtocol")
        w(1, "----\t----\t--------")
        for p in ports:
            w(
                1,
                "%s\t%s\t%s"
                % (
                    p.get("name") or "<unset>",
                    "<unset>" if p.get("port") is None else p["port"],
                    p.get("protocol") or "TCP",
                ),
            )
    eps = es.get("endpoints") or []
    w(0, "Endpoints:%s" % ("" if eps else "\t<none>"))

    def unset(v):
        return "<unset>" if v in (None, "") else v

    for e in eps:
        w(1, "- Addresses:\t%s" % ",".join(e.get("addresses") or []))
        w(2, "Conditions:")
        for k in ("ready", "serving", "terminating"):
            v = (e.get("conditions") or {}).get(k)
            w(3, "%s:\t%s" % (k.capitalize(), "<unset>" if v is None else str(v).lower()))
        w(2, "Hostname:\t%s" % unset(e.get("hostname")))
        ref = e.get("targetRef")
        w(2, "TargetRef:\t%s" % ("%s/%s" % (ref.get("kind", ""), ref.get("name", "")) if ref else "<unset>"))
        w(2, "NodeName:\t%s" % unset(e.get("nodeName")))
        w(2, "Zone:\t%s" % unset(e.get("zone")))
    _events(w, events, now)


def _endpoints(w, ep, events, related, now):
    m = _meta(ep)
    _header(w, ep)
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w(0, "Subsets:")
    for ss in ep.get("subsets") or []:
        w(1, "Addresses:\t%s" % (",".join(a.get("ip", "") for a in ss.get("addresses") or []) or "<none>"))
        w(
            1,
            "NotReadyAddresses:\t%s"
            % (",".join(a.get("ip", "") for a in ss.get("notReadyAddresses") or []) or "<none>"),
        )
        if ss.get("ports"):
            w(1, "Ports:")
            w(2, "Name\tPort\tProtocol")
            w(2, "----\t----\t--------")
            for p in ss["ports"]:
                w(2, "%s\t%s\t%s" % (p.get("name") or "<unset>", p.get("port"), p.get("protocol") or "TCP"))
        w(0, "")
    _events(w, events, now)


def _namespace(w, ns, events, related, now):
    m = _meta(ns)
    _header(w, ns, namespaced=False)
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w(0, "Status:\t%s" % ((ns.get("status") or {}).get("phase") or "Active"))
    w(0, "")
    w(0, "No resource quota.")
    w(0, "")
    w(0, "No LimitRange resource.")


def _generic(w, obj, events, related, now):
    m = _meta(obj)
    _header(w, obj, namespaced=bool(m.get("namespace")))
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w(0, "API Version:\t%s" % obj.get("apiVersion", ""))
    w(0, "Kind:\t%s" % obj.get("kind", ""))
    if events is not None:
        _events(w, events, now)


_DESCRIBERS = {
    "Pod": _pod,
    "Service": _service,
    "Node": _node,
    "NetworkPolicy": _netpol,
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "EndpointSlice": _endpointslice,
    "Endpoints": _endpoints,
    "Namespace": _namespace,
}


def render_describe(obj, events=None, related=None, now=None):
    """`kubectl describe` text for `obj`, without a trailing newline. events:
    core/v1 Event dicts about it (None or [] -> "Events: <none>"); related:
    see the module docstring; now: clock for ages (datetime, None = now)."""
    w = _Out()
    describer = _DESCRIBERS.get(obj.get("kind"))
    if describer is None and obj.get("kind") in ("Ingress", "HTTPRoute"):
        from podnet.cli.describe_http import DESCRIBERS  # it builds on this module's helpers

        describer = DESCRIBERS[obj["kind"]]
    (describer or _generic)(w, obj, events, related, now)
    return w.text()
