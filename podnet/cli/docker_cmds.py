"""Docker-style single containers on a lab node: run, ps, inspect, stop, rm,
network (issue 8), and `podnet exec NAME` for a container (kube.cmd_exec
falls back here when no pod has that name). The work is in podnet/docker/;
this module parses and prints. Only argparse is touched at parse time.
"""

import sys


def add_parsers(sub, lab_arg):
    """Add this module's verbs (main.DOCKER_CMDS) to the `podnet` parser."""
    import argparse

    r = sub.add_parser("run", help="run a command as a container on a lab node (Docker's network modes)")
    lab_arg(r)
    r.add_argument("--node", default=None, help="the node standing for the Docker host (default: the only node)")
    r.add_argument("--name", default=None, help="container name (default: the short ID)")
    r.add_argument(
        "--network",
        "--net",
        dest="network",
        default="bridge",
        help="bridge (default) | host | none | container:NAME | a user-defined network",
    )
    r.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:]HOSTPORT:PORT[/udp]",
        help="publish a container port on the node's address (repeatable)",
    )
    r.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("-d", "--detach", action="store_true", help="run in the background, print the ID")
    r.add_argument("--rm", dest="auto_remove", action="store_true", help="remove the container when it exits")
    r.add_argument("-i", "--interactive", action="store_true", help="pass stdin to the container")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS")
    ps = sub.add_parser("ps", help="list containers (-a: also stopped ones)")
    lab_arg(ps)
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true", help="names only")
    ps.add_argument("--node", default=None)
    i = sub.add_parser("inspect", help="a container's netns, interfaces, IP, gateway, ports (JSON)")
    lab_arg(i)
    i.add_argument("names", nargs="+")
    s = sub.add_parser("stop", help="stop containers (SIGTERM, SIGKILL after --time)")
    lab_arg(s)
    s.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL (default 10)")
    s.add_argument("names", nargs="+")
    rm = sub.add_parser("rm", help="remove containers and their networking")
    lab_arg(rm)
    rm.add_argument("-f", "--force", action="store_true", help="stop a running container first")
    rm.add_argument("names", nargs="+")
    n = sub.add_parser("network", help="user-defined bridge networks on a node: create, ls, rm")
    ns = n.add_subparsers(dest="network_cmd", required=True)
    c = ns.add_parser("create", help="a bridge network with name resolution, isolated from the others")
    lab_arg(c)
    c.add_argument("name")
    c.add_argument("--subnet", default=None, help="CIDR (default: a free /16 of 172.18-172.31)")
    c.add_argument("--node", default=None, help="default: the only node")
    ls = ns.add_parser("ls", help="networks per node")
    lab_arg(ls)
    ls.add_argument("--node", default=None)
    nr = ns.add_parser("rm", help="remove networks no container uses")
    lab_arg(nr)
    nr.add_argument("names", nargs="+")
    nr.add_argument("--node", default=None, help="default: the node that has the network")


def run(args):
    from podnet.docker.spec import DockerError
    from podnet.lab import topology as topo

    try:
        lab = topo.pick_lab(args.lab)
        return globals()["_cmd_" + args.cmd](lab, args)
    except DockerError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1


def _store(lab):
    from podnet.docker.store import Store

    return Store(lab)


def _node(lab, node):
    """--node, else the lab's only node."""
    from podnet.docker.spec import DockerError
    from podnet.lab import topology as topo

    if node:
        return node
    names = [n["name"] for n in topo.load(lab)["nodes"]]
    if len(names) != 1:
        raise DockerError("lab %s has several nodes (%s): choose one with --node" % (lab, ", ".join(names)))
    return names[0]


def _cmd_run(lab, args):
    from podnet.docker import engine
    from podnet.docker.spec import DockerError

    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    env = {}
    for item in args.env:
        key, eq, value = item.partition("=")
        if not key or not eq:
            raise DockerError("-e %s: expected KEY=VALUE" % item)
        env[key] = value
    store = _store(lab)
    rec = engine.create(
        store,
        lab,
        _node(lab, args.node),
        args.name,
        args.network,
        args.publish,
        cmd,
        auto_remove=args.auto_remove,
        env=env,
    )
    if args.detach:
        engine.run_detached(store, lab, rec)
        print(rec["id"])
        return 0
    return engine.run_foreground(store, lab, rec, interactive=args.interactive)


