"""kubectl-like verbs against a lab: apply, get, describe, delete, exec, logs."""

import os
import sys

from podnet.api import KINDS, ApiError, resolve_kind
from podnet.lab import lab as labmod
from podnet.lab import topology as topo


def _err(msg):
    print("error: %s" % msg, file=sys.stderr)
    return 1


def _read(path):
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    files = []
    if os.path.isdir(path):
        files = [os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith((".yaml", ".yml", ".json"))]
    else:
        files = [path]
    texts = []
    for f in files:
        try:
            with open(f) as fh:
                texts.append((fh.read(), f))
        except OSError as exc:
            raise ApiError("%s: %s" % (f, exc.strerror)) from None
    return texts


def _sources(paths):
    out = []
    for p in paths:
        got = _read(p)
        out += [got] if isinstance(got, tuple) else got
    return out


def _client(args):
    """The lab's API server, as its admin: plain requests, no informers
    (a CLI command reads once)."""
    return labmod.objects_for(topo.pick_lab(args.lab)).client


def cmd_apply(args):
    lab = topo.pick_lab(args.lab)
    objects = labmod.objects_for(lab)
    from podnet.api import parse_manifests

    sources = _sources(args.filename)
    for text, src in sources:  # everything is validated before anything is written
        parse_manifests(text, src)
    for text, src in sources:
        for obj, what in labmod.apply_text(objects, text, src):
            print("%s/%s %s" % (obj["kind"].lower(), obj["metadata"]["name"], what))
    return 0


def _list(client, kind, namespace):
    return client.list(kind.kind, namespace if kind.namespaced else None)


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def cmd_get(args):
    """Tables come from the server (its columns are kubectl's); -o json,
    yaml and name print the objects."""
    from podnet.cli.printers import no_resources_message, render_get
    from podnet.cli.tableprint import render_table
    from podnet.client.rest import collection_path, object_path

    client = _client(args)
    kind = resolve_kind(args.kind)
    ns = None if args.all_namespaces else (args.namespace or "default")
    if args.output in (None, "wide") and kind.stored:
        q = {"labelSelector": args.selector}
        if args.name:
            tab = client.request("GET", object_path(kind, ns, args.name), query=q, accept=TABLE)
        else:
            tab = client.request("GET", collection_path(kind, ns if kind.namespaced else None), query=q, accept=TABLE)
        text = render_table(
            tab, wide=args.output == "wide", all_namespaces=args.all_namespaces, namespaced=kind.namespaced
        )
        if not text:
            print(no_resources_message(kind.kind, ns or "default", args.all_namespaces), file=sys.stderr)
        else:
            print(text)
        return 0
    if args.name and kind.stored:
        items = [client.get(kind.kind, ns if kind.namespaced else None, args.name)]
    else:
        items = _list(client, kind, ns)
        if args.name:
            items = [o for o in items if o["metadata"]["name"] == args.name]
            if not items:
                return _err('%s "%s" not found' % (kind.plural, args.name))
    if args.selector:
        from podnet.api import matches, parse_selector

        sel = parse_selector(args.selector)
        items = [o for o in items if matches(sel, o["metadata"].get("labels", {}))]
    text = render_get(
        kind.kind,
        items,
        output=args.output,
        all_namespaces=args.all_namespaces,
        single=bool(args.name),
        namespace=ns or "default",
    )
    stream = sys.stderr if not items and args.output in (None, "wide") else sys.stdout
    print(text, file=stream)
    return 0


