"""Log files rotated by size, as kubelet's container log manager does.

kubelet's defaults: containerLogMaxSize 10 MiB, containerLogMaxFiles 5 (the
live file plus up to 4 rotated ones), checked every 10 s. Here the rotated
files are `NAME.log.1` (newest) ... `NAME.log.4` (oldest).

A container (and every lab process) writes its stdout/stderr to a file it
opened with O_APPEND, which we cannot make it reopen, so rotation is
copy-truncate: copy NAME.log to NAME.log.1, then truncate NAME.log to 0; the
writer's next write lands at the new end. Lines written between the copy and
the truncate are lost (logrotate's copytruncate has the same window; it is
a few ms here). `kubectl logs` reads NAME.log, the newest lines; `-f`
notices the truncation and reads on from the start.

The limits come from the environment of the process that rotates, so a lab
(and a test) can set them for every agent it starts:

  PODNET_CONTAINER_LOG_MAX_SIZE   bytes, or a quantity: 10Mi, 200Ki, 1M
  PODNET_CONTAINER_LOG_MAX_FILES  at least 2 (the live file and one rotated)
  PODNET_CONTAINER_LOG_MONITOR_INTERVAL  seconds between checks (kubelet's
                                  containerLogMonitorInterval, 10 s)
  PODNET_LOG_MAX_SIZE / PODNET_LOG_MAX_FILES   the same for the lab's own
                                               process logs (<lab>/logs/*.log)
"""

import glob
import logging
import os
import re
import shutil
import threading

log = logging.getLogger("podnet.logrotate")

MAX_SIZE = 10 * 1024 * 1024  # kubelet containerLogMaxSize
MAX_FILES = 5  # kubelet containerLogMaxFiles
INTERVAL = 10.0  # kubelet's log manager checks every 10 s

_UNITS = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
}


def parse_size(text):
    """'10Mi' -> 10485760; plain bytes too. ValueError names the value."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]i?)?b?\s*", str(text), re.I)
    if not m:
        raise ValueError("log size %r: want bytes or a quantity such as 10Mi" % text)
    return int(m.group(1)) * _UNITS[(m.group(2) or "").lower()]


def limits(prefix="PODNET_CONTAINER_LOG", env=None):
    """(max size in bytes, max files, interval s) from the environment, else kubelet's defaults."""
    env = os.environ if env is None else env
    size = parse_size(env[prefix + "_MAX_SIZE"]) if env.get(prefix + "_MAX_SIZE") else MAX_SIZE
    files = int(env[prefix + "_MAX_FILES"]) if env.get(prefix + "_MAX_FILES") else MAX_FILES
    if size < 1:
        raise ValueError("%s_MAX_SIZE must be positive" % prefix)
    if files < 2:
        raise ValueError("%s_MAX_FILES must be at least 2 (the live file and one rotated)" % prefix)
    interval = float(env.get(prefix + "_MONITOR_INTERVAL") or INTERVAL)
    if interval <= 0:
        raise ValueError("%s_MONITOR_INTERVAL must be positive" % prefix)
    return size, files, interval


def rotated(path, max_files):
    """The rotated files of `path`, newest first: path.1 ... path.(max_files-1)."""
    return ["%s.%d" % (path, i) for i in range(1, max_files)]


def rotate(path, max_size, max_files):
    """Rotate `path` if it is larger than max_size. -> True if it did."""
    try:
        if os.path.getsize(path) <= max_size:
            return False
    except FileNotFoundError:
        return False
    older = rotated(path, max_files)
    # files beyond the limit (the limit was lowered) go first
    for extra in glob.glob(glob.escape(path) + ".*"):
        tail = extra[len(path) + 1 :]
        if tail.isdigit() and int(tail) >= max_files:
            os.unlink(extra)
    for i in range(len(older) - 1, 0, -1):  # .3 -> .4, ..., .1 -> .2 (the oldest drops off)
        if os.path.exists(older[i - 1]):
            os.replace(older[i - 1], older[i])
    tmp = older[0] + ".tmp"
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        # truncate right after the copy reached the end: the writer's O_APPEND
        # fd then continues at offset 0
        os.truncate(path, 0)
    os.replace(tmp, older[0])
    return True


def tail(path, n):
    """The last n lines of a rotated log: from `path`, and from `path.1`
    when the live file was just truncated. -> str ("" if there is none)."""
    lines = []
    for part in (path, path + ".1"):
        try:
            with open(part, errors="replace") as f:
                lines = f.readlines()[-(n - len(lines)) :] + lines
        except OSError:
            continue
        if len(lines) >= n:
            break
    return "".join(lines)


def rotate_all(patterns, max_size, max_files):
    """Rotate every file matching one of the glob patterns. -> rotated paths."""
    done = []
    for pattern in patterns:
        for path in glob.glob(pattern):
            try:
                if rotate(path, max_size, max_files):
                    done.append(path)
            except OSError as exc:  # the pod went away under us: next round
                log.warning("rotate %s: %s", path, exc)
    return done


def container_log_patterns(node_dir):
    """Where the agent writes its containers' logs: <node dir>/pods/<pod>/<container>.log."""
    return [os.path.join(glob.escape(node_dir), "pods", "*", "*.log")]


def start(patterns, stop, settings, name="logrotate"):
    """A daemon thread that rotates `patterns` every interval until `stop`.
    settings: (max size, max files, interval s), as limits() gives them."""
    max_size, max_files, interval = settings

    def loop():
        while not stop.wait(interval):
            try:
                rotate_all(patterns, max_size, max_files)
            except Exception as exc:  # never let the thread die: logs would grow unchecked
                log.warning("log rotation: %s", exc)

    t = threading.Thread(target=loop, daemon=True, name=name)
    t.start()
    return t


def start_for_agent(node_dir, stop):
    """The agent's log manager for its containers' logs."""
    return start(container_log_patterns(node_dir), stop, limits("PODNET_CONTAINER_LOG"), name="container-logs")


def start_for_lab(logs_dir, stop):
    """Rotation of the lab's own process logs (API server, controllers,
    agents, DNS, etcd: their stdout/stderr in <lab>/logs/*.log). BIRD
    rotates its own log (bird.log, 4 MB, one old file: podnet.routing.bgp)."""
    return start([os.path.join(glob.escape(logs_dir), "*.log")], stop, limits("PODNET_LOG"), name="lab-logs")
