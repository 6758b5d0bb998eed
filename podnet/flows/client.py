"""Reading the agents' flow logs from this machine: the Python API of
`podnet flows` and of the lab's web view.

  fetch(lab, node=None, since=None, wait=0, **filters) -> (records, cursor)
      records of every node (or one), merged and sorted by time (a
      connection dropped on another node than its source's shows once, as
      the drop: model.merge);
      cursor {node: last seq} for the next call's `since`.
  follow(lab, node=None, stop=None, **filters) -> iterator of records
      as they come (long polls of every node in threads).

filters: pod ("name" or "ns/name"), namespace, verdict. Each agent serves
GET /flows on its node address (podnet.flows.http), reached from inside the
node's namespace.
"""

import json
import queue
import threading
from urllib.parse import urlencode

from podnet.flows import model
from podnet.flows.collector import FLOWS_PORT
from podnet.kernel import flowsrc
from podnet.lab import topology


class FlowsError(Exception):
    pass


def nodes_of(lab, node=None):
    doc = topology.load(lab)
    nodes = [(n["name"], n["ip"], topology.ns_name(lab, n["name"])) for n in doc["nodes"]]
    if node:
        nodes = [n for n in nodes if n[0] == node]
        if not nodes:
            raise FlowsError(
                "lab %s has no node %r (nodes: %s)" % (lab, node, ", ".join(n["name"] for n in doc["nodes"]))
            )
    return nodes


def get_node(ns_name, ip, query, timeout):
    """One GET /flows answer of the agent at ip, asked from inside ns_name."""
    s = flowsrc.connect(ns_name, ip, FLOWS_PORT, timeout)
    try:
        s.sendall(("GET /flows?%s HTTP/1.0\r\nHost: %s\r\n\r\n" % (query, ip)).encode())
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            chunks.append(b)
    except OSError as exc:
        raise FlowsError("GET flows of %s (%s): %s" % (ip, ns_name, exc)) from exc
    finally:
        s.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    doc = json.loads(body or b"{}")
    if status != [b"200"]:
        raise FlowsError("GET flows of %s: %s %s" % (ip, status, doc.get("error")))
    return doc


def _query(since, wait, filters):
    q = {k: v for k, v in filters.items() if v}
    if since:
        q["since"] = since
    if wait:
        q["wait"] = wait
    return urlencode(q)


def fetch(lab, node=None, since=None, wait=0, **filters):
    recs, cursor = [], {}
    for name, ip, ns in nodes_of(lab, node):
        doc = get_node(ns, ip, _query((since or {}).get(name, 0), wait, filters), timeout=wait + 10)
        cursor[name] = doc["last"]
        recs += doc["flows"]
    return model.merge(recs), cursor


def follow(lab, node=None, stop=None, since=None, **filters):
    """Records as they come, from every node; stop (a threading.Event) ends it."""
    stop = stop or threading.Event()
    out = queue.Queue()

    def poll(name, ip, ns):
        last = (since or {}).get(name, 0)
        while not stop.is_set():
            try:
                doc = get_node(ns, ip, _query(last, 10, filters), timeout=20)
            except (FlowsError, OSError, ValueError) as exc:
                out.put(exc)
                stop.wait(2.0)
                continue
            last = doc["last"]
            for r in doc["flows"]:
                out.put(r)

    for n in nodes_of(lab, node):
        threading.Thread(target=poll, args=n, daemon=True, name="flows-" + n[0]).start()
    while not stop.is_set():
        try:
            item = out.get(timeout=0.5)
        except queue.Empty:
            continue
        if not isinstance(item, Exception):
            yield item
