"""The process of a container, and stopping it by the PID we started.

As a pod's container (podnet/agent/containers.py), a container is a host
process forked inside its network namespace, in a session of its own (so
its group can be signalled as one). On top of that, depending on the mode:

  own UTS namespace     hostname = the container name (not in host mode,
                        which shares the node's, as Docker's does)
  own mount namespace   only on a user-defined network: a private mount
                        namespace where the container's resolv.conf (the
                        embedded DNS) is bind-mounted over /etc/resolv.conf,
                        as `ip netns exec` does with /etc/netns/NAME/

    unshare --uts --mount --propagation private -- sh -c SCRIPT HOST RESOLV ARGV...

Every step execs, so Popen.pid is the container's own process. The PID is
recorded with its start time (/proc/PID/stat field 22), so a later `podnet
stop` never signals a stranger that reused the PID.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

from podnet.agent.containers import DEFAULT_PATH, container_env, group_alive, signal_group
from podnet.docker.spec import DockerError
from podnet.kernel.netns import Netns, entered

SCRIPT = (
    "h=$0 r=$1; shift; "
    'if [ -n "$h" ]; then hostname "$h" 2>/dev/null || printf %s "$h" > /proc/sys/kernel/hostname '
    '|| { echo "podnet: cannot set hostname $h" >&2; exit 126; }; fi; '
    'if [ -n "$r" ]; then mount --bind "$r" /etc/resolv.conf '
    '|| { echo "podnet: cannot bind $r over /etc/resolv.conf" >&2; exit 126; }; fi; '
    'exec "$@"'
)


def check_runnable(argv):
    """Docker's 'executable file not found in $PATH', before anything is created."""
    if not argv:
        raise DockerError("give a command after --")
    path = os.environ.get("PATH") or DEFAULT_PATH
    first = argv[0]
    if "/" in first:
        if os.path.isfile(first) and os.access(first, os.X_OK):
            return
    elif shutil.which(first, path=path):
        return
    raise DockerError("%s: executable file not found in $PATH" % first)


def wrapped_argv(rec):
    flags = []
    if rec.get("hostname"):
        flags.append("--uts")
    if rec.get("resolv"):
        flags += ["--mount", "--propagation", "private"]
    if not flags:
        return list(rec["cmd"])
    unshare = shutil.which("unshare") or shutil.which("unshare", path=DEFAULT_PATH)
    if not unshare:
        raise DockerError("unshare (util-linux) is required to run containers")
    return [unshare, *flags, "--", "sh", "-c", SCRIPT, rec.get("hostname") or "", rec.get("resolv") or "", *rec["cmd"]]


def start(rec, stdin=subprocess.DEVNULL, stdout=None, stderr=None):
    """Fork the container inside rec["sandbox"] (a netns path) -> Popen."""
    env = container_env(rec.get("hostname") or socket.gethostname(), rec.get("env"))
    with Netns(rec["sandbox"]) as ns, entered(ns):
        return subprocess.Popen(
            wrapped_argv(rec),
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd="/",
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )


def start_time(pid):
    """Field 22 of /proc/PID/stat, or None when the PID is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError, ProcessLookupError, TypeError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def alive(rec):
    pid = rec.get("pid")
    return bool(pid) and rec.get("pidStart") is not None and start_time(pid) == rec["pidStart"]


def exit_code(returncode):
    """Popen.returncode -> Docker's exit code (128+N when killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def stop(rec, grace=10.0):
    """SIGTERM the container's process group, SIGKILL after `grace` seconds.
    Only when the recorded PID still is the process we started."""
    if not alive(rec):
        return False
    pgid = rec["pid"]
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + max(0.0, grace)
    while alive(rec) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(rec) or group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(rec) and time.monotonic() < deadline:
            time.sleep(0.02)
    return True


def enter_argv(rec, argv):
    """`podnet exec`: the container's namespaces (net, and its UTS and mount
    namespaces when it has its own) through its running process."""
    flags = ["--net"]
    if rec.get("hostname"):
        flags.append("--uts")
    if rec.get("resolv"):
        flags.append("--mount")
    return ["nsenter", "--target", str(rec["pid"]), *flags, "--", *argv]
