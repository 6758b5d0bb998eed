"""Image containers: the kubelet role for a container whose image is neither
podnet's reserved host-program image nor a built-in stand-in (agnhost,
pause, podnet/*). The image is pulled per imagePullPolicy when a registry
answers, else taken from the node's store (which sees the machine's built
and imported images), and run by podman (runc) in the pod's existing netns
with the pod's hostname, resolv.conf and hosts file.

`podman run` stays attached: its process is what the Supervisor watches
(podman proxies SIGTERM to the container and exits with its status), its
stdout and stderr go to the container's log file as a host program's do.
A stop that runs out of grace, and every exit, end with `podman rm --force`
so no container, conmon or overlay mount outlives it. The container's name
and the store's podman command line are written beside the log
(<container>.oci) for exec (probes, hooks, `kubectl exec`).
"""

import json
import os
import resource
import socket
import subprocess
import threading
import time

from podnet.agent import containers
from podnet.image import refs
from podnet.image import store as store_mod

REACH_TTL = 30.0  # seconds a registry's reachability is remembered
REACH_TIMEOUT = 1.0
NPROC_MAX = 4096  # runc may only lower limits here (no CAP_SYS_RESOURCE)
OCI_SUFFIX = ".oci"


class ImageError(containers.ContainerError):
    """The image cannot be had: `reason` is the container's waiting reason."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.waiting_reason = reason


def runs_as_image(spec):
    """Does this container spec run through podman?"""
    from podnet.workload import image_kind

    image = (spec or {}).get("image") or ""
    if not image.strip() or refs.is_host_program(image):  # no image: `command` is a host program
        return False
    if image_kind(image) is not None:
        return False
    return not _podnet_image(image)


def _podnet_image(image):
    """podnet/* images are built-in stand-ins (podnet/dns, podnet/ingress-nginx, ...)."""
    path = image.strip().split("@", 1)[0].split(":", 1)[0]
    return path == "podnet" or path.startswith("podnet/") or path.startswith("docker.io/podnet/")


def registry_address(domain):
    """(host, port) of a registry domain ('docker.io' is served by registry-1.docker.io)."""
    if domain == "docker.io":
        return "registry-1.docker.io", 443
    host, _, port = domain.partition(":")
    return host, int(port or 443)


def container_name(pod_uid, name):
    return "pn-%s-%s" % (pod_uid, name)


def ulimit_flags():
    """The agent's own limits (runc may not raise them in this machine)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[0], NPROC_MAX)
    return ["--ulimit", "nofile=%d:%d" % (nofile, nofile), "--ulimit", "nproc=%d:%d" % (nproc, nproc)]


def run_args(name, ref_name, argv, env, workdir, hostname, netns_path, resolv=None, hosts=None):
    """The `podman run` arguments (pure): attached, removed on exit, no
    network of podman's own, the command as Kubernetes resolved it."""
    out = ["run", "--rm", "--name", name, "--log-driver", "none", "--network", "ns:" + netns_path]
    out += ["--hostname", hostname, "--pull", "never"] + ulimit_flags()
    if resolv:
        out += ["--volume", "%s:/etc/resolv.conf:ro" % resolv]
    if hosts:
        out += ["--volume", "%s:/etc/hosts:ro" % hosts]
    for key, value in env.items():
        out += ["--env", "%s=%s" % (key, value)]
    if workdir:
        out += ["--workdir", workdir]
    out += ["--entrypoint", json.dumps(argv[:1]), ref_name] + list(argv[1:])
    return out


def images_for(agent):
    """The agent's Images (made on first use: nodes without image pods never touch podman)."""
    images = getattr(agent, "oci_images", None)
    if images is None:
        images = agent.oci_images = Images(agent.dir)
    return images


class Images:
    """A node's image store and what it knows of registries."""

    def __init__(self, node_dir):
        self.store = store_mod.Store(os.path.join(node_dir, "podman"), shared=store_mod.machine())
        self._reach = {}
        self._lock = threading.Lock()

    def reachable(self, domain):
        with self._lock:
            seen = self._reach.get(domain)
            if seen and time.monotonic() - seen[1] < REACH_TTL:
                return seen[0]
        host, port = registry_address(domain)
        try:
            socket.create_connection((host, port), timeout=REACH_TIMEOUT).close()
            ok = True
        except OSError:
            ok = False
        with self._lock:
            self._reach[domain] = (ok, time.monotonic())
        return ok

    def ensure(self, spec, event=None):
        """The image of `spec` present in the store -> (Ref, config); ImageError
        otherwise. event(reason, message): kubelet's Normal Pulling/Pulled."""
        event = event or (lambda reason, message: None)
        image = spec.get("image") or ""
        try:
            ref = refs.parse(image)
        except refs.InvalidImageName as e:
            raise ImageError("InvalidImageName", "Failed to apply default image tag %r: %s" % (image, e)) from e
        policy = refs.pull_policy(spec)
        present = self.store.exists(ref.name)
        reachable = False if policy == "Never" else self.reachable(ref.domain)
        what = refs.should_pull(policy, present, reachable)
        if what == "ErrImageNeverPull":
            raise ImageError(what, 'Container image "%s" is not present with pull policy of Never' % image)
        if what == "ErrImagePull":
            raise ImageError(
                what,
                "Failed to pull image %r: no registry reachable (%s:%d) and %s is not in the local image store"
                % ((image,) + registry_address(ref.domain) + (ref.name,)),
            )
        if what == "pull":
            event("Pulling", 'Pulling image "%s"' % image)
            try:
                self.store.pull(ref.name, plain_http=refs.plain_http_ok(ref.domain))
                event("Pulled", 'Successfully pulled image "%s"' % image)
            except store_mod.StoreError as e:
                if not present:
                    raise ImageError("ErrImagePull", "Failed to pull image %r: %s" % (image, e)) from e
                event("Pulled", 'Pulling image "%s" failed (%s); using the local one' % (image, e))
        else:
            event("Pulled", 'Container image "%s" already present on machine' % image)
        return ref, self.store.inspect(ref.name)


def start(images, rp, spec, env, expand, log_path, event=None):
    """Start container `spec` of pod `rp` -> Popen of `podman run`, with
    oci_stop/oci_cleanup for containers.stop and kill_leftovers."""
    ref, config = images.ensure(spec, event)
    command = [expand(str(a)) for a in spec.get("command") or []]
    args = [expand(str(a)) for a in spec.get("args") or []]
    argv = refs.container_argv(command, args, config["Entrypoint"], config["Cmd"])
    if not argv:
        raise containers.ContainerError("no command specified: image %s has no ENTRYPOINT or CMD" % ref.name)
    name = container_name(rp.uid, spec["name"])
    store = images.store.ensure()
    store.remove_container(name)  # a leftover of an agent that died
    from podnet.kernel import netns

    netns_path = netns.path_of(rp.netns)
    cmd = store.argv(
        *run_args(
            name,
            ref.name,
            argv,
            env,
            spec.get("workingDir"),
            containers.pod_hostname(rp.name),
            netns_path,
            rp.resolv,
            rp.hosts,
        )
    )
    with open(os.path.join(os.path.dirname(log_path), spec["name"] + OCI_SUFFIX), "w") as f:
        json.dump({"podman": store.argv(), "name": name, "image": ref.name, "imageID": config["Id"]}, f)
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()
    from podnet.agent import adopt as adopt_mod

    adopt_mod.record_pid(rp.log_dir, spec["name"], proc.pid)  # a restarted agent adopts it (adopt below)
    proc.container_argv = argv
    proc.log_path = log_path
    proc.image_id = "%s@sha256:%s" % (ref.repository, config["Id"]) if config["Id"] else ""

    return _attach(proc, store, name)


def _attach(proc, store, name):
    """proc (a Popen of `podman run`, or an adopted container's init) with
    oci_stop and oci_cleanup, which containers.stop and kill_leftovers use."""

    def oci_stop(grace):
        # podman stop: SIGTERM (the image's STOPSIGNAL) to the container, SIGKILL after grace
        store.run(
            "stop %s" % name, "stop", "--time", str(max(0, int(round(grace)))), name, check=False, timeout=grace + 30
        )
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            containers.signal_group(proc.pid, 9)
            proc.wait()
        store.remove_container(name)
        return proc.returncode

    proc.oci_stop = oci_stop
    proc.oci_cleanup = lambda: store.remove_container(name)
    return proc


def adopt(images, rp, spec):
    """The `podman run` a previous agent started for `spec` (its recorded PID,
    alive, naming the container), which outlived that agent and still feeds
    the log, as an adopt.Adopted: same containerID, no restart. None when
    there is none (the container is started afresh)."""
    from podnet.agent import adopt as adopt_mod

    name = container_name(rp.uid, spec["name"])
    try:
        with open(adopt_mod.pid_file(rp.log_dir, spec["name"])) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if name.encode() not in f.read().split(b"\0"):
                return None
    except (OSError, ValueError):
        return None
    proc = adopt_mod.Adopted(pid)
    if proc.poll() is not None:
        return None
    store = images.store.ensure()
    res = store.run(
        "inspect %s" % name, "container", "inspect", "--format", "{{.ImageName}} {{.Image}}", name, check=False
    )
    fields = res.stdout.split()
    if len(fields) == 2:
        proc.image_id = "%s@sha256:%s" % (refs.parse(fields[0]).repository, fields[1])
    return _attach(proc, store, name)


def exec_argv(log_dir, container, argv, interactive=False, tty=False):
    """`podman exec` of argv in an image container, or None for a host program."""
    try:
        with open(os.path.join(log_dir, container + OCI_SUFFIX)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    flags = (["--interactive"] if interactive else []) + (["--tty"] if tty else [])
    return doc["podman"] + ["exec"] + flags + [doc["name"]] + [str(a) for a in argv]


def exec_in(log_dir, container, argv, timeout):
    """Run argv in the container to completion -> CompletedProcess (probes, hooks)."""
    full = exec_argv(log_dir, container, argv)
    if full is None:
        raise containers.ContainerError("container %s is not an image container" % container)
    return subprocess.run(full, capture_output=True, text=True, timeout=timeout)


def run_exec_handler(log_dir, container, command, timeout):
    """An exec probe or preStop hook of an image container -> (ok, message),
    or None when `container` runs as a host program (the caller runs it)."""
    full = exec_argv(log_dir, container, command)
    if full is None:
        return None
    if not command:
        return False, "exec handler has no command"
    try:
        res = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "command %r timed out after %gs" % (list(command), timeout)
    output = (res.stdout or "") + (res.stderr or "")
    if res.returncode == 0:
        return True, output
    return False, output.strip() or "command %r exited with %d" % (list(command), res.returncode)
