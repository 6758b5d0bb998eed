"""Validation and defaults of pod specs and of the workloads that template them
(Deployment, ReplicaSet). Only what podnet uses is checked; other fields are
kept as they are."""

from podnet.api import support
from podnet.api.downward import check_field_path
from podnet.api.fields import (
    check_int,
    check_port_or_name,
    ip_error,
    is_int,
    join,
    need_map,
    opt_bool,
    opt_enum,
    opt_int,
    opt_map,
    opt_maps,
    opt_str,
    protocol,
    shown,
    str_list,
    str_map,
)
from podnet.api.meta import dns_label, dns_subdomain, fail, iana_svc_name, quote_hint
from podnet.api.selectors import check_selector, format_labels, format_selector, matches
from podnet.api.types import Obj

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "Default", "None", "ClusterFirstWithHostNet")
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
HANDLERS = ("httpGet", "tcpSocket", "exec")
# Kubernetes' SetDefaults_Probe: a missing or 0 value gets these.
PROBE_DEFAULTS = (
    ("initialDelaySeconds", 0),
    ("timeoutSeconds", 1),
    ("periodSeconds", 10),
    ("successThreshold", 1),
    ("failureThreshold", 3),
)


def _probe_port(h: Obj, base: str, port_names: set[str]) -> None:
    p = join(base, "port")
    if h.get("port") is None:
        fail(p, "required")
    port = check_port_or_name(h["port"], p)
    if isinstance(port, str) and port not in port_names:
        fail(
            p,
            "no port named %s in this container's ports (named: %s)"
            % (shown(port), ", ".join(sorted(port_names)) or "none"),
        )


def probe(pr: object, path: str, which: str, port_names: set[str]) -> Obj:
    pr = need_map(pr, path)
    support.check(pr, path, "Probe")
    present = [h for h in HANDLERS + ("grpc",) if pr.get(h) is not None]
    if len(present) != 1:
        fail(
            path,
            "must set exactly one of %s%s" % (", ".join(HANDLERS), " (has %s)" % ", ".join(present) if present else ""),
        )
    h = present[0]
    if h == "grpc":
        fail(join(path, "grpc"), "not supported by podnet: use httpGet, tcpSocket or exec")
    hp = join(path, h)
    handler = opt_map(pr, h, path, required=True)  # present: never None
    _handler(h, handler, hp, port_names)
    for key, default in PROBE_DEFAULTS:
        if not opt_int(pr, key, path, lo=0):
            pr[key] = default
    if which != "readinessProbe" and pr["successThreshold"] != 1:
        fail(join(path, "successThreshold"), "must be 1 for a %s" % which)
    grace = opt_int(pr, "terminationGracePeriodSeconds", path, lo=1)
    if grace is not None and which == "readinessProbe":
        fail(join(path, "terminationGracePeriodSeconds"), "may not be set for a readinessProbe")
    return pr


def _handler(h: str, handler: Obj, hp: str, port_names: set[str]) -> None:
    """One probe or lifecycle handler's fields (httpGet, tcpSocket, exec)."""
    if h == "httpGet":
        support.check(handler, hp, "HTTPGetAction")
        opt_str(handler, "path", hp, default="/", check=lambda v: None if v.startswith("/") else "must start with '/'")
        _probe_port(handler, hp, port_names)
        opt_str(handler, "host", hp)
        opt_enum(handler, "scheme", hp, ("HTTP", "HTTPS"), default="HTTP")
        for hdr, p in opt_maps(handler, "httpHeaders", hp):
            opt_str(hdr, "name", p, required=True, nonempty=True)
            opt_str(hdr, "value", p, default="")
    elif h == "tcpSocket":
        _probe_port(handler, hp, port_names)
        opt_str(handler, "host", hp)
    else:
        str_list(handler, "command", hp, required=True, nonempty=True)


def _lifecycle(lc: object, path: str, port_names: set[str]) -> None:
    """lifecycle.preStop: exactly one of exec, httpGet, sleep (seconds >= 0)."""
    lc = need_map(lc, path)
    support.check(lc, path, "Lifecycle")
    pre = opt_map(lc, "preStop", path)
    if pre is None:
        return
    pp = join(path, "preStop")
    support.check(pre, pp, "LifecycleHandler")
    present = [h for h in ("exec", "httpGet", "sleep") if pre.get(h) is not None]
    if len(present) != 1:
        fail(
            pp, "must set exactly one of exec, httpGet, sleep%s" % (" (has %s)" % ", ".join(present) if present else "")
        )
    h = present[0]
    handler = opt_map(pre, h, pp, required=True)
    if h == "sleep":
        opt_int(handler, "seconds", join(pp, "sleep"), lo=0, required=True)
    else:
        _handler(h, handler, join(pp, h), port_names)


