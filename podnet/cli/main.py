"""The `podnet` command. Only this module exits the process; every verb lives
in its own module and is imported when used, so `podnet --help` stays quick."""

import argparse
import sys


def _cni_parser(sub):
    p = sub.add_parser("cni", help="CNI plugins: install, serve, and the cnitool workflow")
    cs = p.add_subparsers(dest="cni_cmd", required=True)
    i = cs.add_parser("install", help="write podnet, podnet-ipam, podnet-portmap into a CNI bin dir")
    i.add_argument("--bin-dir", default="/opt/cni/bin")
    s = cs.add_parser("serve", help="run the warm daemon the plugins forward to (daemonSocket)")
    s.add_argument("--socket", default="/run/podnet/cni.sock")
    s.add_argument("--netns", help="serve from inside this named network namespace")
    s.add_argument("--quiet", action="store_true", help="do not echo plugin logs")
    for verb in ("add", "check", "del"):
        v = cs.add_parser(
            verb,
            help="%s a network namespace %s a network (as cnitool %s)"
            % (verb.upper(), "to" if verb != "del" else "from", verb),
        )
        v.add_argument("network", help="network name (from the config dir)")
        v.add_argument("netns", help="network namespace path, e.g. /run/netns/test-ns (or a name)")
        _runtime_args(v)
        v.add_argument("--ifname", default=None, help="interface in the netns (default $CNI_IFNAME or eth0)")
        v.add_argument(
            "--id",
            dest="container_id",
            default=None,
            help="container ID (default $CNI_CONTAINERID or derived from the netns path)",
        )
        v.add_argument("--args", dest="cni_args", default=None, help="CNI_ARGS, e.g. IP=10.22.0.9")
        v.add_argument(
            "-p",
            "--publish",
            action="append",
            default=[],
            metavar="HOSTPORT:PORT[/udp]",
            help="portMappings capability (for a chained podnet-portmap)",
        )
    g = cs.add_parser("gc", help="GC a network: keep only the attachments in the result cache")
    g.add_argument("network")
    _runtime_args(g)
    st = cs.add_parser("status", help="STATUS of a network's plugins")
    st.add_argument("network")
    _runtime_args(st)


def _runtime_args(p):
    p.add_argument("--conf-dir", default=None, help="config dir (default $NETCONFPATH or /etc/cni/net.d)")
    p.add_argument("--bin-dir", default=None, help="plugin dir (default $CNI_PATH or /opt/cni/bin)")
    p.add_argument("--cache-dir", default=None, help="result cache (default /var/lib/cni)")


def _lab_arg(p):
    p.add_argument("--lab", default=None, help="lab name (default $PODNET_LAB, or the only lab)")


def _ns_args(p):
    p.add_argument("-n", "--namespace", default=None, help="namespace (default: default)")


