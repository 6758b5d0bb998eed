"""podman image stores: one of the machine (images built from Debian packages
or imported, shared read-only by every lab) and one per lab (its containers,
the images it pulled, their overlay mounts), so that `lab down` removes all
the lab made and nothing else.

podman runs here without systemd (cgroupfs, events to a file) and never with
a network of its own: containers join the pod's netns (`--network ns:`), so
podnet's CNI stays the only thing that sets up networking. Each store has a
storage.conf of its own (CONTAINERS_STORAGE_CONF) so no podman on the
machine, and no other lab, sees or touches it.
"""

import json
import os
import shutil
import signal
import subprocess
import time

MACHINE_DIR = os.environ.get("PODNET_IMAGE_DIR", "/var/lib/podnet/images")
GLOBAL_FLAGS = ("--cgroup-manager", "cgroupfs", "--events-backend", "file")


class StoreError(Exception):
    """A podman operation failed (the message names the operation and object)."""


def podman_bin():
    path = shutil.which("podman") or shutil.which("podman", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        raise StoreError("podman is required to run container images (apt-get install podman)")
    return path


class Store:
    """A podman storage (graphroot + runroot) with its own storage.conf."""

    def __init__(self, base, shared=None):
        self.base = base
        self.root = os.path.join(base, "root")
        self.runroot = os.path.join(base, "run")
        self.tmp = os.path.join(base, "tmp")
        self.conf = os.path.join(base, "storage.conf")
        self.shared = shared  # a read-only store whose images this one sees

    def ensure(self):
        for d in (self.root, self.runroot, self.tmp):
            os.makedirs(d, exist_ok=True)
        lines = [
            "[storage]",
            'driver = "overlay"',
            'graphroot = "%s"' % self.root,
            'runroot = "%s"' % self.runroot,
            "[storage.options]",
        ]
        if self.shared is not None:
            lines.append('additionalimagestores = ["%s"]' % self.shared.root)
        text = "\n".join(lines) + "\n"
        try:
            with open(self.conf) as f:
                if f.read() == text:
                    return self
        except FileNotFoundError:
            pass
        with open(self.conf + ".tmp", "w") as f:
            f.write(text)
        os.replace(self.conf + ".tmp", self.conf)
        return self

    def env(self):
        env = dict(os.environ)
        env["CONTAINERS_STORAGE_CONF"] = self.conf
        env["TMPDIR"] = self.tmp  # podman import/load unpack here, not in /var/tmp
        return env

    def argv(self, *args):
        """The podman command line for this store (also what exec uses)."""
        return (
            ["env", "CONTAINERS_STORAGE_CONF=" + self.conf, "TMPDIR=" + self.tmp, podman_bin()]
            + list(GLOBAL_FLAGS)
            + [str(a) for a in args]
        )

    def run(self, what, *args, timeout=120.0, check=True, input=None):
        """Run `podman ARGS` -> CompletedProcess; StoreError naming `what` on failure."""
        self.ensure()
        argv = [podman_bin()] + list(GLOBAL_FLAGS) + [str(a) for a in args]
        try:
            res = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=timeout, input=input)
        except subprocess.TimeoutExpired as e:
            raise StoreError("%s: podman %s timed out after %gs" % (what, args[0], timeout)) from e
        if check and res.returncode != 0:
            raise StoreError("%s: %s" % (what, (res.stderr or res.stdout).strip() or "exit %d" % res.returncode))
        return res

    # ---- images -----------------------------------------------------------------

    def exists(self, name):
        return self.run("image exists %s" % name, "image", "exists", name, check=False).returncode == 0

    def inspect(self, name):
        """The image's config: {Id, Digest, Entrypoint, Cmd, Env, WorkingDir, User}."""
        res = self.run("inspect image %s" % name, "image", "inspect", name)
        doc = json.loads(res.stdout)[0]
        cfg = doc.get("Config") or {}
        return {
            "Id": doc.get("Id", ""),
            "Digest": doc.get("Digest", ""),
            "Entrypoint": cfg.get("Entrypoint") or [],
            "Cmd": cfg.get("Cmd") or [],
            "Env": cfg.get("Env") or [],
            "WorkingDir": cfg.get("WorkingDir") or "",
        }

    def pull(self, name, timeout=300.0, plain_http=False):
        """plain_http: the registry may answer without TLS (a lab's own registry)."""
        flags = ["--tls-verify=false"] if plain_http else []
        self.run("pull image %s" % name, "pull", "--quiet", *flags, name, timeout=timeout)

    def images(self):
        """[{name, id, size, created, readonly}] one per tag."""
        res = self.run("list images", "images", "--format", "json")
        out, seen = [], set()
        for img in json.loads(res.stdout or "[]"):
            for name in img.get("Names") or ["<none>"]:
                if (name, img.get("Id")) in seen:  # podman lists an image once per tag
                    continue
                seen.add((name, img.get("Id")))
                out.append(
                    {
                        "name": name,
                        "id": img.get("Id", "")[:12],
                        "size": img.get("Size", 0),
                        "created": img.get("Created", 0),
                        "readonly": bool(img.get("ReadOnly")),
                        "labels": img.get("Labels") or {},
                    }
                )
        return out

    def import_rootfs(self, tarball, names, changes, message=""):
        """`podman import` a rootfs tarball as names[0], tagged with the rest."""
        argv = ["import", "--quiet"]
        for c in changes:
            argv += ["--change", c]
        if message:
            argv += ["--message", message]
        res = self.run("import %s as %s" % (tarball, names[0]), *argv, tarball, names[0], timeout=300)
        for name in names[1:]:
            self.run("tag %s as %s" % (names[0], name), "tag", names[0], name)
        return res.stdout.strip()

    def load(self, tarball):
        """`podman load` an OCI or docker-archive tarball -> the names it loaded."""
        res = self.run("load %s" % tarball, "load", "--input", tarball, timeout=300)
        return [line.split(":", 1)[1].strip() for line in res.stdout.splitlines() if line.startswith("Loaded image")]

    def remove_image(self, name):
        self.run("remove image %s" % name, "rmi", "--force", name, check=False)

    # ---- containers ---------------------------------------------------------------

    def remove_container(self, name, timeout=0):
        self.run("remove container %s" % name, "rm", "--force", "--time", str(timeout), name, check=False)

    def container_ids(self):
        res = self.run("list containers", "ps", "--all", "--quiet", "--no-trunc", check=False)
        return res.stdout.split()