def _env(c: Obj, path: str) -> None:
    for e, p in opt_maps(c, "env", path):
        support.check(e, p, "EnvVar")
        opt_str(e, "name", p, required=True, nonempty=True)
        if e.get("value") is not None and not isinstance(e["value"], str):
            fail(join(p, "value"), "must be a string%s, got %s" % (quote_hint(e["value"]), shown(e["value"])))
        src = opt_map(e, "valueFrom", p)
        if src is None:
            continue
        sp = join(p, "valueFrom")
        if e.get("value"):
            fail(sp, "may not be set when value is not empty")
        support.check(src, sp, "EnvVarSource")
        ref = opt_map(src, "fieldRef", sp)
        if ref is None:
            fail(sp, "must set fieldRef (the only source podnet has)")
        rp = join(sp, "fieldRef")
        support.check(ref, rp, "ObjectFieldSelector")
        opt_str(ref, "apiVersion", rp, default="v1", check=lambda v: None if v == "v1" else "must be v1")
        check_field_path(ref.get("fieldPath"), join(rp, "fieldPath"))


def _pull_policy(v: str) -> str | None:
    return None if v in ("Always", "IfNotPresent", "Never") else "must be Always, IfNotPresent or Never"


def container(c: object, path: str, names: set[str], host_network: bool, init: bool = False) -> Obj:
    c = need_map(c, path)
    support.check(c, path, "Container")
    name = opt_str(c, "name", path, required=True, check=dns_label)
    if name in names:
        fail(join(path, "name"), "duplicate container name %s" % shown(name))
    names.add(name)
    image = opt_str(c, "image", path)
    command = str_list(c, "command", path)
    if not image and not command:
        fail(path, "needs command or image")
    str_list(c, "args", path)
    opt_str(c, "imagePullPolicy", path, check=_pull_policy)
    opt_str(c, "workingDir", path, check=lambda v: None if v.startswith("/") else "must be an absolute path")
    _env(c, path)
    port_names: set[str] = set()
    for port, p in opt_maps(c, "ports", path):
        support.check(port, p, "ContainerPort")
        cp = opt_int(port, "containerPort", p, 1, 65535, required=True)
        protocol(port, p)
        pname = opt_str(port, "name", p, check=iana_svc_name)
        if pname is not None:
            if pname in port_names:
                fail(join(p, "name"), "duplicate port name %s" % shown(pname))
            port_names.add(pname)
        hp = opt_int(port, "hostPort", p, 1, 65535)
        opt_str(port, "hostIP", p, check=ip_error)
        if host_network and hp is not None and hp != cp:
            fail(join(p, "hostPort"), "must equal containerPort (%d) with hostNetwork" % cp)
    for which in PROBES:
        if c.get(which) is not None:
            if init:
                fail(join(path, which), "not allowed in init containers")
            probe(c[which], join(path, which), which, port_names)
    if c.get("lifecycle") is not None:
        if init:
            fail(join(path, "lifecycle"), "not allowed in init containers")
        _lifecycle(c["lifecycle"], join(path, "lifecycle"), port_names)
    return c