def _cmd_ps(lab, args):
    from podnet.cli.printers import _table, age
    from podnet.docker import engine, spec

    rows = []
    for c in _store(lab).containers():
        st = engine.status_of(c)
        if (st != "running" and not args.all) or (args.node and c["node"] != args.node):
            continue
        if args.quiet:
            print(c["name"])
            continue
        if st == "running":
            status = "Up " + age(c.get("startedAt"))
        elif st == "exited":
            code = c.get("exitCode")
            status = "Exited (%s) %s ago" % ("?" if code is None else code, age(c.get("finishedAt")))
        else:
            status = "Created"
        rows.append(
            [
                c["id"][:12],
                c["name"],
                c["node"],
                c["network"],
                c.get("ip") or "-",
                ", ".join(spec.port_text(m) for m in c.get("ports", [])),
                status,
                spec.short_command(c["cmd"]),
            ]
        )
    if not args.quiet:
        print(_table(["CONTAINER ID", "NAME", "NODE", "NETWORK", "IP", "PORTS", "STATUS", "COMMAND"], rows))
    return 0


def _cmd_inspect(lab, args):
    import json

    from podnet.docker import engine

    store = _store(lab)
    docs = [engine.inspect(engine.find(store, name)) for name in args.names]
    print(json.dumps(docs, indent=2))
    return 0


def _each(lab, names, fn):
    """Docker's way: go through every name, report each failure, exit 1 if any."""
    from podnet.docker.spec import DockerError

    failed = 0
    for name in names:
        try:
            fn(name)
            print(name)
        except DockerError as exc:
            print("error: %s" % exc, file=sys.stderr)
            failed = 1
    return failed


def _cmd_stop(lab, args):
    from podnet.docker import engine

    store = _store(lab)
    return _each(lab, args.names, lambda n: engine.stop(store, lab, n, args.time))


def _cmd_rm(lab, args):
    from podnet.docker import engine

    store = _store(lab)
    return _each(lab, args.names, lambda n: engine.remove(store, lab, n, args.force))


def _cmd_network(lab, args):
    from podnet.docker import networks
    from podnet.docker.spec import DockerError

    store = _store(lab)
    if args.network_cmd == "create":
        net = networks.create(store, lab, _node(lab, args.node), args.name, args.subnet)
        print(
            "%s (node %s, subnet %s, bridge %s, DNS %s:53)"
            % (net["name"], net["node"], net["subnet"], net["bridge"], net["gateway"])
        )
        return 0
    if args.network_cmd == "ls":
        from podnet.cli.printers import _table

        rows = [
            [
                n["name"],
                n["node"],
                n["driver"],
                n.get("subnet") or "-",
                n.get("gateway") or "-",
                n.get("bridge") or "-",
                "yes" if n.get("dns") else "no",
            ]
            for n in networks.listing(store, lab, args.node)
        ]
        print(_table(["NETWORK", "NODE", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE", "DNS"], rows))
        return 0

    def rm(name):
        node = args.node
        if node is None:
            have = [n["node"] for n in store.networks() if n["name"] == name]
            if len(have) > 1:
                raise DockerError("network %s exists on %s: choose one with --node" % (name, ", ".join(have)))
            node = have[0] if have else _node(lab, None)
        networks.remove(store, lab, node, name)

    return _each(lab, args.names, rm)


# ---- `podnet exec NAME -- CMD` for a container (called from kube.cmd_exec) ------


def has_container(lab, name):
    return _store(lab).container(name) is not None


def exec_container(lab, name, command):
    import subprocess

    from podnet.docker import engine
    from podnet.docker.spec import DockerError

    cmd = command[1:] if command[:1] == ["--"] else command
    try:
        argv = engine.exec_argv(_store(lab), name, cmd)
    except DockerError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    return subprocess.call(argv)
