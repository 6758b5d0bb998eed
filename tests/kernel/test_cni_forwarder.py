"""The compiled CNI forwarder (podnet/cni/native/podnet-cni.c) against the
Python thin executable it replaces: every case must answer the same (exit
code, stdout, the fallback's stderr note), whether the daemon serves the call,
is configured but down, is not configured, or only a JSON parser can read
the socket path."""

import json
import os
import shutil

import pytest

from podnet.cni.install import PLUGINS, THIN_DIR, install
from tests.conftest import Plugin, bridge_conf

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def python_bin(tmp_path_factory):
    """The same plugins as plain Python thin scripts (what ran before)."""
    d = str(tmp_path_factory.mktemp("cni-bin-python"))
    install(d, native=False)
    return d


@pytest.fixture
def both(cni_bin, python_bin, ref_bin, node):
    return Plugin([cni_bin, ref_bin], node), Plugin([python_bin, ref_bin], node)


def _same_shape(a, b):
    """Two ADD results for two pods: equal but for the addresses and MACs."""
    assert a.keys() == b.keys()
    assert [i["name"] for i in a["interfaces"]][::2] == [i["name"] for i in b["interfaces"]][::2]
    assert [ip["gateway"] for ip in a["ips"]] == [ip["gateway"] for ip in b["ips"]]
    assert a["routes"] == b["routes"] and a["cniVersion"] == b["cniVersion"]


def test_installed_plugins_are_elf_with_the_python_fallback_beside(cni_bin, python_bin):
    for name in PLUGINS:
        with open(os.path.join(cni_bin, name), "rb") as f:
            assert f.read(4) == b"\x7fELF"
        with open(os.path.join(cni_bin, THIN_DIR, name)) as f:
            assert f.readline().startswith("#!") and "podnet.cni.thin" in f.read()
        with open(os.path.join(python_bin, name)) as f:
            assert f.readline().startswith("#!")


def _cycle(plugin, conf, pod, cid):
    """ADD, CHECK, DEL, VERSION -> their (rc, doc, stderr)."""
    add = plugin("podnet", "ADD", conf, cid=cid, netns=pod)
    assert add[0] == 0, add
    check = plugin("podnet", "CHECK", dict(conf, prevResult=add[1]), cid=cid, netns=pod)
    dele = plugin("podnet", "DEL", dict(conf, prevResult=add[1]), cid=cid, netns=pod)
    version = plugin("podnet", "VERSION", conf)
    return add, check, dele, version


def test_daemon_up_add_check_del_version_match(both, namespaces, daemon, data_dir):
    conf = bridge_conf(data_dir, ipMasq=True, daemonSocket=daemon.sock)
    native = _cycle(both[0], conf, namespaces.new("pod"), "fwd-n")
    python = _cycle(both[1], conf, namespaces.new("pod"), "fwd-p")
    _same_shape(native[0][1], python[0][1])
    for n, p in zip(native[1:], python[1:], strict=True):
        assert n == p
    for rc, _, err in native + python:
        assert rc == 0 and "in-process" not in err
    assert native[3][1]["supportedVersions"][-1] == "1.1.0"


def test_daemon_configured_but_down(both, namespaces, data_dir, tmp_path):
    gone = str(tmp_path / "nobody.sock")
    conf = bridge_conf(data_dir, daemonSocket=gone)
    native = _cycle(both[0], conf, namespaces.new("pod"), "down-n")
    python = _cycle(both[1], conf, namespaces.new("pod"), "down-p")
    _same_shape(native[0][1], python[0][1])
    assert native[1:] == python[1:]
    note = "podnet: daemon at %s not reachable, running in-process\n" % gone
    assert native[0][2] == python[0][2] and native[0][2].startswith(note)
    status = [p("podnet", "STATUS", dict(conf, cniVersion="1.1.0")) for p in both]
    assert status[0] == status[1]
    assert status[0][0] == 1 and status[0][1]["code"] == 50 and gone in status[0][1]["details"]


def test_no_daemon_socket_runs_in_process(both, namespaces, data_dir):
    conf = bridge_conf(data_dir)
    native = _cycle(both[0], conf, namespaces.new("pod"), "inproc-n")
    python = _cycle(both[1], conf, namespaces.new("pod"), "inproc-p")
    _same_shape(native[0][1], python[0][1])
    assert native[1:] == python[1:]
    assert all(rc == 0 for rc, _, _ in native)


def test_escaped_socket_path_is_left_to_the_json_parser(both, daemon):
    # "\/" is JSON for "/": only a real parser finds the live socket; the
    # forwarder hands such a config to the Python script, which does.
    escaped = json.dumps({"cniVersion": "1.0.0", "daemonSocket": "SOCK"}).replace(
        '"SOCK"', json.dumps(daemon.sock).replace("/", "\\/")
    )
    assert "\\/" in escaped
    native, python = (p("podnet", "VERSION", escaped) for p in both)
    assert native == python and native[0] == 0 and "in-process" not in native[2]
    status = [p("podnet", "STATUS", escaped.replace('"1.0.0"', '"1.1.0"')) for p in both]
    assert status[0] == status[1]


def test_malformed_stdin_error_passes_through(both, daemon):
    broken = '{"cniVersion": "1.0.0", "daemonSocket": %s, "type": "podnet", "bridge": ' % json.dumps(daemon.sock)
    native, python = (p("podnet", "ADD", broken, cid="bad", netns="whatever") for p in both)
    assert native == python
    assert native[0] != 0 and native[1]["code"] == 6  # decoding failure, from the daemon
    # and the same without a daemon: the in-process handler's answer
    native, python = (p("podnet", "ADD", '{"cniVersion": ', cid="bad", netns="whatever") for p in both)
    assert native == python and native[1]["code"] == 6


def test_large_stdin_both_ways(both, daemon):
    """A big prevResult-sized config through the socket and through the
    fallback's stdin hand-over."""
    pad = "x" * (3 << 20)
    for conf in (
        {"cniVersion": "1.0.0", "daemonSocket": daemon.sock, "pad": pad},
        {"cniVersion": "1.0.0", "pad": pad},
    ):
        native, python = (p("podnet", "VERSION", conf) for p in both)
        assert native == python and native[0] == 0, native


def test_fast_path_runs_no_python(cni_bin, ref_bin, node, daemon, tmp_path):
    """A copy of the forwarder without the thin scripts beside it: calls the
    daemon serves still work (no interpreter involved), the rest cannot."""
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy2(os.path.join(cni_bin, "podnet"), lone / "podnet")
    plugin = Plugin([str(lone), ref_bin], node)
    rc, doc, err = plugin("podnet", "VERSION", {"cniVersion": "1.0.0", "daemonSocket": daemon.sock})
    assert rc == 0 and doc["supportedVersions"], err
    rc, doc, err = plugin("podnet", "VERSION", {"cniVersion": "1.0.0"})
    assert rc == 1 and doc is None and os.path.join(str(lone), THIN_DIR, "podnet") in err
