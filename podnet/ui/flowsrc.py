"""The flow log (podnet/flows: each agent's ring, served on GET /flows) into
the web view's feed.

`flow_view(record)` is pure: it turns one of podnet.flows' records into what
the page draws (both ends named the way the picture names its boxes: a pod
by "ns/name", a node by its name, anything else by its IP). `start()` runs a
thread that reads the newest records once (the page opens with some
history) and then every POLL seconds what is new on each node.

A record comes again when its connection ends (packets and bytes filled
in); `id` stays the same so the page updates that line instead of adding
one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from podnet.ui.feed import FEED_SIZE

log = logging.getLogger("podnet.ui")
Obj = dict[str, Any]
POLL = 1.0  # seconds between reads of every agent's ring


def end_view(end: Obj | None) -> Obj | None:
    """{kind, name, ip, port} of one end of a flow."""
    if not end:
        return None
    ip, port = end.get("ip"), end.get("port")
    if end.get("pod"):
        return {
            "kind": "pod",
            "name": "%s/%s" % (end.get("namespace") or "default", end["pod"]),
            "ip": ip,
            "port": port,
        }
    if end.get("node"):
        return {"kind": "node", "name": end["node"], "ip": ip, "port": port}
    if end.get("service"):
        return {"kind": "service", "name": "svc/%s" % end["service"], "ip": ip, "port": port}
    return {"kind": "ip", "name": None, "ip": ip, "port": port}


def _total(pair: Obj | None) -> int | None:
    if not pair:
        return None
    return int(pair.get("orig") or 0) + int(pair.get("reply") or 0)


def flow_view(rec: Obj) -> Obj:
    src, dst = rec.get("src") or {}, rec.get("dst") or {}
    t = rec.get("time")
    ident = "%s|%s|%s:%s|%s:%s|%s" % (
        rec.get("node"),
        rec.get("proto"),
        src.get("ip"),
        src.get("port"),
        dst.get("ip"),
        dst.get("port"),
        t,
    )
    svc = rec.get("service")
    dst_node = (rec.get("endpoint") or dst).get("node")
    return {
        "id": ident,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if isinstance(t, (int, float)) else t,
        "node": rec.get("node"),
        "via": rec.get("via"),
        "protocol": rec.get("proto"),
        "verdict": rec.get("verdict") or "forwarded",
        "reason": rec.get("reason") or "",
        "policies": list(rec.get("policies") or []),
        "src": end_view(src),
        "dst": end_view(dst),
        "endpoint": end_view(rec.get("endpoint")),
        "service": "%s/%s" % (svc.get("namespace"), svc.get("name")) if isinstance(svc, dict) else None,
        # where the drop happened, for the page's mark: at the destination's
        # end of the edge when the destination's node dropped it, else at the source's
        "dropAt": "dst" if rec.get("node") and rec.get("node") == dst_node else "src",
        "packets": _total(rec.get("packets")),
        "bytes": _total(rec.get("bytes")),
        "state": rec.get("state"),
    }


def own_traffic(rec: Obj, port: int) -> bool:
    """A connection to an agent's flow endpoint: the flow log's readers
    (this page among them), not the lab's traffic."""
    dst = rec.get("dst") or {}
    return dst.get("port") == port and bool(dst.get("node"))


def _run(lab: str, sink: Callable[[Obj], None], stop: threading.Event) -> None:
    from podnet.flows import client
    from podnet.flows.collector import FLOWS_PORT

    # short polls, not the agents' long poll: every read is a connection the
    # flow log itself records, and a long poll that answers at each new record
    # would wake on its own connection again and again
    cursor: dict[str, int] | None = None
    first = True
    while not stop.is_set():
        try:
            recs, cursor = client.fetch(lab, since=cursor)
        except Exception as exc:  # agents still starting, or one restarting
            log.warning("ui: reading the flow log of lab %s: %s", lab, exc)
            stop.wait(POLL * 2)
            continue
        mine = [r for r in recs if not own_traffic(r, FLOWS_PORT)]
        for rec in mine[-FEED_SIZE:] if first else mine:
            sink(flow_view(rec))
        first = False
        stop.wait(POLL)


def start(lab: str, sink: Callable[[Obj], None], stop: threading.Event) -> threading.Thread:
    """The flow-feed thread (a daemon: it ends with the process or when stop is set)."""

    def body() -> None:
        try:
            _run(lab, sink, stop)
        except Exception:  # the page keeps working without the feed
            log.exception("ui: the flow feed of lab %s stopped", lab)

    t = threading.Thread(target=body, daemon=True, name="ui-flows")
    t.start()
    return t
