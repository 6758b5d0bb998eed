"""A pod's /etc/resolv.conf, as kubelet writes it (pure).

dnsPolicy:
  ClusterFirst (default)   nameserver <cluster DNS>, search <ns>.svc.<zone>
                           svc.<zone> <zone> (+ the node's search domains),
                           options ndots:5; a hostNetwork pod falls back to
                           Default, as in Kubernetes
  ClusterFirstWithHostNet  ClusterFirst, also for hostNetwork pods
  Default                  the node's resolver configuration
  None                     only what dnsConfig gives
dnsConfig (any policy): nameservers and searches appended (duplicates
dropped; at most 3 nameservers and 32 search domains, as the API checks),
options merged by name (the pod's value wins).
"""

CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
MAX_NAMESERVERS = 3
MAX_SEARCHES = 32


def parse(text):
    """resolv.conf text -> (nameservers, searches, options {name: value or None})."""
    servers, searches, options = [], [], {}
    for line in (text or "").splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            servers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            searches = parts[1:]  # the last search/domain line wins, as in glibc
        elif parts[0] == "options":
            for opt in parts[1:]:
                name, _, value = opt.partition(":")
                options[name] = value or None
    return servers, searches, options


def _dedupe(items):
    out = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def plan(pod, node_conf="", cluster_dns=CLUSTER_DNS, domain=CLUSTER_DOMAIN):
    """-> the resolv.conf text for `pod` (a Pod dict). node_conf: the node's
    own resolv.conf text (what Default means)."""
    spec = pod.get("spec") or {}
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    node_servers, node_searches, node_options = parse(node_conf)
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers = [cluster_dns]
        searches = ["%s.svc.%s" % (ns, domain), "svc.%s" % domain, domain] + node_searches
        options = {"ndots": "5"}
    elif policy == "Default":
        servers, searches, options = node_servers, node_searches, dict(node_options)
    else:  # None
        servers, searches, options = [], [], {}
    cfg = spec.get("dnsConfig") or {}
    servers = _dedupe(servers + list(cfg.get("nameservers") or []))[:MAX_NAMESERVERS]
    searches = _dedupe(searches + list(cfg.get("searches") or []))[:MAX_SEARCHES]
    for opt in cfg.get("options") or []:
        options[opt["name"]] = opt.get("value")
    lines = [
        "# written by podnet for pod %s/%s (dnsPolicy %s)"
        % (ns, (pod.get("metadata") or {}).get("name", ""), spec.get("dnsPolicy") or "ClusterFirst")
    ]
    lines += ["nameserver %s" % s for s in servers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(k if v in (None, "") else "%s:%s" % (k, v) for k, v in options.items()))
    return "\n".join(lines) + "\n"