def cmd_describe(args):
    from podnet.cli.printers import render_describe

    objects = _client(args)
    kind = resolve_kind(args.kind)
    ns = args.namespace or "default"
    items = _list(objects, kind, ns)
    if args.name:
        items = [o for o in items if o["metadata"]["name"] == args.name]
        if not items:
            return _err('%s "%s" not found' % (kind.plural, args.name))
    pods = objects.list("Pod")
    for obj in items:
        related = {"pods": pods}
        if kind.kind == "Service":
            # the Endpoints the controllers mirror from the Service's slices
            ep = objects.find("Endpoints", ns, obj["metadata"]["name"])
            eps = [ep] if ep else []
            related["endpoints"] = [
                "%s:%s" % (a["ip"], p["port"])
                for e in eps
                for sub in e.get("subsets") or []
                for a in sub.get("addresses", [])
                for p in sub["ports"]
            ]
        if kind.kind == "NetworkPolicy":
            from podnet.api import matches

            sel = obj["spec"].get("podSelector", {})
            related["pods"] = [
                p
                for p in pods
                if p["metadata"]["namespace"] == obj["metadata"]["namespace"]
                and matches(sel, p["metadata"].get("labels", {}))
            ]
        if kind.kind == "Node":
            related["pods"] = [p for p in pods if p["spec"].get("nodeName") == obj["metadata"]["name"]]
        if kind.kind in ("Ingress", "HTTPRoute"):  # each backend's endpoints
            ons = obj["metadata"]["namespace"]
            related["services"] = {s["metadata"]["name"]: s for s in objects.list("Service", ons)}
            related["slices"] = objects.list("EndpointSlice", ons)
        if kind.kind == "Deployment":  # OldReplicaSets / NewReplicaSet
            related["replicasets"] = objects.list("ReplicaSet", obj["metadata"]["namespace"])
        uid = obj["metadata"].get("uid")
        events = (
            objects.list("Event", obj["metadata"].get("namespace") or "default", fields="involvedObject.uid=%s" % uid)
            if uid
            else []
        )
        print(render_describe(obj, events=events, related=related))
    return 0


def cmd_delete(args):
    objects = _client(args)
    targets = []
    if args.filename:
        from podnet.api import parse_manifests

        for text, src in _sources(args.filename):
            targets += [
                (KINDS[o["kind"]], o["metadata"].get("namespace"), o["metadata"]["name"])
                for o in parse_manifests(text, src)
            ]
    else:
        if not args.kind or not args.names:
            return _err("give KIND NAME... or -f FILE")
        kind = resolve_kind(args.kind)
        targets = [(kind, args.namespace or "default", n) for n in args.names]
    missing = [n for k, ns, n in targets if objects.find(k.kind, ns if k.namespaced else None, n) is None]
    if missing and not args.ignore_not_found:
        return _err("%s not found" % ", ".join('"%s"' % m for m in missing))
    for kind, ns, name in targets:
        obj = objects.find(kind.kind, ns if kind.namespaced else None, name)
        if obj is None:
            continue
        # a scheduled pod goes gracefully (its node's agent tears it down);
        # owned objects go with their owner (the API server's collector)
        objects.delete(kind.kind, ns if kind.namespaced else None, name)
        print('%s "%s" deleted' % (kind.kind.lower(), name))
    if args.wait:
        import time

        deadline = time.time() + 60
        while time.time() < deadline and any(
            objects.find(k.kind, ns if k.namespaced else None, n) for k, ns, n in targets if k.kind == "Pod"
        ):
            time.sleep(0.1)
    return 0


def cmd_exec(args):
    """pods/exec through the API server, as kubectl exec does (a websocket,
    interactive when both ends are terminals)."""
    lab = topo.pick_lab(args.lab)
    client = _client(args)
    ns = args.namespace or "default"
    pod = client.find("Pod", ns, args.pod)
    if pod is None:
        from podnet.cli import docker_cmds  # no such pod: a `podnet run` container of that name?

        if args.namespace is None and docker_cmds.has_container(lab, args.pod):
            return docker_cmds.exec_container(lab, args.pod, args.command)
        raise ApiError('pods "%s" not found' % args.pod)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        return _err("give a command after --")
    names = [c["name"] for c in pod["spec"]["containers"]]
    if args.container and args.container not in names:
        return _err("container %s is not valid for pod %s" % (args.container, args.pod))
    # kubectl's default: the annotated default container, else the first
    default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    container = args.container or (default if default in names else names[0])
    from podnet.client.stream import exec_in_pod

    return exec_in_pod(client.config, ns, args.pod, args.command, container, client.user_agent)


def cmd_logs(args):
    """The pod's log subresource, as kubectl logs reads it."""
    from podnet.client.rest import object_path

    client = _client(args)
    ns = args.namespace or "default"
    pod = client.get("Pod", ns, args.pod)
    names = [c["name"] for c in pod["spec"]["containers"]]
    container = args.container or (names[0] if len(names) == 1 else None)
    if container is None:
        return _err("pod %s has several containers (%s): choose one with -c" % (args.pod, ", ".join(names)))
    data = client.request(
        "GET",
        object_path(resolve_kind("Pod"), ns, args.pod, "log"),
        query={"container": container},
        accept="text/plain",
        raw=True,
    )
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0
