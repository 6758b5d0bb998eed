"""`podnet server`: the API server and the controllers as one standalone
service, for clusters of real hosts (no lab).

Its data directory holds what kubeadm keeps in /etc/kubernetes: the CA and
the serving certificate (pki/), the bearer tokens of every identity, the
bootstrap tokens, the admin kubeconfig and the controllers'. The serving
certificate is issued again at every start, so a changed --bind or
--advertise-address is in its names at once (the CA stays, so joined nodes
keep trusting it).

On start it prints the join command, as `kubeadm init` does:
`podnet agent join https://ADDR:PORT --token T --ca-cert-hash sha256:...`,
also written to <data dir>/join-command for scripts.

One process: the controllers run in threads beside the API server's event
loop and talk to it over HTTPS with their own token, as they would from
another machine. SIGTERM ends both.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import threading

from podnet.apiserver import bootstrap
from podnet.apiserver.certs import Pki, kubeconfig, write_kubeconfig
from podnet.hosts import clusterdns

log = logging.getLogger("podnet.server")
DEFAULT_DIR = "/var/lib/podnet-server"
DEFAULT_BIND = "0.0.0.0:6443"
SERVICE_IP = "10.96.0.1"


def store_url(spec: str, data_dir: str) -> str:
    """`sqlite:PATH` (relative to the data dir), `sqlite:///abs`, `etcd://h:p,...`."""
    if spec.startswith("etcd://") or spec.startswith("sqlite:///"):
        return spec
    if spec.startswith("sqlite:"):
        path = spec[len("sqlite:") :].removeprefix("//")
        return "sqlite://" + os.path.abspath(os.path.join(data_dir, path))
    raise ValueError("--store %r: use sqlite:PATH or etcd://host:2379[,host:2379...]" % spec)


def with_etcd_tls(url: str, cafile: str | None, certfile: str | None, keyfile: str | None) -> str:
    """--etcd-cafile/--etcd-certfile/--etcd-keyfile as the store URL's query (podnet.store.base.open_store)."""
    files = [("cacert", cafile), ("cert", certfile), ("key", keyfile)]
    if not any(v for _, v in files):
        return url
    if not url.startswith("etcd://"):
        raise ValueError("--etcd-cafile/--etcd-certfile/--etcd-keyfile: the store is not etcd")
    if not cafile:
        raise ValueError("--etcd-certfile/--etcd-keyfile need --etcd-cafile (the CA of etcd's certificate)")
    from urllib.parse import quote

    query = "&".join("%s=%s" % (k, quote(os.path.abspath(v))) for k, v in files if v)
    return url + ("&" if "?" in url else "?") + query


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("--bind %r: expected ADDR:PORT" % bind)
    return host.strip("[]"), int(port)


def advertise(bind_host: str, given: str | None) -> str:
    """The address nodes reach the server on: --advertise-address, the bound
    one, or (bound to all) the address of the host's default route."""
    if given:
        return given
    if bind_host not in ("0.0.0.0", "::"):
        return bind_host
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet: only the route lookup
        return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def local_server(bind_host: str, port: int) -> str:
    """Where this process's controllers reach the API server."""
    host = "127.0.0.1" if bind_host in ("0.0.0.0", "::") else bind_host
    return "https://%s:%d" % (host, port)


def prepare(data_dir: str, bind: str, advertise_address: str | None = None) -> dict[str, str]:
    """CA (once), serving certificate (every start), admin and controllers
    kubeconfigs. -> the paths and addresses the server runs with."""
    host, port = split_bind(bind)
    addr = advertise(host, advertise_address)
    pki = Pki(os.path.join(data_dir, "pki"))
    pki.ensure_ca()
    ips = sorted({"127.0.0.1", addr, SERVICE_IP} | ({host} if host not in ("0.0.0.0", "::") else set()))
    names = ("localhost", socket.gethostname(), "kubernetes", "kubernetes.default", "kubernetes.default.svc")
    pki.issue("apiserver", "kube-apiserver", server_names=names, server_ips=tuple(ips))
    url = "https://%s:%d" % (addr, port)
    admin = os.path.join(data_dir, "admin.kubeconfig")
    if not os.path.exists(admin):
        cert, key = pki.issue("admin", "kubernetes-admin", orgs=("system:masters",))
        write_kubeconfig(admin, kubeconfig(url, pki.ca_cert, "admin", cert=cert, key=key))
    ctl = os.path.join(data_dir, "controllers.kubeconfig")
    token = pki.token_for("system:kube-controller-manager")
    write_kubeconfig(ctl, kubeconfig(local_server(host, port), pki.ca_cert, "controllers", token=token))
    dns = os.path.join(data_dir, "coredns.kubeconfig")
    dns_token = pki.token_for(clusterdns.COREDNS_USER)
    write_kubeconfig(dns, kubeconfig(local_server(host, port), pki.ca_cert, "coredns", token=dns_token))
    return {"pki": pki.dir, "url": url, "addr": addr, "port": str(port), "admin": admin, "controllers": ctl, "dns": dns}


