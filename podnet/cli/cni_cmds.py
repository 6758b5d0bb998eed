"""`podnet cni ...`: install, serve, and the cnitool workflow."""

import hashlib
import json
import os
import sys

from podnet.cni import libcni


def _err(msg):
    print("podnet: %s" % msg, file=sys.stderr)
    return 1


def _runtime(args):
    bins = args.bin_dir or os.environ.get("CNI_PATH") or libcni.DEFAULT_BIN_DIR
    return libcni.Runtime(
        bin_dirs=[d for d in bins.split(os.pathsep) if d], cache_dir=args.cache_dir or libcni.DEFAULT_CACHE_DIR
    )


def _conf_dir(args):
    return args.conf_dir or os.environ.get("NETCONFPATH") or libcni.DEFAULT_CONF_DIR


def parse_publish(specs):
    out = []
    for spec in specs:
        text, _, proto = spec.partition("/")
        host, sep, cont = text.partition(":")
        if not sep or not host.isdigit() or not cont.isdigit() or proto not in ("", "tcp", "udp"):
            raise ValueError("--publish %r: expected HOSTPORT:PORT[/tcp|/udp]" % spec)
        out.append({"hostPort": int(host), "containerPort": int(cont), "protocol": proto or "tcp"})
    return out


def run(args):
    if args.cni_cmd == "install":
        from podnet.cni.install import install

        for path in install(args.bin_dir):
            print(path)
        return 0
    if args.cni_cmd == "serve":
        return _serve(args)
    try:
        net = libcni.find_network(args.network, _conf_dir(args))
        rt = _runtime(args)
        if args.cni_cmd == "gc":
            valid = [(c, i) for n, c, i in rt.attachments() if n == net.name]
            rt.gc(net, valid)
            print(
                "gc: kept %d attachment(s) of %s%s"
                % (
                    len(valid),
                    net.name,
                    ""
                    if net.version >= "1.1"
                    else " (config version %s predates GC: only the cache was pruned)" % net.version,
                )
            )
            return 0
        if args.cni_cmd == "status":
            if rt.status(net):
                print("%s: ready" % net.name)
            else:
                print("%s: config version %s predates STATUS; plugins not asked" % (net.name, net.version))
            return 0
        # A bare name means /run/netns/NAME; /var/run/netns/X and /run/netns/X
        # are the same namespace and must give the same container ID.
        netns = os.path.realpath(args.netns if "/" in args.netns else "/run/netns/" + args.netns)
        ifname = args.ifname or os.environ.get("CNI_IFNAME") or "eth0"
        # As cnitool: the container ID is derived from the netns path.
        cid = (
            args.container_id
            or os.environ.get("CNI_CONTAINERID")
            or ("cnitool-" + hashlib.sha512(netns.encode()).hexdigest()[:20])
        )
        cni_args = args.cni_args if args.cni_args is not None else os.environ.get("CNI_ARGS", "")
        caps = {"portMappings": parse_publish(args.publish)} if args.publish else None
        if args.cni_cmd == "add":
            result = rt.add(net, cid, netns, ifname, cni_args, caps)
            print(json.dumps(result, indent=2))
        elif args.cni_cmd == "check":
            rt.check(net, cid, netns, ifname, cni_args, caps)
            print("%s: %s/%s is as ADD left it" % (net.name, cid, ifname))
        else:
            rt.delete(net, cid, netns, ifname, cni_args, caps)
        return 0
    except (libcni.ConfigError, libcni.PluginError, ValueError) as exc:
        return _err(str(exc))


def _serve(args):
    from podnet.cni.server import serve

    if args.netns:
        # Enter before any thread exists: threads inherit the namespace.
        from podnet.kernel.netns import Netns, _setns

        with Netns(args.netns) as ns:
            _setns(ns.fd, ns.path)

    def ready(server):
        print("podnet cni daemon listening on %s (pid %d)" % (args.socket, os.getpid()), flush=True)

    serve(args.socket, ready=ready, verbose=not args.quiet)
    return 0
