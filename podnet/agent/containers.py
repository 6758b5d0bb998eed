"""Containers as processes: what the node agent (kubelet role) runs for a pod.

podnet has no images and no root filesystems. A container is a host process
that lives in

* the pod's network namespace, shared by all containers of the pod (so they
  reach each other on localhost), and
* a UTS namespace of its own whose hostname is the pod name (the root
  namespace's hostname is never touched),

in a session of its own, so that its process group (it and the children it
starts) can be signalled as one. The chain is

    (fork inside the pod netns via netns.entered)
    unshare --uts -- sh -c 'hostname "$0"; exec "$@"' POD-NAME ARGV...

and every step execs, so Popen.pid is the container's own process: its exit
status (or the signal that killed it) is the container's.

No PID namespace: a container process that makes a session of its own
(daemonises) leaves the group and escapes `stop`; podnet.agent.reap finds
such processes by the container's own namespaces (and the pod's netns) and
kills them when the container's main process exits or the pod is deleted.

`Supervisor` applies restartPolicy with a crash-loop back-off and reports
the container in the shape of a Kubernetes containerStatuses entry.
"""

import os
import select
import shutil
import signal
import subprocess
import threading
import time

from podnet.kernel.netns import Netns, entered

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Agent environment passed on to containers (so `python -m podnet.workload`
# finds the same packages); everything else comes from the container spec.
PASS_ENV = ("PYTHONPATH", "LANG", "LC_ALL", "TZ")
# $0 = hostname, "$@" = the container argv. sethostname(2) through the
# `hostname` tool; /proc/sys/kernel/hostname (per UTS namespace) if it is missing.
SET_HOSTNAME = (
    'hostname "$0" 2>/dev/null || printf %s "$0" > /proc/sys/kernel/hostname '
    '|| { echo "podnet: cannot set hostname $0" >&2; exit 126; }; exec "$@"'
)
HOSTNAME_MAX = 63

RESTART_POLICIES = ("Always", "OnFailure", "Never")


class ContainerError(Exception):
    """A container cannot be started (the message is for the pod status)."""


def _tool(name):
    path = shutil.which(name) or shutil.which(name, path=DEFAULT_PATH)
    if not path:
        raise ContainerError("%s (util-linux) is required to run containers" % name)
    return path


def pod_hostname(name):
    """The hostname a pod gets: its name, cut to 63 characters as kubelet does
    (and without a trailing '-' or '.' after the cut)."""
    name = str(name)
    if len(name) > HOSTNAME_MAX:
        name = name[:HOSTNAME_MAX].rstrip("-.")
    if not name:
        raise ContainerError("empty hostname")
    return name


def container_env(hostname, env=None):
    """The environment of a container: PATH, HOME, HOSTNAME, a few passed-on
    agent variables, then `env` (a dict, or Kubernetes' [{name, value}] list;
    entries without a plain value (valueFrom) must be resolved by the caller
    and are skipped here)."""
    out = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "HOME": "/root", "HOSTNAME": hostname}
    for key in PASS_ENV:
        if key in os.environ:
            out[key] = os.environ[key]
    if isinstance(env, dict):
        out.update({str(k): str(v) for k, v in env.items()})
    elif env:
        for item in env:
            if "value" in item:
                out[str(item["name"])] = str(item["value"])
            elif "valueFrom" not in item:
                out[str(item["name"])] = ""
    return out


def _check_runnable(argv0, path, cwd):
    """FileNotFoundError now rather than a 127 from sh later."""
    if "/" in argv0:
        full = argv0 if os.path.isabs(argv0) else os.path.join(cwd or "/", argv0)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return
    elif shutil.which(argv0, path=path):
        return
    raise FileNotFoundError(
        2, "executable file not found in $PATH" if "/" not in argv0 else "no such executable file", argv0
    )