def _kube_parsers(sub):
    lab = sub.add_parser("lab", help="a whole cluster on this machine: up, down, status, exec")
    ls = lab.add_subparsers(dest="lab_cmd", required=True)
    up = ls.add_parser("up", help="build (or complete) a lab and apply manifests")
    up.add_argument("--name", default="podnet", help="lab name (default podnet)")
    up.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    up.add_argument("-f", "--filename", action="append", default=[], help="manifests to apply (file or dir)")
    up.add_argument("--timeout", type=int, default=180)
    up.add_argument(
        "--routing",
        choices=["vxlan", "host-gw", "bgp"],
        default=None,
        help="how pods on different nodes reach each other (default vxlan)",
    )
    up.add_argument(
        "--encryption",
        choices=["none", "wireguard"],
        default=None,
        help="pod traffic between nodes inside WireGuard (the kernel's, else wireguard-go); default none",
    )
    up.add_argument(
        "--direct-routing", action="store_true", help="vxlan: plain routes to peers on the same underlay subnet"
    )
    up.add_argument(
        "--route-reflector",
        metavar="NODE",
        default=None,
        help="bgp: this node reflects routes; the others peer only with it",
    )
    up.add_argument(
        "--store",
        choices=["sqlite", "etcd"],
        default=None,
        help="where the API server keeps the state: an embedded sqlite file (default) or a real etcd",
    )
    up.add_argument(
        "--etcd-members",
        type=int,
        choices=[1, 3, 5],
        default=None,
        help="--store etcd: members of the etcd cluster, each in its own namespace (default 1)",
    )
    up.add_argument(
        "--node-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a node whose lease is not renewed for this long becomes NotReady (default 40)",
    )
    up.add_argument(
        "--pod-toleration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="pods on an unreachable node are deleted after this long (default 300)",
    )
    up.add_argument(
        "--lb-pool",
        metavar="CIDR",
        default=None,
        help="LoadBalancer ingress IPs, on the underlay (default 192.168.200.240/28)",
    )
    an = ls.add_parser("add-node", help="add a node to a running lab")
    _lab_arg(an)
    rn = ls.add_parser("remove-node", help="remove a node (its pods are rescheduled)")
    _lab_arg(rn)
    rn.add_argument("node")
    dn = ls.add_parser("down", help="remove every namespace, process and file of a lab")
    _lab_arg(dn)
    dn.add_argument("--name", dest="name", default=None, help="same as --lab")
    st = ls.add_parser("status", help="what runs in a lab")
    _lab_arg(st)
    ex = ls.add_parser("exec", help="run a command in a node's (or the external host's) namespace")
    _lab_arg(ex)
    ex.add_argument("target", help="node name or 'external'")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    rk = ls.add_parser("rotate-keys", help="a new WireGuard key pair for a node (--encryption wireguard)")
    _lab_arg(rk)
    rk.add_argument("node")
    ctl = ls.add_parser("controllers", help=argparse.SUPPRESS)
    _lab_arg(ctl)
    ag = sub.add_parser("agent", help="the node agent: in a lab (started by 'lab up') or on a host (--kubeconfig)")
    _lab_arg(ag)
    ag.add_argument("--node", default=None, help="the node's name (a host's default: its hostname)")
    ag.add_argument(
        "--kubeconfig", default=None, help="the API server and credentials (default: the lab's node kubeconfig)"
    )
    ag.add_argument(
        "--encryption",
        choices=["none", "wireguard"],
        default=None,
        help="pod traffic to other nodes inside WireGuard (default: the lab's setting)",
    )
    from podnet.hosts import agent as host_agent  # argparse only: host options and `agent join`
    from podnet.hosts import server as host_server

    host_agent.add_arguments(ag)
    host_server.add_parser(sub)
    kc = ls.add_parser("kubeconfig", help="print the path of the lab's kubeconfig (for kubectl)")
    _lab_arg(kc)
    from podnet.cli import ui_cmd  # argparse only: `podnet lab ui`, the web view

    ui_cmd.add_parser(ls, _lab_arg)
    from podnet.cli import flows_cmd  # argparse only: `podnet flows`

    flows_cmd.add_parser(sub, _lab_arg)
    sub.add_parser("apiserver", help="the Kubernetes API server (started by 'lab up'; see --help)", add_help=False)

    ap = sub.add_parser("apply", help="create or update objects from YAML (-f FILE|DIR|-)")
    _lab_arg(ap)
    ap.add_argument("-f", "--filename", action="append", required=True)
    g = sub.add_parser("get", help="list objects (kubectl columns)")
    _lab_arg(g)
    _ns_args(g)
    g.add_argument("kind")
    g.add_argument("name", nargs="?")
    g.add_argument("-A", "--all-namespaces", action="store_true")
    g.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"], default=None)
    g.add_argument("-l", "--selector", default=None)
    d = sub.add_parser("describe", help="one object in detail")
    _lab_arg(d)
    _ns_args(d)
    d.add_argument("kind")
    d.add_argument("name", nargs="?")
    de = sub.add_parser("delete", help="delete objects by name or from a file")
    _lab_arg(de)
    _ns_args(de)
    de.add_argument("kind", nargs="?")
    de.add_argument("names", nargs="*")
    de.add_argument("-f", "--filename", action="append", default=[])
    de.add_argument("--ignore-not-found", action="store_true")
    de.add_argument("--wait", action="store_true", help="wait until deleted pods are gone")
    e = sub.add_parser("exec", help="run a command in a pod's network namespace")
    _lab_arg(e)
    _ns_args(e)
    e.add_argument("pod")
    e.add_argument("-c", "--container", default=None)
    e.add_argument("command", nargs=argparse.REMAINDER)
    ru = sub.add_parser("rules", help="podnet's nftables on a node, service by service")
    _lab_arg(ru)
    _ns_args(ru)
    ru.add_argument("node", nargs="?", help="node name (default: every node)")
    ru.add_argument("-A", "--all-namespaces", action="store_true")
    ru.add_argument("--service", metavar="NAME", help="only this Service")
    ru.add_argument("--policy", action="store_true", help="the NetworkPolicy table (inet podnet-policy) instead")
    ru.add_argument("--raw", action="store_true", help="the whole table as nft lists it")
    tr = sub.add_parser("trace", help="follow a real probe packet hop by hop through the kernel, in words")
    _lab_arg(tr)
    _ns_args(tr)
    tr.add_argument("source", metavar="FROM", help="pod (ns/name or name), svc/NAME, node name, 'external' or an IP")
    tr.add_argument(
        "dest", metavar="TO[:PORT]", help="as FROM, or a Service IP/NodePort/LoadBalancer IP, or a DNS name"
    )
    proto = tr.add_mutually_exclusive_group()
    proto.add_argument("--tcp", dest="proto", action="store_const", const="tcp", help="a TCP SYN (the default)")
    proto.add_argument("--udp", dest="proto", action="store_const", const="udp", help="a UDP datagram")
    proto.add_argument("--icmp", dest="proto", action="store_const", const="icmp", help="an ICMP echo request")
    tr.add_argument("-o", "--output", choices=["json"], default=None)
    tr.add_argument(
        "--size", type=int, default=None, metavar="BYTES", help="IP packet size of an ICMP/UDP probe, sent with DF"
    )
    tr.add_argument(
        "--sport", type=int, default=None, metavar="PORT", help="the probe's source port (default: a free random one)"
    )
    tr.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the probe's packets (default 3)")
    dr = sub.add_parser("doctor", help="run the troubleshooting checklist; the root cause comes first")
    _lab_arg(dr)
    _ns_args(dr)
    dr.add_argument("target", nargs="?", help="POD, svc/NAME, node/NAME or ing/NAME (default: the whole lab)")
    dr.add_argument("--to", default=None, metavar="TARGET", help="check the path from TARGET's pod to this one")
    dr.add_argument("-o", "--output", choices=["json"], default=None)
    lg = sub.add_parser("logs", help="a container's output")
    _lab_arg(lg)
    _ns_args(lg)
    lg.add_argument("pod")
    lg.add_argument("-c", "--container", default=None)


