"""Cell values for `kubectl get` columns, computed from plain Kubernetes
objects (dicts as the API stores them). Pure: no I/O; the clock is a
parameter.

One home for what kube-apiserver's printers compute
(pkg/printers/internalversion/printers.go and the apimachinery helpers it
calls), so the server's Table output (podnet.apiserver.table) and the CLI
(printers, describe) can share it instead of each keeping a copy. Where a function follows a
Go function, its docstring names it; a deliberate difference says why.
"""

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from podnet.api.types import Obj


def meta(o: Obj) -> Obj:
    return o.get("metadata") or {}


def cond(conds: list[Obj] | None, ctype: str) -> Obj | None:
    """The first condition of type `ctype`, as Go's loops over .Conditions find it."""
    for c in conds or []:
        if c.get("type") == ctype:
            return c
    return None


# ---------------------------------------------------------------- time


def parse_time(ts: object) -> datetime | None:
    """RFC3339 string (or datetime) -> aware UTC datetime; None if absent or unparsable."""
    if ts is None or ts == "":
        return None
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    try:
        t = datetime.fromisoformat(str(ts).replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def human_duration(d: timedelta) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration for a timedelta."""
    seconds = int(d.total_seconds())  # truncates toward zero, as Go's int(d.Seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = int(d // timedelta(minutes=1))
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = int(d // timedelta(hours=1))
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: object, now: datetime | None = None) -> str:
    """translateTimestampSince: human duration since `timestamp` (RFC3339
    string or datetime), "<unknown>" when there is none. `now`: aware or
    naive-UTC datetime, None for the current time."""
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration(_now(now) - t)


# ---------------------------------------------------------------- labels and selectors


def format_labels(labels: dict[str, str] | None) -> str:
    """labels.FormatLabels: "a=1,b=2" sorted by key, "<none>" when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_string(selector: Obj | None) -> str | None:
    """metav1.LabelSelectorAsSelector(sel).String(): requirements sorted by
    key, "k=v", "k in (a,b)", "k notin (a)", "k", "!k"; "" for nil or {};
    None where Go returns an error (an unknown operator)."""
    reqs: list[tuple[str, str]] = []
    for k, v in ((selector or {}).get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for e in (selector or {}).get("matchExpressions") or []:
        k, op, vals = e.get("key", ""), e.get("operator", ""), sorted(e.get("values") or [])
        if op == "In":
            reqs.append((k, f"{k} in ({','.join(vals)})"))
        elif op == "NotIn":
            reqs.append((k, f"{k} notin ({','.join(vals)})"))
        elif op == "Exists":
            reqs.append((k, k))
        elif op == "DoesNotExist":
            reqs.append((k, "!" + k))
        else:
            return None
    return ",".join(r for _, r in sorted(reqs, key=lambda kv: kv[0]))


def format_selector(selector: Obj | None, empty: str = "<none>") -> str:
    """metav1.FormatLabelSelector: selector_string, `empty` for an empty
    selector, "<error>" for one Go cannot parse."""
    s = selector_string(selector)
    if s is None:
        return "<error>"
    return s or empty


# ---------------------------------------------------------------- lists and endpoints


def list_with_more(items: list[str], total: int, limit: int = 3, empty: str = "<unset>") -> str:
    """listWithMoreString: the first `limit` of `total` items, then " + N more..."."""
    ret = ",".join(items[:limit])
    if total > limit:
        return f"{ret} + {total - limit} more..."
    return ret or empty


def _hostport(ip: str, port: object) -> str:
    """net.JoinHostPort."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def format_endpoints(subsets: list[Obj] | None, port_names: set[str] | None = None) -> str:
    """formatEndpoints over Endpoints.subsets: ready "ip:port" pairs (only
    ports named in `port_names` when given), the first 3 then " + N more...".
    "<none>" only when there are no subsets; subsets without a ready address
    give "", exactly as kube-apiserver prints them."""
    if not subsets:
        return "<none>"
    items: list[str] = []
    count = 0
    for ss in subsets:
        addrs = [str(a.get("ip", "")) for a in ss.get("addresses") or []]
        ports = ss.get("ports") or []
        if not ports:  # headless services may have no ports
            count += len(addrs)
            items += addrs
            continue
        for p in ports:
            if port_names is None or (p.get("name") or "") in port_names:
                count += len(addrs)
                items += [_hostport(ip, p.get("port")) for ip in addrs]
    return list_with_more(items, count, empty="")


# ---------------------------------------------------------------- services


def service_ports(ports: list[Obj] | None) -> str:
    """makePortString: "80/TCP", "80:30080/TCP", joined by ","."""
    out = []
    for p in ports or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            out.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            out.append(f"{p.get('port')}/{proto}")
    return ",".join(out)


def _lb_ingress(status: Obj | None, wide: bool) -> str:
    """loadBalancerStatusStringer: sorted unique ingress IPs (or hostnames),
    clipped to 16 characters unless wide."""
    ingress = (((status or {}).get("loadBalancer") or {}).get("ingress")) or []
    ips = sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")})
    r = ",".join(ips)
    if not wide and len(r) > 16:
        r = r[:13] + "..."
    return r


def service_external_ip(svc: Obj, wide: bool = True) -> str:
    """getServiceExternalIP. kube-apiserver always builds Tables with
    Wide=true (pkg/printers/storage), so the server never clips; `wide`
    stays for callers that print client-side."""
    spec = svc.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if stype == "LoadBalancer":
        lb = _lb_ingress(svc.get("status"), wide)
        return ",".join((lb.split(",") if lb else []) + external) or "<pending>"
    if stype == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


# ---------------------------------------------------------------- nodes

_ROLE_PREFIX = "node-role.kubernetes.io/"


def node_roles(node: Obj) -> list[str]:
    """findNodeRoles: node-role.kubernetes.io/<role> keys and kubernetes.io/role values, sorted."""
    roles = set()
    for k, v in (meta(node).get("labels") or {}).items():
        if k.startswith(_ROLE_PREFIX) and k[len(_ROLE_PREFIX) :]:
            roles.add(k[len(_ROLE_PREFIX) :])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return sorted(roles)


def node_status(node: Obj) -> str:
    """printNode's STATUS: "Ready" / "NotReady" / "Unknown" (+ ",SchedulingDisabled")."""
    ready = cond((node.get("status") or {}).get("conditions"), "Ready")
    st = ["Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")]
    if (node.get("spec") or {}).get("unschedulable"):
        st.append("SchedulingDisabled")
    return ",".join(st)


def node_address(node: Obj, atype: str) -> str:
    """getNodeInternalIP / getNodeExternalIP: the first address of that type, "<none>" without one."""
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == atype:
            return str(a.get("address") or "<none>")
    return "<none>"


def node_routing(node: Obj) -> str:
    """podnet's own column: the routing backend the node's agent reports,
    with BGP sessions ("bgp node2=Established,...")."""
    ann = meta(node).get("annotations") or {}
    mode = ann.get("podnet.io/backend-type")
    if not mode:
        return "<none>"
    sessions = ann.get("podnet.io/bgp-sessions")
    return f"{mode} {sessions}" if mode == "bgp" and sessions else str(mode)


def node_encryption(node: Obj, now: datetime | None = None) -> str:
    """podnet's own column: the WireGuard implementation the node's agent
    reports ("wireguard-go", "kernel"), with the age of each peer's latest
    handshake ("wireguard-go node2=5s,node3=never"); "<none>" without."""
    ann = meta(node).get("annotations") or {}
    impl = ann.get("podnet.io/wireguard-implementation")
    if not impl:
        return "<none>"
    ages = []
    for item in str(ann.get("podnet.io/wireguard-handshakes") or "").split(","):
        peer, _, when = item.partition("=")
        if not peer:
            continue
        try:
            t = int(when)
        except ValueError:
            t = 0
        ago = human_duration(_now(now) - datetime.fromtimestamp(t, UTC)) if t > 0 else "never"
        ages.append(f"{peer}={ago}")
    return f"{impl} {','.join(ages)}" if ages else str(impl)


# ---------------------------------------------------------------- workloads


def containers_images(template: Obj | None) -> tuple[str, str]:
    """layoutContainerCells over a pod template: ("web,side", "nginx,busybox")."""
    cs = ((template or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


# ---------------------------------------------------------------- pods


class PodSummary(NamedTuple):
    """What printPod computes for READY, STATUS and RESTARTS."""

    ready: int
    total: int
    reason: str
    restarts: int
    last_restart: datetime | None

    def restarts_cell(self, now: datetime | None = None) -> str:
        """kubectl >= 1.22: "2 (3m ago)" once a container has restarted and its last exit is known."""
        if self.restarts and self.last_restart is not None:
            return f"{self.restarts} ({age(self.last_restart, now)} ago)"
        return str(self.restarts)


def _finished_at(cs: Obj) -> datetime | None:
    return parse_time((((cs.get("lastState") or {}).get("terminated")) or {}).get("finishedAt"))


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b > a) else a


def pod_summary(pod: Obj) -> PodSummary:
    """printPod: ready/total containers (restartable init containers, i.e.
    sidecars, count), the STATUS reason, restarts and the last restart."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    conditions = status.get("conditions")
    phase = status.get("phase") or "Pending"
    reason = status.get("reason") or phase
    for c in conditions or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    containers = spec.get("containers")
    cstatuses = status.get("containerStatuses") or []
    # Go reads len(spec.containers); a spec-less object (never valid) falls back to its statuses.
    total = len(containers) if containers is not None else len(cstatuses)
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}

    def restartable(name: object) -> bool:
        return (init_specs.get(name) or {}).get("restartPolicy") == "Always"

    total += sum(1 for n in init_specs if restartable(n))
    ready = restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    sidecar_last: datetime | None = None

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount") or 0
        last_restart = _later(last_restart, _finished_at(cs))
        if restartable(cs.get("name")):
            sidecar_restarts += cs.get("restartCount") or 0
            sidecar_last = _later(sidecar_last, _finished_at(cs))
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term is not None and (term.get("exitCode") or 0) == 0:
            continue
        if restartable(cs.get("name")) and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if term is not None:
            if term.get("reason"):
                reason = "Init:" + term["reason"]
            elif term.get("signal"):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{term.get('exitCode') or 0}"
        elif wait is not None and wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs) or len(init_statuses)}"
        initializing = True
        break

    initialized = (cond(conditions, "Initialized") or {}).get("status") == "True"
    if not initializing or initialized:
        restarts, last_restart = sidecar_restarts, sidecar_last
        has_running = False
        for cs in reversed(cstatuses):  # Go walks them backwards: the first container's reason wins
            restarts += cs.get("restartCount") or 0
            last_restart = _later(last_restart, _finished_at(cs))
            state = cs.get("state") or {}
            wait, term = state.get("waiting"), state.get("terminated")
            if wait is not None and wait.get("reason"):
                reason = wait["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                signal = term.get("signal")
                reason = f"Signal:{signal}" if signal else f"ExitCode:{term.get('exitCode') or 0}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = cond(conditions, "Ready")
            reason = "Running" if ready_cond and ready_cond.get("status") == "True" else "NotReady"

    if meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return PodSummary(ready, total, reason, restarts, last_restart)