# $0 = hostname, $1 = the pod's resolv.conf, $2 = its hosts file (or ""),
# then the container argv. A mount namespace of its own (private propagation,
# as `ip netns exec` does for /etc/netns/NAME/) so the bind mounts over
# /etc/resolv.conf and /etc/hosts are seen by this container only; the
# host's files are never touched. One `mount` exec each: ~2 ms.
SET_HOSTNAME_RESOLV = (
    'hostname "$0" 2>/dev/null || printf %s "$0" > /proc/sys/kernel/hostname '
    '|| { echo "podnet: cannot set hostname $0" >&2; exit 126; }; '
    'mount --bind "$1" /etc/resolv.conf '
    '|| { echo "podnet: cannot bind $1 over /etc/resolv.conf" >&2; exit 126; }; '
    'if [ -n "$2" ]; then mount --bind "$2" /etc/hosts '
    '|| { echo "podnet: cannot bind $2 over /etc/hosts" >&2; exit 126; }; fi; '
    'shift 2; exec "$@"'
)
HOSTS_FILE = "etc-hosts"  # podnet.agent.hosts.FILE_NAME: beside the pod's resolv.conf


def wrap(argv, hostname, resolv_conf=None, hosts_file=None):
    """The argv that runs `argv` in a UTS namespace with `hostname` and, with
    resolv_conf (a file), in a mount namespace where /etc/resolv.conf is it
    and /etc/hosts is hosts_file, by default the pod's `etc-hosts` beside
    resolv_conf when there is one (so `podnet exec`, which passes only the
    pod's resolv.conf, sees the pod's hosts file as its containers do)."""
    if hostname is None:
        return list(argv)
    if resolv_conf:
        if hosts_file is None:
            sibling = os.path.join(os.path.dirname(resolv_conf), HOSTS_FILE)
            hosts_file = sibling if os.path.exists(sibling) else ""
        return [
            _tool("unshare"),
            "--uts",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            SET_HOSTNAME_RESOLV,
            pod_hostname(hostname),
            resolv_conf,
            hosts_file,
        ] + list(argv)
    return [_tool("unshare"), "--uts", "--", "sh", "-c", SET_HOSTNAME, pod_hostname(hostname)] + list(argv)


_wrap = wrap


def _popen_in(netns_path, argv, **kw):
    """Popen with the child forked inside netns_path (its setns'd thread)."""
    with Netns(netns_path) as ns, entered(ns):
        return subprocess.Popen(argv, start_new_session=True, close_fds=True, **kw)


def start(argv, netns_path, hostname, log_path, env=None, cwd=None, resolv_conf=None, hosts_file=None):
    """Start one container: argv in the pod netns, in its own UTS namespace
    with `hostname` (the pod name), stdout+stderr appended to log_path, in a
    new session. -> subprocess.Popen (pid = the container process).
    resolv_conf: a file bind-mounted over /etc/resolv.conf for this container
    (and hosts_file over /etc/hosts, see wrap).

    Raises FileNotFoundError when argv[0] is not an executable (so callers
    can report StartError), NetnsError when the netns is gone."""
    argv = [str(a) for a in argv]
    if not argv:
        raise ContainerError("empty command")
    name = pod_hostname(hostname)
    full_env = container_env(name, env)
    cwd = cwd or "/"
    _check_runnable(argv[0], full_env["PATH"], cwd)
    log_dir = os.path.dirname(os.path.abspath(log_path))
    os.makedirs(log_dir, exist_ok=True)
    log = open(log_path, "ab")
    try:
        proc = _popen_in(
            netns_path,
            _wrap(argv, name, resolv_conf, hosts_file),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
        )
    finally:
        log.close()
    proc.container_argv = argv
    proc.log_path = log_path
    return proc


def _live_in_group(pgid):
    """Is a process of group pgid still running (not a zombie)? A /proc scan."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def group_alive(pgid):
    """Is any process of process group pgid still running? Zombies do not
    count: orphans are reaped by pid 1 in its own time (here up to ~1 s)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return _live_in_group(pgid)


def signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def stop(proc, grace=10.0):
    """Stop a container we started: SIGTERM to its process group, up to
    `grace` seconds for the group to go, then SIGKILL to the group.
    Returns proc.returncode (negative = killed by that signal)."""
    if getattr(proc, "oci_stop", None) is not None:  # an image container: podman stops it (oci.py)
        return proc.oci_stop(grace)
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    proc.poll()
    if proc.returncode is not None and not group_alive(pgid):
        return proc.returncode
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + max(0.0, grace)
    while True:
        if proc.poll() is not None and not group_alive(pgid):
            return proc.returncode
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            proc.wait(min(left, 0.02))
        except subprocess.TimeoutExpired:
            pass
    signal_group(pgid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while group_alive(pgid) and time.monotonic() < deadline:  # orphans: init reaps them
        time.sleep(0.01)
    return proc.returncode


def kill_leftovers(proc):
    """After a container's main process exited: SIGKILL what it left in its
    group (a runtime tears the whole container down when pid 1 exits)."""
    if getattr(proc, "oci_cleanup", None) is not None:  # an image container: podman rm (oci.py)
        if proc.poll() is not None:
            proc.oci_cleanup()
        return
    if proc.poll() is not None and group_alive(proc.pid):
        signal_group(proc.pid, signal.SIGKILL)
    if proc.poll() is not None:  # daemonised children left the group: find them by namespace
        from podnet.agent import reap

        reap.kill_container_leftovers(proc)


def exec_in(
    netns_path, argv, hostname=None, timeout=30.0, input=None, env=None, cwd=None, resolv_conf=None, hosts_file=None
):
    """Run argv to completion in the pod's netns (and, with `hostname`, a UTS
    namespace of its own with that hostname) -> CompletedProcess (text).

    On timeout the whole process group is killed and subprocess.TimeoutExpired
    raised, as subprocess.run does. FileNotFoundError for a missing argv[0]."""
    argv = [str(a) for a in argv]
    if not argv:
        raise ContainerError("empty command")
    full_env = container_env(pod_hostname(hostname) if hostname else "", env)
    if not hostname:
        full_env.pop("HOSTNAME")
    cwd = cwd or "/"
    _check_runnable(argv[0], full_env["PATH"], cwd)
    proc = _popen_in(
        netns_path,
        _wrap(argv, hostname, resolv_conf, hosts_file),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full_env,
        cwd=cwd,
        text=True,
    )
    with proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, output=out, stderr=err) from None
        finally:
            kill_leftovers(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# ---- restartPolicy ------------------------------------------------------------


def _wait_exit(proc, on_exit):
    """Block until proc exits, then on_exit(): how the agent learns of a
    container's exit without polling. A pidfd neither reaps nor races with
    Popen (whose poll() still collects the status); a process gone already
    (or a kernel without pidfd_open) falls back to proc.wait()."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        fd = None
    except OSError:
        proc.wait()
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
    on_exit()


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def terminated_state(returncode, started_at, finished_at):
    """Popen.returncode -> a Kubernetes `terminated` state (128+N for signal N)."""
    state = {}
    if returncode < 0:
        state["exitCode"] = 128 - returncode
        state["signal"] = -returncode
    else:
        state["exitCode"] = returncode
    state["reason"] = "Completed" if state["exitCode"] == 0 else "Error"
    state["startedAt"] = started_at
    state["finishedAt"] = finished_at
    return state


class Supervisor:
    """One container under a restartPolicy.

    `start_fn()` starts the container and returns its Popen. The agent calls
    `tick()` when something changed: a tick starts the container when it is
    due (`next_start`), notices an exit, and schedules the restart the policy
    asks for. `on_exit` (when given) is called from a waiter thread the
    moment a started process exits, so the agent needs no polling:

      Always: after any exit; OnFailure: after a non-zero exit; Never: no.

    Restarts wait out a back-off (backoff_initial, doubling to backoff_max;
    back to backoff_initial once a run lasted backoff_reset seconds), shown as
    waiting/CrashLoopBackOff with the last exit in lastState, as kubelet does.
    A start_fn that raises is a StartError (exitCode 128) under the same policy.

    `ready` is the readiness verdict the agent's probes give (True without a
    readiness probe); status() reports it only while the container runs.
    """

    def __init__(
        self,
        spec,
        start_fn,
        restart_policy=None,
        backoff_initial=0.5,
        backoff_max=10.0,
        backoff_reset=None,
        clock=time.monotonic,
        on_exit=None,
    ):
        self.spec = spec
        self.on_exit = on_exit  # called (from a waiter thread) when a started process exits
        self.name = spec.get("name", "")
        self.image = spec.get("image", "")
        policy = restart_policy or spec.get("restartPolicy") or "Always"
        if policy not in RESTART_POLICIES:
            raise ValueError("restartPolicy must be one of %s, not %r" % (", ".join(RESTART_POLICIES), policy))
        self.restart_policy = policy
        self.start_fn = start_fn
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_reset = backoff_reset if backoff_reset is not None else 2 * backoff_max
        self.clock = clock
        self.lock = threading.RLock()
        self.proc = None
        self.pid = None
        self.restart_count = 0
        self.ready = True
        self.state = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state = {}
        self.stopped = False
        self._attempts = 0
        self._delay = backoff_initial
        self._next_start = clock()  # due at the first tick
        self._started_mono = None
        self._started_at = None
        self._pull_backoff = None  # (ImagePullBackOff still to show, delay) after a failed pull
        self.on_event = None  # on_event(type, reason, message): image pull Events

    # -- the loop ------------------------------------------------------------

    def tick(self):
        """Advance: notice an exit, (re)start when due. -> True if the state changed."""
        with self.lock:
            if self.stopped:
                return False
            changed = False
            now = self.clock()
            if self.proc is not None:
                if self.proc.poll() is None:
                    return False
                kill_leftovers(self.proc)
                self._exited(terminated_state(self.proc.returncode, self._started_at, now_rfc3339()), now)
                self.proc = None
                changed = True
            if self._next_start is not None and now >= self._next_start:
                if self._pull_backoff is not None and self._pull_backoff[0]:
                    self._back_off_pull(now)
                else:
                    self._pull_backoff = None
                    self._start(now)
                changed = True
            return changed

    def _start(self, now):
        self._next_start = None
        if self._attempts:
            self.restart_count += 1
        self._attempts += 1
        self._started_mono, self._started_at = now, now_rfc3339()
        try:
            proc = self.start_fn()
        except Exception as e:  # noqa: BLE001 - any failure to start is the container's StartError
            if getattr(e, "waiting_reason", None):  # the image cannot be had (oci.ImageError)
                self._image_failed(e, now)
                return
            state = {
                "exitCode": 128,
                "reason": "StartError",
                "message": str(e),
                "startedAt": self._started_at,
                "finishedAt": self._started_at,
            }
            self._exited(state, now)
            return
        self.proc, self.pid = proc, proc.pid
        self.image_id = getattr(proc, "image_id", "")
        self.state = {"running": {"startedAt": self._started_at}}
        if self.on_exit is not None:
            threading.Thread(
                target=_wait_exit, args=(proc, self.on_exit), daemon=True, name="exit-%s" % self.name
            ).start()

    def _back_off_pull(self, now):
        delay = self._pull_backoff[1]
        message = 'Back-off pulling image "%s"' % self.image
        self.state = {"waiting": {"reason": "ImagePullBackOff", "message": message}}
        if self.on_event is not None:
            self.on_event("Normal", "BackOff", message)
        self._pull_backoff = (False, delay)
        self._next_start = now + delay

    def _image_failed(self, e, now):
        """ErrImagePull (or ErrImageNeverPull, InvalidImageName) now, then
        ImagePullBackOff until the next attempt, as kubelet shows them; the
        container never ran, so no restart is counted."""
        self._attempts -= 1
        if self._attempts:  # _start counted this attempt as a restart
            self.restart_count -= 1
        reason = e.waiting_reason
        self.state = {"waiting": {"reason": reason, "message": str(e)}}
        if self.on_event is not None:
            self.on_event("Warning", "Failed", str(e))
        delay, self._delay = self._delay, min(self._delay * 2, self.backoff_max)
        self._pull_backoff = (reason == "ErrImagePull", delay)
        self._next_start = now + (min(1.0, delay) if reason == "ErrImagePull" else delay)

    def _exited(self, terminated, now):
        code = terminated["exitCode"]
        again = self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)
        if not again:
            self.state = {"terminated": terminated}
            return
        if now - self._started_mono >= self.backoff_reset:
            self._delay = self.backoff_initial
        delay, self._delay = self._delay, min(self._delay * 2, self.backoff_max)
        self.last_state = {"terminated": terminated}
        self.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off %gs restarting failed container=%s" % (delay, self.name),
            }
        }
        self._next_start = now + delay

    # -- the agent's handles -----------------------------------------------------------

    def kill(self, grace=10.0):
        """Stop the running process (a failed liveness probe); the next tick
        applies the restart policy to its exit. Blocks up to `grace`."""
        with self.lock:
            proc = self.proc
        if proc is not None:
            stop(proc, grace)
            if self.on_exit is not None:
                # stop() may have reaped it while the agent's tick polled
                # (Popen.poll() gives up when another thread holds its wait
                # lock): the exit waiter's wake-up alone could be lost
                self.on_exit()

    def stop(self, grace=10.0):
        """Stop for good (pod deleted): no more restarts. -> the status."""
        with self.lock:
            self.stopped = True
            proc, self.proc = self.proc, None
            self._next_start = None
        if proc is not None:
            stop(proc, grace)
            with self.lock:
                self.state = {"terminated": terminated_state(proc.returncode, self._started_at, now_rfc3339())}
        else:
            with self.lock:  # in back-off: its last exit is final now
                if "waiting" in self.state and self.last_state:
                    self.state, self.last_state = self.last_state, {}
        return self.status()

    @property
    def running(self):
        return "running" in self.state

    def restore(self, status):
        """Take over a finished container's status (a containerStatuses entry
        a previous agent wrote): nothing runs and nothing will."""
        with self.lock:
            self.state = {k: dict(v) for k, v in (status.get("state") or {}).items()}
            self.last_state = {k: dict(v) for k, v in (status.get("lastState") or {}).items()}
            self.restart_count = status.get("restartCount", 0)
            self._attempts, self._next_start = 1, None

    @property
    def next_start(self):
        """When the next (re)start is due (this supervisor's clock), or None."""
        return self._next_start

    @property
    def finished(self):
        """Terminated for good (the policy will not restart it)."""
        return "terminated" in self.state

    def status(self):
        """A Kubernetes containerStatuses entry."""
        with self.lock:
            doc = {
                "name": self.name,
                "image": self.image,
                # required by the API (clients such as the Python client insist);
                # a host program has no image digest
                "imageID": getattr(self, "image_id", ""),
                "ready": bool(self.running and self.ready),
                "started": self.running,
                "restartCount": self.restart_count,
                "state": {k: dict(v) for k, v in self.state.items()},
                "lastState": {k: dict(v) for k, v in self.last_state.items()},
            }
            if self.pid is not None:
                doc["containerID"] = "podnet://%d" % self.pid
            return doc


def starter(spec, netns_path, hostname, log_path):
    """The start function for a pod container spec (for Supervisor): the argv
    from podnet.workload.command_for, env and workingDir from the spec.
    Raises ContainerError (with the message for the pod) when podnet cannot
    run the spec."""
    from podnet.workload import command_for, why_not

    argv = command_for(spec)
    if argv is None:
        raise ContainerError(why_not(spec))

    def start_fn():
        return start(argv, netns_path, hostname, log_path, env=spec.get("env"), cwd=spec.get("workingDir"))

    return start_fn
