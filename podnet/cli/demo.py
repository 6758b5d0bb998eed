"""`podnet demo`: the cnitool experiment, end to end, in throwaway namespaces.

A "node" namespace plays the host, two pod namespaces play pause containers,
and an "external" namespace plays the internet behind the node's uplink. The
demo runs the real CNI contract through podnet's runtime library (as
`podnet cni add` does), with the warm daemon, and shows each step with the
command a person would type. Everything it made is removed at the end, also
on Ctrl-C or an error (unless --keep).

The demo builds and reads its namespaces through podnet/kernel (the only
code that changes the kernel); what it prints is the `ip` command a person
would type to see the same thing, and the text that command shows, rendered
from `ip -j` (links.show_json).

Names: the demo's namespaces are pn-demo_node, pn-demo_pod1, pn-demo_pod2 and
pn-demo_ext. A lab owns every name starting "pn-<lab>-" with a lab name of
lowercase letters and digits (topology.check_name), so a lab can be named
"demo": "pn-demo_" is a prefix no lab can produce, and neither `lab down`
nor the demo's own start-up cleanup (which deletes its four names, left by a
demo killed earlier) touches the other's namespaces.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

PREFIX = "pn-demo_"  # "_" is never in a lab's name: no "pn-<lab>-" prefix matches these
NODE, POD1, POD2, EXT = (PREFIX + n for n in ("node", "pod1", "pod2", "ext"))
NODE_IP, EXT_IP = "192.0.2.1", "192.0.2.2"

SERVER = (
    "import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('0.0.0.0',int(sys.argv[1])));s.listen(8);print('ready',flush=True)\n"
    "while True:\n c,a=s.accept();c.sendall(('hello from %s, you are %s\\n'%(sys.argv[2],a[0])).encode());c.close()\n"
)
CLIENT = (
    "import socket,sys\nc=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3)\n"
    "print(c.recv(200).decode().strip())\n"
)

console = Console(highlight=False, width=None if sys.stdout.isatty() else 100)


def _in(ns, *argv, check=True):
    res = subprocess.run(["nsenter", "--net=/run/netns/" + ns, "--", *argv], capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise RuntimeError("%s in %s failed: %s" % (" ".join(argv), ns, res.stderr.strip() or res.stdout.strip()))
    return res.stdout


def _read(ns, what):
    """`ip -j <what>` in `ns`, parsed; an unreadable namespace fails the demo."""
    from podnet.kernel import links

    out = links.show_json(ns, what)
    if out is None:
        raise RuntimeError("reading %s in %s failed" % (what, ns))
    return out


def _name(link):
    """A link's name as `ip -br` shows it: a veth's peer index after `@`."""
    return link["ifname"] + ("@if%d" % link["link_index"] if "link_index" in link else "")


def _brief_addr(ns, dev):
    """What `ip -br addr show DEV` prints."""
    return "".join(
        "%-16s %-14s %s\n"
        % (_name(a), a.get("operstate", ""), " ".join("%s/%d" % (i["local"], i["prefixlen"]) for i in a["addr_info"]))
        for a in _read(ns, "addr")
        if a["ifname"] == dev
    )


def _brief_links(ns, master):
    """What `ip -br link show master MASTER` prints."""
    return "".join(
        "%-16s %-14s %s <%s>\n"
        % (_name(link), link.get("operstate", ""), link.get("address", ""), ",".join(link["flags"]))
        for link in _read(ns, "link")
        if link.get("master") == master
    )


# `ip route`'s words in its order, by the ip -j key that holds each value
ROUTE_WORDS = (("gateway", "via"), ("dev", "dev"), ("protocol", "proto"), ("scope", "scope"), ("prefsrc", "src"))


def _routes(ns):
    """What `ip route` prints."""
    out = ""
    for r in _read(ns, "route"):
        words = [r["dst"]] + [w for key, word in ROUTE_WORDS if key in r for w in (word, str(r[key]))]
        if "metric" in r:
            words += ["metric", str(r["metric"])]
        out += " ".join(words + list(r.get("flags") or [])) + "\n"
    return out


def _step(title, command=None):
    console.rule("[bold]%s" % title, align="left")
    if command:
        console.print("[dim]$ %s[/dim]" % command)


def _show(text):
    console.print(text.rstrip(), soft_wrap=True)


def _conflist(tmp, sock):
    return {
        "cniVersion": "1.1.0",
        "name": "mynet",
        "plugins": [
            {
                "type": "podnet",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "daemonSocket": sock,
                "ipam": {
                    "type": "podnet-ipam",
                    "ranges": [[{"subnet": "10.22.0.0/16"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": os.path.join(tmp, "ipam"),
                },
            },
            {"type": "podnet-portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _podnet(*args):
    return [sys.executable, "-m", "podnet.cli.main", *args]


def run(args):
    from podnet.cni.install import install
    from podnet.kernel import links, netns

    if os.geteuid() != 0:
        console.print("[red]podnet demo needs root: it creates network namespaces[/red]")
        return 1
    tmp = tempfile.mkdtemp(prefix="podnet-demo-")
    conf_dir, bin_dir, cache = (os.path.join(tmp, d) for d in ("net.d", "bin", "cache"))
    os.makedirs(conf_dir)
    sock = os.path.join(tmp, "cni.sock")
    procs = []
    rt = ["--conf-dir", conf_dir, "--bin-dir", bin_dir, "--cache-dir", cache]
    try:
        _step("1. Namespaces: a node, two pods, and an external host", "ip netns add %s  (x4)" % NODE)
        for ns in (NODE, POD1, POD2, EXT):
            netns.delete(ns)  # a demo killed earlier
            netns.create(ns)
        links.ensure_veth(NODE, "uplink", EXT, "eth0")  # both ends up
        for ns, dev, ip in ((NODE, "uplink", NODE_IP), (EXT, "eth0", EXT_IP)):
            links.ensure_addr(ns, dev, ip + "/24")
        _show("node uplink %s  <->  external %s" % (NODE_IP, EXT_IP))

        _step("2. Install the plugins and write a network config", "podnet cni install --bin-dir %s" % bin_dir)
        install(bin_dir)
        path = os.path.join(conf_dir, "10-mynet.conflist")
        with open(path, "w") as f:
            json.dump(_conflist(tmp, sock), f, indent=2)
        _show(open(path).read())

        _step("3. Start the warm daemon inside the node", "podnet cni serve --netns %s --socket %s" % (NODE, sock))
        procs.append(
            subprocess.Popen(
                _podnet("cni", "serve", "--netns", NODE, "--socket", sock, "--quiet"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.time() + 20
        while not os.path.exists(sock):
            if time.time() > deadline or procs[0].poll() is not None:
                raise RuntimeError("the daemon did not start")
            time.sleep(0.05)

        _step(
            "4. ADD both pods (what kubelet does through the runtime)",
            "podnet cni add mynet /run/netns/%s -p 8080:80" % POD2,
        )
        results = {}
        for pod, extra in ((POD1, []), (POD2, ["-p", "8080:80"])):
            t0 = time.perf_counter()
            out = subprocess.run(
                [
                    "nsenter",
                    "--net=/run/netns/" + NODE,
                    "--",
                    *_podnet("cni", "add", "mynet", "/run/netns/" + pod, *rt, *extra),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if out.returncode != 0:
                raise RuntimeError("ADD %s failed: %s" % (pod, out.stderr.strip()))
            results[pod] = (json.loads(out.stdout), (time.perf_counter() - t0) * 1000)
        table = Table("pod", "IP", "gateway", "MAC", "host veth")
        for pod, (res, _ms) in results.items():
            table.add_row(
                pod[len(PREFIX) :],
                res["ips"][0]["address"],
                res["ips"][0].get("gateway", ""),
                res["interfaces"][2]["mac"],
                res["interfaces"][1]["name"],
            )
        console.print(table)
        ip2 = results[POD2][0]["ips"][0]["address"].split("/")[0]

        _step("5. Inside pod1", "ip netns exec %s ip addr show eth0; ip route" % POD1)
        _show(_brief_addr(POD1, "eth0") + _routes(POD1))
        _step("   On the node: the bridge and its ports", "bridge link; nft list table inet podnet-bridge")
        _show(_brief_links(NODE, "cni0"))

        _step("6. Traffic", "ping %s (pod1 -> pod2), ping 10.22.0.1 (gateway)" % ip2)
        for label, ok in (
            ("pod1 -> pod2 %s" % ip2, _in(POD1, "ping", "-c1", "-W2", ip2, check=False)),
            ("pod1 -> gateway 10.22.0.1", _in(POD1, "ping", "-c1", "-W2", "10.22.0.1", check=False)),
        ):
            console.print(
                "%-32s %s" % (label, "[green]reachable[/green]" if " 0% packet loss" in ok else "[red]lost[/red]")
            )
        for ns, port, who in ((EXT, 80, "external"), (POD2, 80, "pod2")):
            p = subprocess.Popen(
                ["nsenter", "--net=/run/netns/" + ns, "--", sys.executable, "-c", SERVER, str(port), who],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            procs.append(p)
            p.stdout.readline()
        for src, dst, port, note in (
            (POD1, EXT_IP, 80, "ipMasq: external sees the node's address"),
            (POD1, ip2, 80, "pod to pod: no NAT"),
            (EXT, NODE_IP, 8080, "hostPort 8080 -> pod2:80 (podnet-portmap)"),
        ):
            out = _in(src, sys.executable, "-c", CLIENT, dst, str(port), check=False).strip() or "[red]no answer[/red]"
            console.print("%s -> %s:%d  [cyan]%s[/cyan]   (%s)" % (src[len(PREFIX) :], dst, port, out, note))

        _step("7. DEL both pods", "podnet cni del mynet /run/netns/%s" % POD1)
        for pod in (POD1, POD2):
            subprocess.run(
                [
                    "nsenter",
                    "--net=/run/netns/" + NODE,
                    "--",
                    *_podnet("cni", "del", "mynet", "/run/netns/" + pod, *rt),
                ],
                check=True,
                timeout=60,
            )
        left = [f for f in os.listdir(os.path.join(tmp, "ipam", "mynet")) if f[0].isdigit()]
        console.print("pod1 interfaces now: %s" % " ".join(link["ifname"] for link in _read(POD1, "link")))
        console.print("addresses still allocated: %s" % (", ".join(left) or "none"))
        console.rule("[green]demo done")
        return 0
    except (RuntimeError, subprocess.SubprocessError, OSError, links.LinkError) as exc:
        console.print("[red]demo failed: %s[/red]" % exc)
        return 1
    finally:
        for p in procs:  # by the PIDs we started
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.keep:
            for ns in (POD1, POD2, EXT, NODE):
                netns.delete(ns)
            subprocess.run(["rm", "-rf", tmp])
        else:
            console.print("kept: namespaces %s, files in %s" % (", ".join((NODE, POD1, POD2, EXT)), tmp))
