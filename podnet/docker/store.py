"""The records of the Docker modes: one JSON file per container and per
network, under <lab state>/docker/ (so `podnet lab down` removes them with
the rest of the lab's state).

    docker/lock                      flock: one writer at a time (check-then-create)
    docker/containers/NAME.json      a container (names are unique in the lab)
    docker/networks/NODE/NAME.json   a user-defined network of a node
    docker/net.d/NODE/NAME.conflist  the CNI config list of each network
    docker/ipam/NODE/                podnet-ipam's dataDir for the node's networks
    docker/cni-cache/                libcni's result cache (prevResult for DEL)
    docker/run/NAME/                 a container's log and resolv.conf

Several `podnet` processes (the CLI, shims, DNS servers) read these files;
writes go through a temporary file and rename, so a reader never sees half
a record.
"""

import fcntl
import json
import os
import shutil
from contextlib import contextmanager

from podnet.lab import topology as topo


class Store:
    def __init__(self, lab):
        self.lab = lab
        self.root = os.path.join(topo.state_dir(lab), "docker")

    def exists(self):
        """False once `lab down` removed the lab (a late writer must not recreate it)."""
        return os.path.isdir(topo.state_dir(self.lab))

    @contextmanager
    def lock(self):
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # ---- paths -------------------------------------------------------------

    def conf_dir(self, node):
        return os.path.join(self.root, "net.d", node)

    def ipam_dir(self, node):
        return os.path.join(self.root, "ipam", node)

    def cache_dir(self):
        return os.path.join(self.root, "cni-cache")

    def run_dir(self, name):
        return os.path.join(self.root, "run", name)

    def _cpath(self, name):
        return os.path.join(self.root, "containers", name + ".json")

    def _npath(self, node, name):
        return os.path.join(self.root, "networks", node, name + ".json")

    # ---- records -----------------------------------------------------------

    @staticmethod
    def _read(path):
        try:
            with open(path) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def _write(self, path, doc):
        if not self.exists():
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, path)

    def container(self, name):
        return self._read(self._cpath(name))

    def containers(self):
        d = os.path.join(self.root, "containers")
        try:
            names = sorted(n[:-5] for n in os.listdir(d) if n.endswith(".json"))
        except FileNotFoundError:
            return []
        return [c for c in (self.container(n) for n in names) if c]

    def save_container(self, doc):
        self._write(self._cpath(doc["name"]), doc)

    def update_container(self, name, **fields):
        """Read-modify-write of one record under the lock; None when it is gone."""
        with self.lock():
            doc = self.container(name)
            if doc is None:
                return None
            doc.update(fields)
            self.save_container(doc)
            return doc

    def delete_container(self, name):
        try:
            os.unlink(self._cpath(name))
        except FileNotFoundError:
            pass
        shutil.rmtree(self.run_dir(name), ignore_errors=True)

    def network(self, node, name):
        return self._read(self._npath(node, name))

    def networks(self, node=None):
        base = os.path.join(self.root, "networks")
        out = []
        try:
            nodes = sorted(os.listdir(base)) if node is None else [node]
        except FileNotFoundError:
            return out
        for n in nodes:
            try:
                files = sorted(f for f in os.listdir(os.path.join(base, n)) if f.endswith(".json"))
            except FileNotFoundError:
                continue
            out += [d for d in (self._read(os.path.join(base, n, f)) for f in files) if d]
        return out

    def save_network(self, doc):
        self._write(self._npath(doc["node"], doc["name"]), doc)

    def delete_network(self, node, name):
        try:
            os.unlink(self._npath(node, name))
        except FileNotFoundError:
            pass
