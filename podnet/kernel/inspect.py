"""Kernel reads for `podnet doctor`: what one network namespace holds, as
plain data (lists and dicts), never a change.

Each function takes a namespace name (/run/netns/NAME) and returns what it
read, or raises InspectError naming the read and the namespace. The doctor
calls `node_facts` once per node (in parallel threads: every read enters the
namespace on its own thread, so threads do not disturb each other) and
`pod_facts` once per pod it looks at, so each fact is read once per run.

Listening sockets come from /proc/thread-self/net/{tcp,tcp6,udp,udp6} read
while the thread is inside the namespace: /proc/net follows the *reader's*
namespace, so no process of the pod is needed (and none is signalled).
"""

import json
import shutil

from podnet.kernel import links, neigh
from podnet.kernel.netns import Netns, entered, iproute, run

SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.bridge.bridge-nf-call-iptables")
TCP_LISTEN = "0A"  # st column of /proc/net/tcp: TCP_LISTEN
UDP_UNCONNECTED = "07"  # an unconnected UDP socket shows TCP_CLOSE


class InspectError(Exception):
    pass


def _path(ns):
    return "/run/netns/" + ns


def routes(ns):
    """`ip -j route` of the main table -> [{dst, gateway, dev, protocol, ...}]."""
    got = links.show_json(_path(ns), "route")
    if got is None:
        raise InspectError("read routes of %s: namespace gone or ip failed" % ns)
    return got


def link_mtus(ns):
    """{link name: mtu} of every link in `ns`."""
    got = links.show_json(_path(ns), "link")
    if got is None:
        raise InspectError("read links of %s: namespace gone or ip failed" % ns)
    return {link["ifname"]: link.get("mtu") for link in got}


def sysctls(ns, keys=SYSCTLS):
    """{key: value} for the keys that exist in `ns` (bridge-nf only with
    br_netfilter loaded)."""
    out = {}
    with Netns(_path(ns)) as h:
        for key in keys:
            try:
                out[key] = links.read_sysctl(h, key)
            except FileNotFoundError:
                continue
    return out


def nft_tables(ns):
    """["family name", ...] of every nftables table in `ns`."""
    res = run(["nft", "-j", "list", "tables"], ns=Netns(_path(ns)), check=False)
    if res.returncode != 0:
        raise InspectError("nft list tables in %s: %s" % (ns, res.stderr.strip()))
    doc = json.loads(res.stdout or "{}")
    return ["%s %s" % (i["table"]["family"], i["table"]["name"]) for i in doc.get("nftables", []) if "table" in i]


def nft_table_text(ns, family, name):
    """`nft list table` text, for the rule text people read; None if gone."""
    res = run(["nft", "list", "table", family, name], ns=Netns(_path(ns)), check=False)
    return res.stdout if res.returncode == 0 else None


def iptables_rules(ns):
    """`iptables-save` output of `ns` ('' when the tool is absent: an
    nftables-only system has no legacy rules to hide a drop)."""
    if not shutil.which("iptables-save"):
        return ""
    res = run(["iptables-save"], ns=Netns(_path(ns)), check=False)
    return res.stdout if res.returncode == 0 else ""


def conntrack(ns):
    """`conntrack -L -o extended` lines of `ns` (text; the checks parse it)."""
    if not shutil.which("conntrack"):
        return []
    res = run(["conntrack", "-L", "-o", "extended"], ns=Netns(_path(ns)), check=False)
    if res.returncode != 0:
        raise InspectError("conntrack -L in %s: %s" % (ns, res.stderr.strip()))
    return [line for line in res.stdout.splitlines() if line.strip()]


def _proc_net(name):
    try:
        with open("/proc/thread-self/net/" + name) as f:
            return f.read().splitlines()[1:]
    except FileNotFoundError:
        return []


def _addr(hexaddr):
    """'0100007F:1F90' -> ('127.0.0.1', 8080); v6 addresses as hex."""
    ip, port = hexaddr.split(":")
    if len(ip) == 8:
        ip = ".".join(str(int(ip[i : i + 2], 16)) for i in (6, 4, 2, 0))
    elif set(ip) == {"0"}:
        ip = "::"
    return ip, int(port, 16)