def join_command(data_dir: str, url: str, ttl: float) -> str:
    """A fresh bootstrap token and the command that uses it."""
    pki = Pki(os.path.join(data_dir, "pki"))
    token = bootstrap.create(pki, ttl)
    return "podnet agent join %s --token %s --ca-cert-hash %s" % (url, token, pki.ca_hash())


def _controllers(paths: dict[str, str], lb_pool: str, stop: threading.Event, dns: bool) -> None:
    from podnet.client import connect
    from podnet.controllers.manager import Manager
    from podnet.lab.lab import ensure_default_namespaces

    objects = connect(paths["controllers"], "podnet-controllers", stop)
    objects.client.wait_ready(stop)
    ensure_default_namespaces(objects)
    if dns:
        # as the admin, as `lab up` applies its addons: the controllers' own
        # identity needs no right to write Services
        clusterdns.install(connect(paths["admin"], "podnet-server", stop), paths["addr"], int(paths["port"]))
    Manager(objects, lb_pool=lb_pool).run(stop)


def run(args: argparse.Namespace) -> int:
    from podnet.apiserver.server import serve
    from podnet.controllers.planners import LB_POOL

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.makedirs(args.data_dir, mode=0o700, exist_ok=True)
    os.umask(0o077)  # the store, keys and tokens: root only
    try:
        url_of_store = store_url(args.store or "sqlite:store.db", args.data_dir)
        url_of_store = with_etcd_tls(url_of_store, args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile)
        ttl = bootstrap.parse_ttl(args.token_ttl)
        paths = prepare(args.data_dir, args.bind, args.advertise_address)
    except ValueError as exc:
        raise SystemExit("podnet server: %s" % exc) from None
    cmd = join_command(args.data_dir, paths["url"], ttl)
    with open(os.path.join(args.data_dir, "join-command"), "w") as f:
        f.write(cmd + "\n")
    print("podnet server: API on %s, store %s" % (paths["url"], url_of_store))
    print("admin kubeconfig: %s" % paths["admin"])
    print("join a node with (the token expires in %s):\n\n  %s\n" % (args.token_ttl, cmd), flush=True)
    stop = threading.Event()
    t = threading.Thread(
        target=_controllers,
        args=(paths, args.lb_pool or LB_POOL, stop, not args.no_cluster_dns),
        daemon=True,
        name="controllers",
    )
    t.start()
    dns = None
    if not args.no_cluster_dns:
        dns = clusterdns.start_server(paths["dns"], paths["addr"], os.path.join(args.data_dir, "dns.log"))
    try:
        service_cidr = args.service_cluster_ip_range
        asyncio.run(serve(url_of_store, paths["pki"], [args.bind], None, service_cidr))
    finally:
        stop.set()
        if dns is not None:  # the child we started, by its PID
            dns.terminate()
            dns.wait(10)
    return 0


def token_create(args: argparse.Namespace) -> int:
    """`podnet server token create`: a new join command for a running server."""
    with open(os.path.join(args.data_dir, "admin.kubeconfig")) as f:
        import yaml

        url = yaml.safe_load(f)["clusters"][0]["cluster"]["server"]
    print(join_command(args.data_dir, url, bootstrap.parse_ttl(args.ttl)))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("server", help="the API server and controllers as a standalone service (real hosts)")
    p.add_argument(
        "--data-dir", default=DEFAULT_DIR, help="CA, certificates, tokens, kubeconfigs (default %(default)s)"
    )
    p.add_argument(
        "--store", default=None, help="sqlite:PATH (default sqlite:store.db in the data dir) or etcd://h:2379,..."
    )
    p.add_argument("--etcd-cafile", default=None, help="TLS to etcd: the CA of its serving certificate")
    p.add_argument("--etcd-certfile", default=None, help="TLS to etcd: this server's client certificate")
    p.add_argument("--etcd-keyfile", default=None, help="TLS to etcd: its key")
    p.add_argument("--bind", default=DEFAULT_BIND, help="ADDR:PORT to serve HTTPS on (default %(default)s)")
    p.add_argument("--advertise-address", default=None, help="the address nodes reach the server on")
    p.add_argument("--token-ttl", default="24h", help="how long the printed join token lasts (default %(default)s)")
    p.add_argument("--lb-pool", default=None, help="the LoadBalancer IP pool (CIDR)")
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--no-cluster-dns", action="store_true", help="no DNS server and kube-dns Service on this host")
    p.set_defaults(server_run=run)
    ts = p.add_subparsers(dest="server_cmd")
    tok = ts.add_parser("token", help="bootstrap tokens")
    tc = tok.add_subparsers(dest="token_cmd", required=True)
    c = tc.add_parser("create", help="a new bootstrap token; prints the join command")
    c.add_argument("--data-dir", default=DEFAULT_DIR)
    c.add_argument("--ttl", default="24h")
    c.set_defaults(server_run=token_create)
