"""`podnet lab ui [--lab L] [--port P]`: the lab's live web view on
http://127.0.0.1:P/ (podnet/ui/server.py serves it; docs/ui.md shows it).
It runs until interrupted; --port 0 takes any free port and prints it."""

import asyncio
import logging
import sys

DEFAULT_PORT = 8765


def add_parser(lab_sub, lab_arg):
    p = lab_sub.add_parser("ui", help="the lab's live web view on this machine's loopback (127.0.0.1)")
    lab_arg(p)
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (default %d; 0: any free)" % DEFAULT_PORT
    )
    p.set_defaults(ui_run=run)


def run(args):
    from podnet.lab import control
    from podnet.lab import topology as topo
    from podnet.ui import flowsrc
    from podnet.ui.server import View, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    lab = topo.pick_lab(args.lab)
    if not 0 <= args.port <= 65535:
        print("error: --port %d: not a TCP port" % args.port, file=sys.stderr)
        return 2
    cluster = control.cluster(lab, user_agent="podnet-ui")
    view = View(lab, cluster, topo.load)

    def ready(url):
        print("podnet lab ui: %s (lab %s; Ctrl-C stops it)" % (url, lab), flush=True)
        flowsrc.start(lab, view.add_flow, cluster.stop)

    try:
        asyncio.run(serve(view, args.port, ready))
    except OSError as exc:  # the port is taken, most likely
        print("error: serving the web view on 127.0.0.1:%d: %s" % (args.port, exc), file=sys.stderr)
        return 1
    finally:
        cluster.stop.set()
    return 0
