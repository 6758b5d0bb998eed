"""Pure: which argv a container spec runs, the workload's flag parsing, and
the bookkeeping of the agent's Supervisor and ProbeState (fake processes and
a fake clock; the real processes are in tests/kernel/test_containers.py)."""

import subprocess
import sys

import pytest

from podnet.agent.containers import Supervisor, container_env, pod_hostname, terminated_state
from podnet.agent.probes import ProbeState, resolve_port
from podnet.workload import WORKLOAD_ARGV, command_for, image_kind, why_not
from podnet.workload.agnhost import fmt_addr, parse_args, parse_duration, split_target

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.45"
W = list(WORKLOAD_ARGV)


# ---- command_for ---------------------------------------------------------------------


def test_workload_argv_is_this_interpreter():
    assert W == [sys.executable, "-m", "podnet.workload"]


@pytest.mark.parametrize(
    "spec,argv",
    [
        ({"image": "podnet.io/host", "command": ["sh", "-c", "echo hi"]}, ["sh", "-c", "echo hi"]),
        ({"image": "podnet.io/host", "command": ["sleep"], "args": [3600]}, ["sleep", "3600"]),
        ({"image": AGNHOST, "command": ["sleep", "1"]}, ["sleep", "1"]),  # command wins
        ({"image": AGNHOST, "args": ["netexec", "--http-port=8080"]}, W + ["netexec", "--http-port=8080"]),
        ({"image": "agnhost", "args": ["serve-hostname"]}, W + ["serve-hostname"]),
        ({"image": AGNHOST + "@sha256:abcd", "args": ["pause"]}, W + ["pause"]),
        (
            {"image": AGNHOST, "command": ["/agnhost", "netexec"], "args": ["--http-port", "80"]},
            W + ["netexec", "--http-port", "80"],
        ),  # the image's own binary
        ({"image": AGNHOST}, W),
        ({"image": "registry.k8s.io/pause:3.9"}, W + ["pause"]),
        ({"image": "registry.k8s.io/pause:3.9", "command": ["/pause"]}, W + ["pause"]),
        ({"image": "nginx:1.27"}, None),
        ({"image": "nginx", "args": ["-g", "daemon off;"]}, None),
        ({}, None),
    ],
)
def test_command_for(spec, argv):
    assert command_for(spec) == argv


def test_image_kind_looks_at_the_image_name_not_the_registry():
    assert image_kind(AGNHOST) == "agnhost"
    assert image_kind("localhost:5000/e2e/agnhost") == "agnhost"
    assert image_kind("registry.k8s.io/pause:3.9") == "pause"
    assert image_kind("pause-registry.example:5000/nginx:1") is None
    assert image_kind("") is None and image_kind(None) is None


def test_why_not_explains_what_podnet_cannot_run():
    assert why_not({"image": AGNHOST, "args": ["pause"]}) is None
    msg = why_not({"name": "web", "image": "nginx:1.27"})
    assert "nginx:1.27" in msg and "command" in msg


# ---- flags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["netexec", "--http-port=8081", "--udp-port=9000"],
        ["netexec", "--http-port", "8081", "--udp-port", "9000"],
        ["netexec", "-http-port=8081", "-udp-port", "9000"],  # Go's flag style
    ],
)
def test_netexec_flags_in_every_spelling(argv):
    a = parse_args(argv)
    assert (a.subcommand, a.http_port, a.udp_port) == ("netexec", 8081, 9000)


def test_defaults():
    a = parse_args(["netexec"])
    assert (a.http_port, a.udp_port) == (8080, 8081)
    a = parse_args(["serve-hostname"])
    assert (a.port, a.udp) == (9376, False)
    a = parse_args(["connect", "10.0.0.1:80"])
    assert (a.target, a.timeout, a.protocol) == ("10.0.0.1:80", 3.0, "tcp")


@pytest.mark.parametrize(
    "argv,udp",
    [
        (["serve-hostname", "--udp"], True),
        (["serve-hostname", "--udp=true"], True),
        (["serve-hostname", "--udp=false"], False),
        (["serve-hostname", "--udp", "--port", "1"], True),
    ],
)
def test_boolean_flags(argv, udp):
    assert parse_args(argv).udp is udp


