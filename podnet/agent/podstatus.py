"""A running pod's status, in the shape kubelet writes (pure: reads the
supervisors and probe verdicts, writes nothing).

- initContainerStatuses: one per spec.initContainers entry; one not run yet
  is waiting (PodInitializing); a completed one (exit 0) is ready.
- containerStatuses: waiting PodInitializing until every init container has
  completed; then each container's supervisor status, `started` (the
  startupProbe passed, or there is none) and `ready` (started and the
  readinessProbe passed, or there is none) for the running instance.
- phase: Pending while initializing; Failed when an init container failed
  for good (restartPolicy Never); Succeeded/Failed when every container
  terminated for good; else Running.
- conditions: Initialized, ContainersReady, Ready (with kubelet's reasons).
"""

import time

from podnet.client import NotFound, StatusError


def _waiting(c, reason, message=None):
    state = {"reason": reason}
    if message:
        state["message"] = message
    return {
        "name": c["name"],
        "ready": False,
        "started": False,
        "restartCount": 0,
        "image": c.get("image", ""),
        "imageID": "",
        "state": {"waiting": state},
        "lastState": {},
    }


def init_statuses(pod, rp):
    previous = {s.get("name"): s for s in rp.init_previous}  # an adopted pod's, as they were
    out = []
    for c in pod["spec"].get("initContainers") or []:
        sup = rp.init_sups.get(c["name"])
        if sup is None:
            out.append(
                previous.get(c["name"]) if rp.initialized and c["name"] in previous else _waiting(c, "PodInitializing")
            )
            continue
        st = sup.status()
        term = st["state"].get("terminated")
        st["ready"] = bool(term and term.get("exitCode") == 0)
        out.append(st)
    return out


def init_failed(rp):
    """An init container terminated non-zero and its policy will not retry it."""
    return any(s.finished and s.state["terminated"].get("exitCode") != 0 for s in rp.init_sups.values())


def container_statuses(pod, rp):
    out = []
    for c in pod["spec"]["containers"]:
        name = c["name"]
        if name in rp.errors:
            out.append(_waiting(c, "InvalidImageName", rp.errors[name]))
            continue
        sup = rp.supervisors.get(name)
        if sup is None:
            out.append(_waiting(c, "PodInitializing"))
            continue
        st = sup.status()
        running = "running" in st["state"]
        pid = sup.pid if running else None
        st["started"] = running and rp.prober.started(name, pid)
        st["ready"] = running and rp.prober.ready(name, pid)
        out.append(st)
    return out


def build(pod, rp, host_ip):
    """-> the pod's status."""
    inits = init_statuses(pod, rp)
    statuses = container_statuses(pod, rp)
    ready_all = rp.initialized and all(s["ready"] for s in statuses)
    failed_init = init_failed(rp)
    terms = [s["state"].get("terminated") for s in statuses]
    if failed_init:
        phase = "Failed"
    elif not rp.initialized or rp.errors:
        phase = "Pending"
    elif terms and all(terms):
        phase = "Succeeded" if all(t.get("exitCode") == 0 for t in terms) else "Failed"
    else:
        phase = "Running"

    def cond(t, ok, reason=None, message=None):
        c = {"type": t, "status": "True" if ok else "False"}
        if not ok and reason:
            c["reason"] = reason
            if message:
                c["message"] = message
        return c

    pending_init = [s["name"] for s in inits if not s["ready"]]
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    init_msg = "containers with incomplete status: [%s]" % " ".join(pending_init)
    ready_msg = "containers with unready status: [%s]" % " ".join(not_ready)
    status = {
        "phase": phase,
        "podIP": rp.ip,
        "podIPs": [{"ip": rp.ip}],
        "hostIP": host_ip,
        "startTime": rp.started,
        "containerStatuses": statuses,
        "conditions": [
            cond("PodScheduled", True),
            cond("Initialized", rp.initialized, "ContainersNotInitialized", init_msg),
            cond("ContainersReady", ready_all, "ContainersNotReady", ready_msg),
            cond("Ready", ready_all, "ContainersNotReady", ready_msg),
        ],
    }
    if inits:
        status["initContainerStatuses"] = inits
    return status


def stamp_transitions(status, before):
    """lastTransitionTime on each condition: kept from `before` (the last
    status written, or the stored one for an adopted pod) while the condition's
    status is the same, else now. The Deployment controller's minReadySeconds
    counts from the Ready condition's time, as upstream's does."""
    prev = {c.get("type"): c for c in (before or {}).get("conditions") or []}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for c in status["conditions"]:
        p = prev.get(c["type"])
        same = p is not None and p.get("status") == c["status"] and p.get("lastTransitionTime")
        c["lastTransitionTime"] = p["lastTransitionTime"] if same else now


def write(objects, pod, rp, host_ip):
    """Patch the pod's status when it changed since the last write."""
    status = build(pod, rp, host_ip)
    stamp_transitions(status, rp.last_status or pod.get("status"))
    if status == rp.last_status:
        return

    # one request: a JSON patch of the status subresource that applies only
    # to this pod (a pod of the same name made since has another uid)
    ops = [
        {"op": "test", "path": "/metadata/uid", "value": rp.uid},
        {"op": "replace", "path": "/status", "value": status},
    ]
    try:
        objects.patch("Pod", rp.ns, rp.name, ops, ptype="json", sub="status")
    except NotFound:
        return
    except StatusError as exc:
        if exc.code == 422:  # the uid test failed: not our pod any more
            return
        raise
    rp.last_status = status
