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
        v = cs.add_parser(verb, help="%s a network namespace %s a network (as cnitool %s)"
                          % (verb.upper(), "to" if verb != "del" else "from", verb))
        v.add_argument("network", help="network name (from the config dir)")
        v.add_argument("netns", help="network namespace path, e.g. /run/netns/test-ns (or a name)")
        _runtime_args(v)
        v.add_argument("--ifname", default=None, help="interface in the netns (default $CNI_IFNAME or eth0)")
        v.add_argument("--id", dest="container_id", default=None,
                       help="container ID (default $CNI_CONTAINERID or derived from the netns path)")
        v.add_argument("--args", dest="cni_args", default=None, help="CNI_ARGS, e.g. IP=10.22.0.9")
        v.add_argument("-p", "--publish", action="append", default=[], metavar="HOSTPORT:PORT[/udp]",
                       help="portMappings capability (for a chained podnet-portmap)")
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


def build_parser():
    parser = argparse.ArgumentParser(prog="podnet", description="podnet: the Kubernetes network model on the real kernel")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _cni_parser(sub)
    d = sub.add_parser("demo", help="the CNI demo: two pods on a bridge in throwaway namespaces")
    d.add_argument("--keep", action="store_true", help="leave the demo namespaces for poking around")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "cni":
            from podnet.cli import cni_cmds
            return cni_cmds.run(args)
        if args.cmd == "demo":
            from podnet.cli import demo
            return demo.run(args)
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
