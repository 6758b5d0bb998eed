"""The nginx the controller runs as its child, inside the ingress pod.

nginx runs in the foreground (`daemon off` in the rendered file) as a child
of the controller, with its pid file, temp paths and certificates under the
pod's run directory; it is stopped by its PID, never by name. A change is
loaded the way ingress-nginx does it: the new text is written beside the
live one, `nginx -t` checks it, and only then is it renamed over the live
file and the master gets SIGHUP: a graceful reload (new workers take new
connections, the old ones finish theirs and exit). A text nginx rejects is
never renamed, so the old configuration keeps serving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

NGINX = "/usr/sbin/nginx"


class NginxError(Exception):
    pass


class Nginx:
    def __init__(self, run_dir: str, binary: str = NGINX, on_exit: threading.Event | None = None):
        self.run_dir = run_dir
        self.on_exit = on_exit  # set when the master exits, so the controller starts it again now
        self.binary = binary
        self.conf = os.path.join(run_dir, "nginx.conf")
        self.cert_dir = os.path.join(run_dir, "certs")
        self.proc: subprocess.Popen[bytes] | None = None
        self.reloads = 0
        self.stopping = False
        for d in (run_dir, self.cert_dir, os.path.join(run_dir, "tmp")):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def write_files(self, files: dict[str, bytes]) -> None:
        """Certificate files (key + chain), mode 0600; names carry a content
        hash, so a file the live config reads is never rewritten."""
        for name, data in files.items():
            path = os.path.join(self.cert_dir, name)
            if os.path.exists(path):
                continue
            tmp = path + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.rename(tmp, path)

    def prune_files(self, keep: set[str]) -> None:
        for name in os.listdir(self.cert_dir):
            if name not in keep:
                os.unlink(os.path.join(self.cert_dir, name))

    def test(self, text: str) -> str | None:
        """nginx -t on `text`: None if nginx takes it, else nginx's complaint."""
        new = self.conf + ".new"
        with open(new, "w") as f:
            f.write(text)
        r = subprocess.run(
            [self.binary, "-t", "-q", "-p", self.run_dir, "-e", "stderr", "-c", new],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode == 0:
            return None
        lines = [ln.strip() for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        return "; ".join(ln.replace(new, "nginx.conf") for ln in lines if "test failed" not in ln) or "exit %d" % (
            r.returncode
        )

    def load(self, text: str) -> None:
        """Make a tested text live: start nginx, or reload the running one."""
        new = self.conf + ".new"
        with open(new, "w") as f:
            f.write(text)
        os.rename(new, self.conf)
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        else:
            os.kill(self.proc.pid, signal.SIGHUP)
            self.reloads += 1

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None  # it died: start a new one
        proc = self.proc = subprocess.Popen(
            [self.binary, "-p", self.run_dir, "-e", "stderr", "-c", self.conf],
            stdin=subprocess.DEVNULL,
        )
        if self.on_exit is not None:
            threading.Thread(target=self._watch, args=(proc,), daemon=True, name="nginx-exit").start()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        if self.on_exit is not None and not self.stopping:
            self.on_exit.set()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGQUIT (graceful: finish the requests in flight), SIGKILL after timeout."""
        self.stopping = True
        p = self.proc
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, signal.SIGQUIT)
        deadline = time.monotonic() + timeout
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
