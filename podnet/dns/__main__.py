"""python -m podnet.dns serve ...: the cluster DNS server (or a static one).

    serve --kubeconfig FILE [--zone cluster.local]
          [--upstream IP[:PORT]]... [--listen 0.0.0.0] [--port 53] [--workers N]
          [--metrics-port 9153]
    serve --static FILE ...      records from FILE (`NAME [TTL] [IN] TYPE RDATA`
                                 lines, one SOA per zone): the lab's "internet"

Without --upstream, names outside the zone go to the nameservers of this
process's /etc/resolv.conf (a DNS pod has dnsPolicy Default: the node's).
"""

import argparse
import logging
import sys


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m podnet.dns")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve DNS on UDP and TCP")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--kubeconfig", help="the API server to read Services and EndpointSlices from")
    src.add_argument("--static", help="a file of static records instead of a cluster")
    s.add_argument("--zone", default="cluster.local")
    s.add_argument(
        "--upstream",
        action="append",
        default=None,
        help="resolver for other names (repeatable; default: /etc/resolv.conf's)",
    )
    s.add_argument("--no-forward", action="store_true", help="do not forward: names outside the zone get SERVFAIL")
    s.add_argument("--listen", default="0.0.0.0")
    s.add_argument("--port", type=int, default=53)
    s.add_argument("--workers", type=int, default=0, help="worker processes (default: one per CPU)")
    s.add_argument(
        "--metrics-port",
        type=int,
        default=9153,
        help="Prometheus page of queries, rcodes and latency on the --listen address (CoreDNS's 9153; 0: none)",
    )
    s.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    from podnet.dns import records, server
    from podnet.dns.forward import parse_upstreams, upstreams_from_resolv_conf

    if args.static:
        try:
            with open(args.static) as f:
                source = records.static(f.read().splitlines())
        except (OSError, ValueError) as exc:
            print("podnet dns: --static %s: %s" % (args.static, exc), file=sys.stderr)
            return 2
    else:
        source = server.api_source(args.kubeconfig, args.zone)
    upstreams = (
        []
        if args.no_forward
        else parse_upstreams(args.upstream if args.upstream is not None else upstreams_from_resolv_conf())
    )

    def make():
        return server.Server(source, upstreams, args.listen, args.port)

    try:
        server.run(make, args.workers, metrics_port=args.metrics_port)
    except OSError as exc:
        print("podnet dns: %s:%d: %s" % (args.listen, args.port, exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
