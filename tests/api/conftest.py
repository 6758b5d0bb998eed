"""Fixtures for the tests that drive a lab through the Kubernetes API with
clients podnet did not write: the real kubectl (/usr/bin/kubectl) and the
official Python client (`kubernetes` from PyPI).

One lab per test module (bringing one up takes a few seconds), built with
the `Lab` helper of the kernel lab tests: its state under the module's tmp
dir (PODNET_STATE_ROOT), `lab down` in a finalizer also when a test fails,
and the same `leftovers` check afterwards. Background processes a test
starts (`kubectl get -w`, `kubectl port-forward`) are `Background`s,
stopped by their own PID.

The fixture names are specific (`kube_lab`, `kubectl_lab`, ...) so that
they do not shadow fixtures of other modules in this directory.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.helpers import wait_for
from tests.kernel.test_lab import EXAMPLE, Lab, leftovers

KUBECTL = "/usr/bin/kubectl"


class KubeLab(Lab):
    """A lab plus what a kubectl user has: its kubeconfig and port."""

    def __init__(self, name: str, state_root: str, work: str):
        super().__init__(name, state_root)
        self.state_root = state_root
        self.work = work  # scratch files of the module's tests (manifests, kubeconfigs)
        self.kubeconfig = ""
        self.kenv: dict[str, str] = {}

    @property
    def state(self) -> str:
        return os.path.join(self.state_root, self.name)

    def connect(self) -> None:
        """Read what `podnet lab kubeconfig` says, as a user would."""
        self.kubeconfig = self.run("lab", "kubeconfig", "--lab", self.name).stdout.strip()
        assert os.path.isfile(self.kubeconfig), self.kubeconfig
        # nothing of the machine's own kube config may leak in
        self.kenv = dict(self.env, KUBECONFIG=self.kubeconfig, HOME=self.work)

    @property
    def port(self) -> int:
        with open(os.path.join(self.state, "lab.json")) as f:
            return int(json.load(f)["api"]["port"])

    @property
    def ca_cert(self) -> str:
        return os.path.join(self.state, "pki", "ca.crt")

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60,
        kubeconfig: str | None = None,
    ) -> subprocess.CompletedProcess:
        env = dict(self.kenv, KUBECONFIG=kubeconfig) if kubeconfig else self.kenv
        res = subprocess.run(
            [KUBECTL, *args], capture_output=True, text=True, env=env, input=input, timeout=timeout, cwd=self.work
        )
        if check and res.returncode != 0:
            raise AssertionError(
                "kubectl %s -> %d\nstdout: %s\nstderr: %s" % (" ".join(args), res.returncode, res.stdout, res.stderr)
            )
        return res

    def kjson(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def procs(self) -> dict:
        with open(os.path.join(self.state, "procs.json")) as f:
            return json.load(f)


def kube_lab_fixture(tmp_path_factory, prefix: str, manifests=(EXAMPLE,)):
    """Generator for a module-scoped lab named `<prefix><pid>`."""
    if not os.access(KUBECTL, os.X_OK):
        pytest.fail("kubectl is missing at %s: ./setup.sh installs the kubectl package" % KUBECTL)
    root = str(tmp_path_factory.mktemp("labs"))
    work = str(tmp_path_factory.mktemp("work"))
    lab = KubeLab("%s%d" % (prefix, os.getpid() % 100000), root, work)
    try:
        args = ["lab", "up", "--name", lab.name, "--timeout", "90"]
        for m in manifests:
            args += ["-f", m]
        lab.run(*args, timeout=150)
        lab.connect()
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        shutil.rmtree(work, ignore_errors=True)
        assert leftovers(lab.name, root) == []


@pytest.fixture(scope="module")
def kubectl_lab(tmp_path_factory):
    """The example lab (Deployment web: 3 netexec pods, Service web, pod client)."""
    yield from kube_lab_fixture(tmp_path_factory, "k")


@pytest.fixture(scope="module")
def client_lab(tmp_path_factory):
    """The same example lab, for the official Python client's module."""
    yield from kube_lab_fixture(tmp_path_factory, "c")


# ---- background processes ----------------------------------------------------


class Background:
    """A process whose output lines are collected by a thread; stopped by
    its own PID (SIGTERM, then SIGKILL), also when the test fails."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None = None):
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, what: str, pred, timeout: float = 30):
        def found():
            if self.proc.poll() is not None and not any(pred(x) for x in self.lines):
                time.sleep(0.2)  # let the reader take the last lines
                if not any(pred(x) for x in self.lines):
                    raise AssertionError(
                        "%s exited (%s) before %s:\n%s"
                        % (self.proc.args[:3], self.proc.returncode, what, "\n".join(self.lines))
                    )
            return next((x for x in self.lines if pred(x)), None)

        return wait_for(what, found, timeout, every=0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our child, by PID
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def background():
    """Start background processes with background(argv, env); all are
    stopped when the test ends."""
    started: list[Background] = []

    def start(argv: list[str], env: dict[str, str], cwd: str | None = None) -> Background:
        b = Background(argv, env, cwd)
        started.append(b)
        return b

    try:
        yield start
    finally:
        for b in started:
            b.stop()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