@pytest.mark.parametrize(
    "text,seconds", [("3", 3.0), ("1.5", 1.5), ("3s", 3.0), ("500ms", 0.5), ("2m", 120.0), ("1m30s", 90.0)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    assert parse_args(["connect", "h:1", "--timeout", text]).timeout == pytest.approx(seconds)
    assert parse_args(["connect", "h:1", "--timeout=" + text]).timeout == pytest.approx(seconds)


def test_unknown_flags_are_ignored_with_a_warning(capsys):
    a = parse_args(["netexec", "--http-port=80", "--delay-shutdown=5"])
    assert a.http_port == 80
    assert "--delay-shutdown=5" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["netexec", "--http-port=http"],
        ["netexec", "--http-port=70000"],
        ["connect"],
        ["connect", "h:1", "--timeout=soon"],
        ["pause", "extra"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2


def test_targets_and_addresses():
    assert split_target("10.0.0.1:80") == ("10.0.0.1", 80)
    assert split_target("[fd00::1]:53") == ("fd00::1", 53)
    assert split_target("web.default.svc:8080") == ("web.default.svc", 8080)
    for bad in ("10.0.0.1", ":80", "h:x", "h:70000"):
        with pytest.raises(ValueError):
            split_target(bad)
    assert fmt_addr(("::ffff:10.244.1.3", 51234, 0, 0)) == "10.244.1.3:51234"
    assert fmt_addr(("10.244.1.3", 1)) == "10.244.1.3:1"
    assert fmt_addr(("fd00::3", 2, 0, 0)) == "[fd00::3]:2"


def test_the_module_runs_and_reports_bad_targets():
    res = subprocess.run(W + ["connect", "no-port-here"], capture_output=True, text=True, timeout=20)
    assert res.returncode == 1 and res.stderr.startswith("UNKNOWN:")
    res = subprocess.run(W, capture_output=True, text=True, timeout=20)
    assert res.returncode == 2 and "subcommand" in res.stderr


# ---- container bookkeeping ---------------------------------------------------------------


def test_pod_hostname_is_cut_like_kubelet():
    assert pod_hostname("web-0") == "web-0"
    assert pod_hostname("a" * 62 + "-b") == "a" * 62
    assert len(pod_hostname("x" * 100)) == 63


def test_container_env_takes_both_spec_forms():
    env = container_env(
        "web-0", [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {}}}, {"name": "C"}]
    )
    assert (env["A"], env["C"], env["HOSTNAME"]) == ("1", "", "web-0") and "B" not in env
    assert "PATH" in env
    assert container_env("p", {"PATH": "/x"})["PATH"] == "/x"


def test_terminated_state_like_kubernetes():
    assert terminated_state(0, "a", "b") == {"exitCode": 0, "reason": "Completed", "startedAt": "a", "finishedAt": "b"}
    st = terminated_state(-9, "a", "b")
    assert (st["exitCode"], st["signal"], st["reason"]) == (137, 9, "Error")


class FakeProc:
    pids = iter(range(1000, 2000))

    def __init__(self):
        self.pid = next(self.pids)
        self.returncode = None

    def poll(self):
        return self.returncode


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_supervisor_backoff_and_reset(monkeypatch):
    monkeypatch.setattr("podnet.agent.containers.kill_leftovers", lambda proc: None)
    clock, procs = Clock(), []

    def start():
        procs.append(FakeProc())
        return procs[-1]

    sup = Supervisor(
        {"name": "app", "image": "busybox"},
        start,
        "Always",
        backoff_initial=1,
        backoff_max=4,
        backoff_reset=30,
        clock=clock,
    )
    assert sup.status()["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert sup.tick() and sup.running and len(procs) == 1
    gaps = []
    for _ in range(4):
        procs[-1].returncode = 1
        exited_at = clock.t
        assert sup.tick() and sup.state["waiting"]["reason"] == "CrashLoopBackOff"
        count = len(procs)
        while len(procs) == count:
            clock.t += 0.25
            sup.tick()
        gaps.append(clock.t - exited_at)
    assert gaps == [1.0, 2.0, 4.0, 4.0] and sup.restart_count == 4
    clock.t += 31  # a long healthy run
    procs[-1].returncode = 1
    sup.tick()
    assert sup.state["waiting"]["message"] == "back-off 1s restarting failed container=app"


def test_supervisor_start_error_under_onfailure():
    calls = []

    def start():
        calls.append(1)
        raise FileNotFoundError(2, "executable file not found in $PATH", "nope")

    clock = Clock()
    sup = Supervisor({"name": "app"}, start, "OnFailure", backoff_initial=1, clock=clock)
    sup.tick()
    st = sup.status()
    assert st["lastState"]["terminated"]["reason"] == "StartError"
    assert st["lastState"]["terminated"]["exitCode"] == 128
    assert st["state"]["waiting"]["reason"] == "CrashLoopBackOff" and not st["ready"]
    clock.t = 1.0
    sup.tick()
    assert len(calls) == 2 and sup.restart_count == 1


def test_supervisor_rejects_unknown_policies():
    with pytest.raises(ValueError):
        Supervisor({"name": "x"}, FakeProc, "Sometimes")


# ---- probe bookkeeping -----------------------------------------------------------------------


def test_probe_state_defaults_and_thresholds():
    r = ProbeState({"httpGet": {"port": 80}}, clock=lambda: 0.0)
    assert (r.period, r.timeout, r.failure_threshold, r.success_threshold) == (10, 1, 3, 1)
    assert r.ready is False and r.due(0)
    assert r.record(True, now=0) and r.ready
    assert not r.record(False, now=10) and not r.record(False, now=20) and r.ready
    assert r.record(False, now=30) and not r.ready
    live = ProbeState({"exec": {"command": ["true"]}, "failureThreshold": 1}, "liveness", clock=lambda: 0.0)
    assert live.ready is True
    assert live.record(False, "boom", now=0) and not live.ready and live.message == "boom"
    two = ProbeState({"tcpSocket": {"port": 1}, "successThreshold": 2}, clock=lambda: 0.0)
    assert not two.record(True, now=0) and two.record(True, now=10) and two.ready
    two.reset(started_at=100)
    assert not two.ready and not two.due(99) and two.due(100)


def test_resolve_port():
    spec = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port(80) == 80 and resolve_port("81") == 81 and resolve_port("http", spec) == 8080
    with pytest.raises(ValueError):
        resolve_port("metrics", spec)
