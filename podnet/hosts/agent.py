"""`podnet agent --kubeconfig FILE` on a host that no lab built.

The same Agent and reconcilers as in a lab, with what a lab's files gave
them taken from the host and the command line instead:
- the node's name (the hostname, or --node) and InternalIP (--node-ip, else
  the address this host reaches the API server from), the underlay segment
  (the prefix of the interface holding that address);
- the CNI executables installed into --cni-bin-dir (/opt/cni/bin) and the
  conflist written to --cni-conf-dir (/etc/cni/net.d), where a CRI runtime
  looks for them;
- the host's network namespace named under /run/netns (pn-host-<node>),
  since the agent finds the node's namespace by name (hostNetwork pods, BIRD).
Routing, Services and NetworkPolicy always; the kubelet role (pods) unless
--no-kubelet.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import urllib.parse

from podnet.hosts import join as join_mod

TAG = "host"  # the agent's names: pn-host-<node>, pn-host-p-<uid hash>
DEFAULT_STATE = "/var/lib/podnet"


def server_address(kubeconfig: str) -> tuple[str, int]:
    import yaml

    with open(kubeconfig) as f:
        doc = yaml.safe_load(f)
    url = urllib.parse.urlsplit(doc["clusters"][0]["cluster"]["server"])
    return url.hostname or "127.0.0.1", url.port or 443


def source_ip(dest: tuple[str, int]) -> str:
    """The address this host sends from toward `dest` (a route lookup, no packet)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(dest)
        return str(s.getsockname()[0])
    finally:
        s.close()


def run(args: argparse.Namespace) -> int:
    from podnet.agent.agent import Agent
    from podnet.client import connect
    from podnet.cni import install
    from podnet.kernel import hostns
    from podnet.policy.reconciler import PolicyReconciler
    from podnet.proxy.reconciler import ProxyReconciler
    from podnet.routing.reconciler import RoutingReconciler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    node = args.node or socket.gethostname()
    if args.in_cluster:  # the DaemonSet's way: client-go's InClusterConfig
        from podnet.client import Client, Cluster, in_cluster

        config = in_cluster()
        url = urllib.parse.urlsplit(config.server)
        node_ip = args.node_ip or source_ip((url.hostname or "127.0.0.1", url.port or 443))
    else:
        node_ip = args.node_ip or source_ip(server_address(args.kubeconfig))
    underlay = args.underlay_cidr or hostns.prefix_of(node_ip)
    state = os.path.join(args.state_dir, node)
    os.makedirs(state, mode=0o700, exist_ok=True)
    install.install(args.cni_bin_dir)
    ns_path = hostns.name_current("pn-%s-%s" % (TAG, node))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    wake = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: wake.set())
    if args.in_cluster:
        objects = Cluster(Client(config, user_agent="podnet-agent/" + node), stop)
    else:
        objects = connect(args.kubeconfig, "podnet-agent/" + node, stop)
    objects.client.wait_ready(stop)
    routing = RoutingReconciler(
        args.routing,
        node,
        objects,
        underlay,
        args.cluster_cidr,
        ns_path,
        os.path.join(state, "bird"),
        False,
        None,
        upstreams=[],
        encryption="none",
        node_dir=state,
        dirty=wake,
    )
    extras = [
        ProxyReconciler(node, objects, args.cluster_cidr, state, mode=args.routing),
        PolicyReconciler(node, objects, args.cluster_cidr),
    ]
    agent = Agent(TAG, node, node_ip, objects, state, args.cni_bin_dir, routing=routing, extras=extras)
    agent.conf_dir = args.cni_conf_dir  # where a CRI runtime reads conflists
    logging.getLogger("podnet.agent").info(
        "host agent: node %s, InternalIP %s, underlay %s, CNI %s + %s",
        node,
        node_ip,
        underlay,
        args.cni_bin_dir,
        args.cni_conf_dir,
    )
    if args.no_kubelet:
        run_without_kubelet(agent, stop)
    else:
        agent.run(stop)
    return 0


def run_without_kubelet(agent, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """The agent beside another kubelet: the Node's registration and
    heartbeat, its conflist and CNI daemon (the runtime's CNI ADD reaches
    them), routing, Services and NetworkPolicy; no pods of its own."""
    from podnet.agent import node as node_mod
    from podnet.agent import sandbox
    from podnet.agent.agent import HEARTBEAT

    os.makedirs(agent.dir, exist_ok=True)
    agent.register()
    agent.write_conflist(node_mod.wait_pod_cidr(agent, stop))
    sandbox.start_cni_daemon(agent)
    threads = [threading.Thread(target=agent.routing.run, args=(stop,), daemon=True, name="routing")]
    threads += [threading.Thread(target=r.run, args=(stop,), daemon=True, name=type(r).__name__) for r in agent.extras]
    for t in threads:
        t.start()
    while not stop.wait(HEARTBEAT):
        try:
            agent.register()
        except Exception as exc:  # noqa: BLE001 - the next beat retries
            logging.getLogger("podnet.agent").warning("heartbeat: %s", exc)
    agent.cni_server.shutdown()
    for t in threads[1:]:  # reconcilers hand back what others must take over (LB IPs)
        t.join(5)
    node_mod.mark_stopped(agent)


def add_arguments(ag: argparse.ArgumentParser) -> None:
    """The host options of `podnet agent` (and its `join` verb)."""
    ag.add_argument(
        "--node-ip", default=None, help="the node's InternalIP (default: the address toward the API server)"
    )
    ag.add_argument("--state-dir", default=DEFAULT_STATE, help="per-node state (default %(default)s)")
    ag.add_argument("--cni-bin-dir", default="/opt/cni/bin", help="where the CNI executables go (default %(default)s)")
    ag.add_argument("--cni-conf-dir", default="/etc/cni/net.d", help="where the conflist goes (default %(default)s)")
    ag.add_argument(
        "--routing",
        choices=["vxlan", "host-gw", "bgp"],
        default="vxlan",
        help="cross-node routing (default %(default)s)",
    )
    ag.add_argument("--cluster-cidr", default="10.244.0.0/16")
    ag.add_argument(
        "--underlay-cidr", default=None, help="the nodes' segment (default: the prefix of --node-ip's interface)"
    )
    ag.add_argument("--no-kubelet", action="store_true", help="no pods: routing, Services and NetworkPolicy only")
    ag.add_argument(
        "--in-cluster",
        action="store_true",
        help="the pod's service account (KUBERNETES_SERVICE_HOST/_PORT, token and CA), as in deploy/kubernetes/",
    )
    sub = ag.add_subparsers(dest="agent_cmd")
    j = sub.add_parser("join", help="exchange a bootstrap token for this node's credentials (kubeadm join)")
    j.add_argument("server", help="https://ADDR:PORT of podnet server")
    j.add_argument("--token", required=True)
    j.add_argument("--ca-cert-hash", required=True)
    j.add_argument("--node", default=None, help="this node's name (default: the hostname)")
    j.add_argument(
        "--kubeconfig", default=None, help="where its credentials go (default %s)" % join_mod.DEFAULT_KUBECONFIG
    )
