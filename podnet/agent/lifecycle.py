"""Stopping a container as kubelet's killContainer does: its preStop hook
first, then SIGTERM to the container, SIGKILL when the grace period is over.

The grace period counts from the hook's start: what the hook took is taken
off what SIGTERM gets (but SIGTERM always gets at least 2 s, kubelet's
minimumGracePeriodInSeconds). A hook that fails or runs over is reported
(Warning FailedPreStopHook) and the stop goes on.

preStop handlers: exec (the command in the pod's namespaces, with the pod's
hostname, resolv.conf and hosts file, as `podnet exec`), httpGet (from the
node to the pod IP, as kubelet), sleep.seconds. postStart is refused by the
API's validation (podnet/api/podspec.py), so it never reaches here.
"""

import logging
import subprocess
import threading
import time

from podnet.agent import containers, probes
from podnet.kernel import netns

log = logging.getLogger("podnet.agent")
DEFAULT_GRACE = 30  # terminationGracePeriodSeconds when the pod does not say (as Kubernetes)

MIN_GRACE_AFTER_HOOK = 2.0


def run_handler(handler, pod_ip, netns_path, hostname, timeout, resolv_conf=None, stopped=None):
    """Run one lifecycle handler -> (ok, message). stopped: an Event that ends a sleep early."""
    timeout = max(0.0, float(timeout))
    if handler.get("exec") is not None:
        command = handler["exec"].get("command") or []
        try:
            res = containers.exec_in(netns_path, command, hostname=hostname, timeout=timeout, resolv_conf=resolv_conf)
        except subprocess.TimeoutExpired:
            return False, "command %r timed out after %gs" % (list(command), timeout)
        except (OSError, ValueError, containers.ContainerError) as e:
            return False, "command %r: %s" % (list(command), e)
        if res.returncode != 0:
            out = ((res.stdout or "") + (res.stderr or "")).strip()
            return False, "command %r exited with %d: %s" % (list(command), res.returncode, out)
        return True, ""
    if handler.get("httpGet") is not None:
        return probes.probe(
            {"httpGet": handler["httpGet"], "timeoutSeconds": timeout or 1},
            pod_ip,
            netns_path,
            hostname,
            from_netns=probes.OWN_NETNS,
        )
    if handler.get("sleep") is not None:
        seconds = min(float(handler["sleep"].get("seconds") or 0), timeout)
        (stopped or threading.Event()).wait(seconds)
        return True, ""
    return False, "lifecycle handler has no action (exec, httpGet or sleep)"


def stop_container(sup, spec, grace, hook=None, on_hook_failed=None, kill_only=False):
    """preStop (when the container runs and has one), then stop `sup`:
    for good (pod deleted), or kill_only (a failed liveness or startup
    probe: the restart policy restarts it). hook(handler, timeout) -> (ok,
    message) runs the handler; on_hook_failed(message) reports a failure."""
    pre = (spec.get("lifecycle") or {}).get("preStop")
    t0 = time.monotonic()
    if pre and sup.running and hook is not None:
        ok, message = hook(pre, grace)
        if not ok and on_hook_failed is not None:
            on_hook_failed(message)
        grace = max(MIN_GRACE_AFTER_HOOK, grace - (time.monotonic() - t0))
    if kill_only:
        sup.kill(grace)
    else:
        sup.stop(grace)


# ---- the agent's handles (a RunningPod rp, its spec in rp.pod) -------------------


def probe_kill(agent, rp, name, kind):
    """A failed liveness or startup probe (on its worker's thread): preStop,
    SIGTERM, SIGKILL after the probe's terminationGracePeriodSeconds (else
    the pod's); the restart policy restarts it."""
    pod = rp.pod
    spec = next(c for c in pod["spec"]["containers"] if c["name"] == name)
    grace = spec[kind + "Probe"].get("terminationGracePeriodSeconds")
    if grace is None:
        grace = pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE)
    agent.event(pod, "Normal", "Killing", "Container %s failed %s probe, will be restarted" % (name, kind))
    stop_container(
        rp.supervisors[name], spec, grace, hook(agent, rp, name), hook_failed(agent, rp, name), kill_only=True
    )


def hook(agent, rp, name=None):
    """The pod's handler runner: hook(handler, timeout) -> (ok, message)."""

    def run(handler, timeout):
        if handler.get("exec") is not None and name is not None:  # an image container: podman exec
            from podnet.agent import oci

            done = oci.run_exec_handler(rp.log_dir, name, handler["exec"].get("command"), max(0.0, float(timeout)))
            if done is not None:
                return done
        spec = probes.resolve_named_ports(handler, rp.pod)
        return run_handler(spec, rp.ip, netns.path_of(rp.netns), rp.name, timeout, rp.resolv)

    return run


def hook_failed(agent, rp, name):
    """-> report(message): a failed preStop hook of container `name` (log and event)."""

    def report(message):
        log.warning("pod %s/%s: preStop hook of %s failed: %s", rp.ns, rp.name, name, message)
        agent.event(rp.pod, "Warning", "FailedPreStopHook", "PreStopHook of %s failed: %s" % (name, message))

    return report
