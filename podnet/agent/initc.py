"""Init containers, as kubelet runs them: in the order of
spec.initContainers, each to completion (exit 0) before the next starts, all
of them before any app container starts.

A failing one is retried under the pod's restartPolicy: Always and OnFailure
retry it with the crash-loop back-off (an init container that exits 0 is
done, so Always means OnFailure here); Never leaves it failed and the pod
goes Failed (podstatus.py). Each runs under a containers.Supervisor made
when its turn comes, so one not reached yet has no process and no status
but `waiting: PodInitializing`.
"""


def policy_for(pod_policy):
    """The Supervisor restart policy of an init container."""
    return "Never" if pod_policy == "Never" else "OnFailure"


def done(sup):
    term = sup.state.get("terminated")
    return term is not None and term.get("exitCode") == 0


def advance(pod, rp, new_supervisor):
    """Tick the init containers in order, making the next one's supervisor
    (new_supervisor(container spec)) when its turn comes -> True once all
    have completed. An adopted pod (the agent restarted) does not run again
    what its status says completed (rp.init_previous)."""
    previous = {s.get("name"): s for s in rp.init_previous}
    for c in pod["spec"].get("initContainers") or []:
        sup = rp.init_sups.get(c["name"])
        if sup is None:
            sup = rp.init_sups[c["name"]] = new_supervisor(c)
            before = previous.get(c["name"]) or {}
            if rp.adopt and ((before.get("state") or {}).get("terminated") or {}).get("exitCode") == 0:
                sup.restore(before)
                continue
        sup.tick()
        if not done(sup):
            return False
    return True