# verbs of podnet/cli/docker_cmds.py (single containers, Docker's network modes)
DOCKER_CMDS = ("run", "ps", "inspect", "stop", "rm", "network")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="podnet", description="podnet: the Kubernetes network model on the real kernel"
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    _cni_parser(sub)
    _kube_parsers(sub)
    from podnet.cli import docker_cmds  # argparse only: keeps `podnet --help` quick

    docker_cmds.add_parsers(sub, _lab_arg)
    from podnet.cli import image_cmds  # podnet image build|ls|import

    image_cmds.add_parsers(sub)
    d = sub.add_parser("demo", help="the CNI demo: two pods on a bridge in throwaway namespaces")
    d.add_argument("--keep", action="store_true", help="leave the demo namespaces for poking around")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["apiserver"]:
        from podnet.apiserver.server import main as apiserver_main

        return apiserver_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "cni":
            from podnet.cli import cni_cmds

            return cni_cmds.run(args)
        if args.cmd == "image":
            return args.image_run(args)
        if args.cmd == "demo":
            from podnet.cli import demo

            return demo.run(args)
        return _kube(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `podnet doctor | head`: the reader left; say nothing more (Python
        # would print a traceback while flushing stdout at exit otherwise)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _kube(args):
    from podnet.api import ApiError
    from podnet.lab.topology import LabError
    from podnet.store.base import StoreError

    try:
        if getattr(args, "ui_run", None):  # podnet lab ui (podnet/cli/ui_cmd.py)
            return args.ui_run(args)
        if getattr(args, "flows_run", None):  # podnet flows (podnet/cli/flows_cmd.py)
            return args.flows_run(args)
        if args.cmd == "lab":
            from podnet.cli import lab_cmds

            return lab_cmds.run(args)
        if args.cmd in DOCKER_CMDS:
            from podnet.cli import docker_cmds

            return docker_cmds.run(args)
        if args.cmd == "server":  # podnet server (podnet/hosts/server.py)
            return args.server_run(args)
        if args.cmd == "agent" and args.agent_cmd == "join":
            from podnet.hosts import join

            return join.run(args)
        if args.cmd == "agent" and (args.kubeconfig or args.in_cluster) and not args.lab:  # a host no lab built
            from podnet.hosts import agent as host_agent

            return host_agent.run(args)
        if args.cmd == "agent":
            if not args.node:
                raise LabError("podnet agent --lab: --node is required")
            from podnet.lab.lab import run_agent
            from podnet.lab.topology import pick_lab

            run_agent(pick_lab(args.lab), args.node, args.kubeconfig, encryption=args.encryption)
            return 0
        if args.cmd == "trace":
            from podnet.cli import trace_cmd

            return trace_cmd.run(args)
        if args.cmd == "doctor":
            from podnet.cli import doctor_cmd

            return doctor_cmd.run(args)
        if args.cmd == "rules":
            from podnet.cli import rules

            return rules.cmd_rules(args)
        from podnet.cli import kube

        return getattr(kube, "cmd_" + args.cmd)(args)
    except (ApiError, LabError, StoreError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
