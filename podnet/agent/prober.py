"""Probe workers: one thread per probe of each container, as kubelet's
prober workers, so a slow or hanging probe (an exec probe with a long
timeoutSeconds) holds back nothing but itself: never another pod's start,
stop or status write, which the agent's loop does.

A worker's verdict belongs to one container instance (its PID): a restarted
container begins with the initial verdict at once (readiness and startup
False, liveness True), whatever the worker was doing, and the worker resets
its schedule (initialDelaySeconds from the new start) when it next wakes.
The agent kicks the pod's workers when a container starts or exits.

- startupProbe: until it succeeds, the container is not started and its
  liveness and readiness probes do not run; after a success it is not run
  again for that instance. failureThreshold failures in a row -> killed.
- livenessProbe: failureThreshold failures in a row -> the container is
  killed (the agent's `kill`: preStop, SIGTERM, SIGKILL after the grace) and
  restarted by the restart policy. The worker then holds until the container
  is a new instance, as kubelet's `onHold`.
- readinessProbe: the container's ready condition.

Every failure is reported through `event` (Warning Unhealthy), every change
of a verdict sets the agent's dirty event (a new status to write).
"""

import threading
import time

from podnet.agent import probes

KINDS = ("startup", "liveness", "readiness")
FIELD = {"startup": "startupProbe", "liveness": "livenessProbe", "readiness": "readinessProbe"}
TITLE = {"startup": "Startup", "liveness": "Liveness", "readiness": "Readiness"}


class Worker:
    def __init__(self, pod_prober, container, kind, spec, sup):
        self.pp, self.container, self.kind, self.sup = pod_prober, container, kind, sup
        self.state = probes.ProbeState(spec, kind)
        self.wake = threading.Event()
        self.stopped = False
        self.instance = None  # the PID the verdict is about
        self.on_hold = False
        self.thread = threading.Thread(
            target=self._loop, daemon=True, name="probe-%s-%s-%s" % (pod_prober.name, container, kind)
        )

    def verdict(self, pid):
        """The verdict about container instance `pid` (the initial one for a
        new instance the worker has not seen yet)."""
        if pid is None or pid != self.instance:
            return self.kind == "liveness"
        return self.state.result

    def _current(self):
        with self.sup.lock:
            return self.sup.pid if self.sup.running else None

    def _loop(self):
        while not self.stopped:
            self.wake.clear()
            try:
                timeout = self._step()
            except Exception:  # noqa: BLE001 - a probe's bug must not end its worker
                import logging

                logging.getLogger("podnet.agent").exception("probe %s of %s", self.kind, self.container)
                timeout = self.state.period
            if not self.stopped:
                self.wake.wait(timeout)

    def _step(self):
        """One probe when due -> how long to sleep (None: until kicked)."""
        pid = self._current()
        if pid != self.instance:
            before = self.verdict(self.instance)
            self.instance, self.on_hold = pid, False
            self.state.reset()
            if before != self.verdict(pid):
                self.pp.changed()
        if pid is None or self.on_hold:
            return None
        if self.kind != "startup" and not self.pp.started(self.container, pid):
            return None  # the startup probe has not passed: neither liveness nor readiness runs
        if self.kind == "startup" and self.state.result:
            return None  # done for this instance
        now = time.monotonic()
        due = self.state.next_due()
        if now < due:
            return due - now
        ok, message = self.pp.run_probe(self.container, self.state.spec)
        if self.stopped or self._current() != pid:
            return 0  # the container changed while probing: this outcome is about the old one
        changed = self.state.record(ok, message)
        if not ok:
            self.pp.event("Warning", "Unhealthy", "%s probe failed: %s" % (TITLE[self.kind], message))
        if changed:
            self.pp.changed()
            if self.kind == "startup":
                self.pp.kick(self.container)  # liveness and readiness may run now
        if not ok and self.kind != "readiness" and self.state.failures >= self.state.failure_threshold:
            self.on_hold = True  # until the restarted instance
            self.pp.kill(self.container, self.kind)
            return None
        return max(0.0, self.state.next_due() - time.monotonic())

    def stop(self):
        self.stopped = True
        self.wake.set()


class PodProber:
    """The probe workers of one pod.

    run_probe(container, spec) -> (ok, message); event(type, reason, message);
    kill(container, kind) stops the container (the restart policy does the
    rest); dirty: set when a verdict changes."""

    def __init__(self, name, dirty, run_probe, event, kill):
        self.name, self.dirty = name, dirty
        self.run_probe, self.event, self.kill = run_probe, event, kill
        self.workers = {}  # (container, kind) -> Worker

    def add(self, spec, sup):
        """Workers for the probes of container `spec` (run by Supervisor `sup`)."""
        for kind in KINDS:
            if spec.get(FIELD[kind]):
                w = Worker(self, spec["name"], kind, spec[FIELD[kind]], sup)
                self.workers[(spec["name"], kind)] = w
                w.thread.start()

    def changed(self):
        self.dirty.set()

    def kick(self, container=None):
        """Wake the workers (of one container): it started, exited or passed its startup probe."""
        for (name, _), w in list(self.workers.items()):
            if container is None or name == container:
                w.wake.set()

    def started(self, container, pid):
        w = self.workers.get((container, "startup"))
        return w is None or w.verdict(pid)

    def ready(self, container, pid):
        w = self.workers.get((container, "readiness"))
        return self.started(container, pid) and (w is None or w.verdict(pid))

    def stop(self):
        for w in self.workers.values():
            w.stop()
