"""A podnet API server of one's own, for a test or a benchmark: its own
sqlite store (or a given store URL), CA and credentials in a directory,
listening on 127.0.0.1:<free port> in the root namespace and, when asked,
on 127.0.0.1:<same port> inside named network namespaces (for a server
process, such as the DNS, that runs in one). Started as a process and
stopped by its PID."""

import os
import socket
import subprocess
import sys
import time

from podnet.apiserver.certs import Pki, kubeconfig, write_kubeconfig


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ApiServer:
    def __init__(self, tmp_path, netns=(), store=None, port=None, args=()):
        self.dir = str(tmp_path)
        self.pki = Pki(os.path.join(self.dir, "pki"))
        self.pki.ensure_ca()
        self.pki.issue("apiserver", "kube-apiserver", server_names=("localhost",), server_ips=("127.0.0.1",))
        cert, key = self.pki.issue("admin", "kubernetes-admin", orgs=("system:masters",))
        self.port = port or free_port()
        self.server = "https://127.0.0.1:%d" % self.port
        self.kubeconfig = os.path.join(self.dir, "admin.kubeconfig")
        write_kubeconfig(self.kubeconfig, kubeconfig(self.server, self.pki.ca_cert, "admin", cert=cert, key=key))
        self.store = store or "sqlite://" + os.path.join(self.dir, "store.db")
        self.netns = list(netns)
        self.args = list(args)  # more flags, e.g. --service-node-port-range 30000-30099
        self.log = os.path.join(self.dir, "apiserver.log")
        self.proc = None
        self.start()

    def token_kubeconfig(self, user, name=None):
        path = os.path.join(self.dir, (name or user.replace(":", "-")) + ".kubeconfig")
        write_kubeconfig(path, kubeconfig(self.server, self.pki.ca_cert, user, token=self.pki.token_for(user)))
        return path

    def start(self):
        argv = [
            sys.executable,
            "-m",
            "podnet.apiserver.server",
            "--store",
            self.store,
            "--pki",
            self.pki.dir,
            "--listen",
            "127.0.0.1:%d" % self.port,
        ]
        for ns in self.netns:
            argv += ["--listen", "%s=127.0.0.1:%d" % (ns, self.port)]
        argv += self.args
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    with open(self.log) as f:
                        raise RuntimeError("API server did not start:\n" + f.read()[-3000:]) from None
                time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def cluster(self, user_agent="podnet-test"):
        from podnet.client import connect

        return connect(self.kubeconfig, user_agent)

    def client(self):
        return self.cluster().client