def machine():
    """The machine's image store (built and imported images)."""
    return Store(MACHINE_DIR)


def for_lab(state_dir):
    """A lab's store, under its state dir; it sees the machine's images."""
    return Store(os.path.join(state_dir, "podman"), shared=machine())


# ---- a lab's teardown ---------------------------------------------------------------


def _pids_mentioning(path):
    """PIDs whose command line names `path`: the conmon (and runc) of this
    store's containers carry its runroot in their arguments."""
    out = []
    needle = path.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                if needle in f.read():
                    out.append(int(entry))
        except OSError:
            continue
    return out


def mounts_under(path):
    """Mount points (from /proc/self/mountinfo) at or below `path`."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == path or point.startswith(path.rstrip("/") + "/"):
                out.append(point)
    return out


def cleanup(store):
    """Every container of `store` removed, its runtime processes killed (by
    PID, found by the store's path) and its mounts gone; the caller removes
    the directory. Safe when podman never ran for it."""
    if not os.path.isdir(store.base):
        return
    ids = store.container_ids()
    if ids:
        store.run("remove containers", "rm", "--force", "--time", "0", *ids, check=False, timeout=60)
    # conmon, runc and conmon's exit command (`podman container cleanup`, which
    # mounts the store again) name the store in their arguments: kill them
    # until none is left, then unmount what they left
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = _pids_mentioning(store.base)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        points = sorted(mounts_under(store.base), reverse=True)
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True)
        if not pids and not points:
            return
        time.sleep(0.1)
    raise StoreError("cleanup of %s: processes or mounts keep coming back" % store.base)


def cleanup_lab(state_dir):
    """Every node store of a lab (<state>/nodes/*/podman): containers, runtime
    processes and mounts; `lab down` then removes the directories. Never
    fails a teardown: what podman cannot do is logged and the PID and mount
    sweeps still run."""
    import glob
    import logging

    for base in sorted(glob.glob(os.path.join(state_dir, "nodes", "*", "podman"))):
        try:
            cleanup(Store(base))
        except (StoreError, OSError) as e:
            logging.getLogger("podnet.image").warning("cleanup of %s: %s", base, e)
