"""The agent's flow endpoint: GET /flows on the node's address, port
FLOWS_PORT (podnet.flows.collector), beside /metrics.

  GET /flows?since=SEQ&wait=S&pod=P&namespace=NS&verdict=V&limit=N
  -> {"node": ..., "last": SEQ, "flows": [record, ...]}

Records with seq above `since`, oldest first (a record changed since, e.g. a
connection that ended, comes again with a new seq). `wait` (at most 30 s)
makes it a long poll: the answer waits for the first new record. Following
is a loop of `since=<last of the previous answer>&wait=...`.
"""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

log = logging.getLogger("podnet.flows")
WAIT_MAX = 30.0
FILTERS = ("pod", "namespace", "verdict", "node")


def parse_query(qs):
    """(since, wait, limit, filters) from a query string; ValueError names the bad parameter."""
    q = {k: v[-1] for k, v in parse_qs(qs).items()}
    try:
        since = int(q.get("since", 0))
        wait = min(float(q.get("wait", 0)), WAIT_MAX)
        limit = int(q.get("limit", 0))
    except ValueError as exc:
        raise ValueError("bad query %r: %s" % (qs, exc)) from None
    if q.get("verdict") and q["verdict"] not in ("forwarded", "dropped", "rejected"):
        raise ValueError("bad verdict %r: forwarded, dropped or rejected" % q["verdict"])
    return since, max(wait, 0.0), limit, {k: q[k] for k in FILTERS if q.get(k)}


def answer(flowlog, qs):
    since, wait, limit, filters = parse_query(qs)
    last, recs = flowlog.query(since, wait, **filters)
    if limit:
        recs = recs[-limit:]
    return {"node": flowlog.node, "last": last, "flows": recs}


def serve(flowlog, addr, port):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            url = urlparse(self.path)
            if url.path != "/flows":
                return self._send(404, {"error": "not found: %s (try /flows)" % url.path})
            try:
                self._send(200, answer(flowlog, url.query))
            except ValueError as exc:
                self._send(400, {"error": str(exc)})

        def _send(self, code, doc):
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    try:
        srv = ThreadingHTTPServer((addr, port), Handler)
    except OSError as exc:
        log.warning("flows on %s:%d: %s", addr, port, exc)
        return None
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True, name="flows-http").start()
    return srv