def pod_spec(spec: object, path: str, owner: str = "") -> Obj:
    """Validate and default a pod spec in place. owner: 'Deployment' or
    'ReplicaSet' for a template (restartPolicy must then be Always)."""
    spec = need_map(spec, path)
    support.check(spec, path, "PodSpec")
    host_network = opt_bool(spec, "hostNetwork", path) or False
    names: set[str] = set()
    for c, p in opt_maps(spec, "initContainers", path):
        container(c, p, names, host_network, init=True)
    for c, p in opt_maps(spec, "containers", path, required=True, nonempty=True):
        container(c, p, names, host_network)
    rp = opt_enum(spec, "restartPolicy", path, RESTART_POLICIES, default="Always")
    if owner and rp != "Always":
        fail(join(path, "restartPolicy"), "must be Always in a %s template, got %s" % (owner, shown(rp)))
    opt_str(spec, "nodeName", path, check=dns_subdomain)
    str_map(spec, "nodeSelector", path)
    opt_str(spec, "hostname", path, check=dns_label)
    opt_str(spec, "subdomain", path, check=dns_label)
    policy = opt_enum(spec, "dnsPolicy", path, DNS_POLICIES, default="ClusterFirst")
    dc = opt_map(spec, "dnsConfig", path)
    if dc is not None:
        dp = join(path, "dnsConfig")
        ns = str_list(dc, "nameservers", dp, check=ip_error) or []
        if len(ns) > 3:
            fail(join(dp, "nameservers"), "at most 3 nameservers, got %d" % len(ns))
        searches = str_list(dc, "searches", dp) or []
        if len(searches) > 32:
            fail(join(dp, "searches"), "at most 32 search domains, got %d" % len(searches))
        for o, p in opt_maps(dc, "options", dp):
            opt_str(o, "name", p, required=True, nonempty=True)
            opt_str(o, "value", p)
    if policy == "None" and not (dc and dc.get("nameservers")):
        fail(join(path, "dnsConfig"), "must list nameservers when dnsPolicy is None")
    for a, p in opt_maps(spec, "hostAliases", path):
        opt_str(a, "ip", p, required=True, check=ip_error)
        str_list(a, "hostnames", p, required=True, nonempty=True)
    opt_int(spec, "terminationGracePeriodSeconds", path, lo=0, default=30)
    return spec


# ---- Deployment, ReplicaSet ---------------------------------------------------


def _surge(d: Obj, key: str, base: str) -> int:
    """maxSurge/maxUnavailable: an integer >= 0 or a percentage 'N%'."""
    v = d.get(key)
    if v is None:
        d[key] = v = "25%"
    p = join(base, key)
    if is_int(v):
        return check_int(v, p, lo=0)
    if isinstance(v, str) and v.endswith("%") and v[:-1].isdigit():
        if key == "maxUnavailable" and int(v[:-1]) > 100:
            fail(p, "must be at most 100%")
        return int(v[:-1])
    fail(p, "must be an integer >= 0 or a percentage like '25%%', got %s" % shown(v))


def workload(obj: Obj, kind: str) -> Obj:
    spec = opt_map(obj, "spec", "", required=True)
    support.check(spec, "spec", kind + "Spec")
    opt_int(spec, "replicas", "spec", lo=0, default=1)
    sel = opt_map(spec, "selector", "spec", required=True)
    check_selector(sel, "spec.selector", allow_empty=False)
    tmpl = opt_map(spec, "template", "spec", required=True)
    tmeta = opt_map(tmpl, "metadata", "spec.template") or {}
    labels = str_map(tmeta, "labels", "spec.template.metadata") or {}
    if not matches(sel, labels):
        fail(
            "spec.template.metadata.labels",
            "%s do not match spec.selector (%s)" % (format_labels(labels), format_selector(sel)),
        )
    pod_spec(opt_map(tmpl, "spec", "spec.template", required=True), "spec.template.spec", kind)
    min_ready = opt_int(spec, "minReadySeconds", "spec", lo=0, default=0)
    if kind == "Deployment":
        opt_int(spec, "revisionHistoryLimit", "spec", lo=0, default=10)
        pd = opt_int(spec, "progressDeadlineSeconds", "spec", lo=1, default=600)
        if pd <= min_ready:
            fail("spec.progressDeadlineSeconds", "must be greater than minReadySeconds (%d)" % min_ready)
        opt_bool(spec, "paused", "spec")
        st = opt_map(spec, "strategy", "spec") or spec.setdefault("strategy", {})
        stype = opt_enum(st, "type", "spec.strategy", ("RollingUpdate", "Recreate"), default="RollingUpdate")
        if stype == "Recreate":
            if st.get("rollingUpdate") is not None:
                fail("spec.strategy.rollingUpdate", "may not be set when type is Recreate")
        else:
            ru = opt_map(st, "rollingUpdate", "spec.strategy") or st.setdefault("rollingUpdate", {})
            surge = _surge(ru, "maxSurge", "spec.strategy.rollingUpdate")
            unavailable = _surge(ru, "maxUnavailable", "spec.strategy.rollingUpdate")
            if surge == 0 and unavailable == 0:
                fail("spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when maxSurge is 0")
    return obj