def listening(ns):
    """{"tcp": [(ip, port)], "udp": [(ip, port)]} of sockets bound in `ns`
    (TCP in LISTEN, UDP unconnected)."""
    out = {"tcp": [], "udp": []}
    with Netns(_path(ns)) as h, entered(h):
        for proto, want in (("tcp", TCP_LISTEN), ("udp", UDP_UNCONNECTED)):
            for name in (proto, proto + "6"):
                for line in _proc_net(name):
                    cols = line.split()
                    if len(cols) > 3 and cols[3] == want:
                        out[proto].append(_addr(cols[1]))
    return out


def vxlan_entries(ns, dev="podnet.1"):
    """({mac: dst} FDB entries, {ip: mac} permanent neighbours) of `dev`."""
    with Netns(_path(ns)) as h:
        ipr = iproute(h)
        try:
            fdb = neigh.fdb_entries(ipr, dev)
            neighbours = neigh.permanent_neighbours(ipr, dev)
        finally:
            ipr.close()
    return dict(fdb), dict(neighbours)


def dns_query(ns, server, name, timeout=1.0):
    """A real DNS query (type A) from inside `ns` to server:53 ->
    {"ok": bool, "detail": words}. The socket is made inside the namespace,
    so the query takes the pod's own path (Service DNAT included)."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    q = dns.message.make_query(name, "A")
    try:
        with Netns(_path(ns)) as h, entered(h):
            ans = dns.query.udp(q, server, timeout=timeout)
    except dns.exception.Timeout:
        return {"ok": False, "detail": "%s A? to %s: no answer in %.0f s" % (name, server, timeout)}
    except OSError as exc:
        return {"ok": False, "detail": "%s A? to %s: %s" % (name, server, exc.strerror or exc)}
    rcode = dns.rcode.to_text(ans.rcode())
    ips = [r.to_text() for rr in ans.answer for r in rr]
    return {
        "ok": rcode == "NOERROR" and bool(ips),
        "detail": "%s A? to %s: %s %s" % (name, server, rcode, " ".join(ips)),
    }


def http_get(ns, ip, host, path, port=80, timeout=2.0):
    """A real HTTP GET from inside `ns` to ip:port with Host: host ->
    {"status": int | None, "detail": words}. The socket is made inside the
    namespace, so the request takes that host's own path."""
    import http.client

    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        with Netns(_path(ns)) as h, entered(h):
            conn.connect()
        conn.request("GET", path, headers={"Host": host, "User-Agent": "podnet-doctor"})
        r = conn.getresponse()
        r.read()
        return {"status": r.status, "detail": "HTTP %d %s" % (r.status, r.reason)}
    except (OSError, http.client.HTTPException) as exc:
        return {"status": None, "detail": "no answer: %s" % (getattr(exc, "strerror", None) or exc)}
    finally:
        conn.close()


def node_facts(ns, vxlan=True):
    """Everything the node checks read from one node namespace."""
    facts = {"netns": ns}
    for key, fn in (
        ("routes", routes),
        ("mtu", link_mtus),
        ("sysctls", sysctls),
        ("tables", nft_tables),
        ("iptables", iptables_rules),
        ("conntrack", conntrack),
    ):
        try:
            facts[key] = fn(ns)
        except (OSError, InspectError, links.LinkError, ValueError) as exc:
            facts.setdefault("errors", []).append(str(exc))
    foreign = {}
    for t in facts.get("tables", []):
        family, name = t.split(" ", 1)
        if not name.startswith("podnet-"):
            foreign[t] = nft_table_text(ns, family, name) or ""
    facts["foreign_tables"] = foreign
    if vxlan:
        try:
            facts["fdb"], facts["neigh"] = vxlan_entries(ns)
        except (OSError, links.LinkError) as exc:
            facts.setdefault("errors", []).append("read vxlan entries of %s: %s" % (ns, exc))
    return facts


def pod_facts(ns):
    """eth0's MTU, its default route's MTU (None: none set, eth0's applies)
    and the bound sockets of one pod namespace."""
    facts = {"netns": ns}
    try:
        facts["mtu"] = link_mtus(ns).get("eth0")
        default = [r for r in routes(ns) if r.get("dst") == "default"]
        facts["route_mtu"] = links.route_mtu(default[0]) if default else None
        facts["listening"] = listening(ns)
    except (OSError, InspectError) as exc:
        facts["error"] = str(exc)
    return facts
