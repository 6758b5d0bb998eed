"""Image references, pull policy and the entrypoint/cmd rules (podnet.image.refs),
which containers run as images (podnet.agent.oci.runs_as_image), and the
waiting states a failed pull gives (containers.Supervisor)."""

import pytest

from podnet.agent import oci
from podnet.agent.containers import Supervisor
from podnet.image import refs


@pytest.mark.parametrize(
    "image,name",
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:latest", "docker.io/library/nginx:latest"),
        ("docker.io/library/nginx", "docker.io/library/nginx:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("localhost:1/x", "localhost:1/x:latest"),
        ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
        ("10.0.0.1:5000/team/app:v1.2", "10.0.0.1:5000/team/app:v1.2"),
        ("nginx@sha256:" + "a" * 64, "docker.io/library/nginx@sha256:" + "a" * 64),
    ],
)
def test_names_resolve_as_docker_does(image, name):
    assert refs.parse(image).name == name


@pytest.mark.parametrize("image", ["", "Nginx", "nginx:", "nginx:bad tag", "a//b", "nginx@sha256:xyz", "-x"])
def test_invalid_names_are_refused_with_a_reason(image):
    with pytest.raises(refs.InvalidImageName) as e:
        refs.parse(image)
    assert str(e.value)


@pytest.mark.parametrize(
    "image,policy",
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("localhost:5000/app", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("localhost:5000/app:v1", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_default_pull_policy(image, policy):
    assert refs.default_pull_policy(image) == policy
    assert refs.pull_policy({"image": image}) == policy
    assert refs.pull_policy({"image": image, "imagePullPolicy": "Never"}) == "Never"


def test_an_unknown_pull_policy_is_an_error():
    with pytest.raises(ValueError, match="imagePullPolicy"):
        refs.pull_policy({"image": "nginx", "imagePullPolicy": "Sometimes"})


@pytest.mark.parametrize(
    "policy,present,reachable,what",
    [
        ("Always", True, True, "pull"),
        ("Always", True, False, "local"),  # offline: the local store serves
        ("Always", False, False, "ErrImagePull"),
        ("IfNotPresent", True, True, "local"),
        ("IfNotPresent", False, True, "pull"),
        ("IfNotPresent", False, False, "ErrImagePull"),
        ("Never", True, True, "local"),
        ("Never", False, True, "ErrImageNeverPull"),
    ],
)
def test_should_pull(policy, present, reachable, what):
    assert refs.should_pull(policy, present, reachable) == what


ENTRY, CMD = ["/docker-entrypoint.sh"], ["nginx", "-g", "daemon off;"]


@pytest.mark.parametrize(
    "command,args,argv",
    [
        (None, None, ENTRY + CMD),  # neither: ENTRYPOINT + CMD
        (["sh", "-c", "x"], None, ["sh", "-c", "x"]),  # command: CMD ignored too
        (None, ["-T"], ENTRY + ["-T"]),  # args: ENTRYPOINT + args
        (["nginx"], ["-t"], ["nginx", "-t"]),  # both: command + args
    ],
)
def test_command_and_args_against_entrypoint_and_cmd(command, args, argv):
    assert refs.container_argv(command, args, ENTRY, CMD) == argv


@pytest.mark.parametrize(
    "spec,image",
    [
        ({"image": "nginx"}, True),
        ({"image": "busybox", "command": ["sleep", "1"]}, True),  # its command runs inside it
        ({"image": "podnet.io/host", "command": ["sleep", "1"]}, False),
        ({"command": ["sleep", "1"]}, False),
        ({"image": "registry.k8s.io/e2e-test-images/agnhost:2.45"}, False),
        ({"image": "registry.k8s.io/pause:3.9"}, False),
        ({"image": "podnet/dns"}, False),
        ({"image": "podnet/ingress-nginx:1"}, False),
    ],
)
def test_which_containers_run_as_images(spec, image):
    assert oci.runs_as_image(spec) is image


def test_podman_run_joins_the_pod_netns_with_the_resolved_command():
    argv = oci.run_args(
        "pn-u-web", "docker.io/library/nginx:latest", ENTRY + CMD, {"A": "1"}, "/w", "web-0", "/run/netns/p"
    )
    assert argv[:2] == ["run", "--rm"]
    assert "ns:/run/netns/p" in argv and "web-0" in argv and "A=1" in argv and "/w" in argv
    i = argv.index("--entrypoint")
    assert argv[i + 1] == '["/docker-entrypoint.sh"]'
    assert argv[i + 2 :] == ["docker.io/library/nginx:latest"] + CMD


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_failed_pull_shows_err_image_pull_then_back_off_then_runs():
    clock, events, calls = Clock(), [], []

    class Proc:
        pid = 4242
        returncode = None

        def poll(self):
            return None

    def start():
        calls.append(clock.t)
        if len(calls) < 3:
            raise oci.ImageError("ErrImagePull", "no registry reachable and x is not in the local image store")
        return Proc()

    sup = Supervisor({"name": "app", "image": "localhost:1/x"}, start, "Always", backoff_initial=4, clock=clock)
    sup.on_event = lambda *e: events.append(e[1])
    sup.tick()
    assert sup.status()["state"]["waiting"]["reason"] == "ErrImagePull"
    clock.t = sup.next_start
    sup.tick()
    st = sup.status()
    assert st["state"]["waiting"]["reason"] == "ImagePullBackOff" and len(calls) == 1
    clock.t = sup.next_start
    sup.tick()  # second pull fails: ErrImagePull again, a longer back-off
    assert sup.status()["state"]["waiting"]["reason"] == "ErrImagePull" and len(calls) == 2
    clock.t = sup.next_start
    sup.tick()
    clock.t = sup.next_start
    sup.tick()
    st = sup.status()
    assert "running" in st["state"] and st["restartCount"] == 0
    assert events == ["Failed", "BackOff", "Failed", "BackOff"]


def test_never_pull_keeps_its_reason():
    clock = Clock()

    def start():
        raise oci.ImageError("ErrImageNeverPull", 'Container image "x:1" is not present with pull policy of Never')

    sup = Supervisor({"name": "app", "image": "x:1"}, start, "Always", clock=clock)
    sup.tick()
    clock.t = sup.next_start
    sup.tick()
    assert sup.status()["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    assert sup.status()["restartCount"] == 0


@pytest.mark.parametrize(
    "domain,ok",
    [
        ("localhost:5000", True),
        ("192.168.200.100:5000", True),
        ("10.0.0.1", True),
        ("docker.io", False),
        ("8.8.8.8:5000", False),
    ],
)
def test_plain_http_only_for_local_and_private_registries(domain, ok):
    assert refs.plain_http_ok(domain) is ok
