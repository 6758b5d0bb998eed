"""Smoke: one ADD and DEL through the real kernel, in-process and via the daemon."""
import pytest
from tests.conftest import bridge_conf, sh

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("mode", ["in-process", "daemon"])
def test_add_then_del(mode, request, plugin, namespaces, data_dir):
    pod = namespaces.new("pod")
    conf = bridge_conf(data_dir)
    if mode == "daemon":
        conf["daemonSocket"] = request.getfixturevalue("daemon").sock
    rc, out, err = plugin("podnet", "ADD", conf, netns=pod)
    assert rc == 0, (out, err)
    ip = out["ips"][0]["address"].split("/")[0]
    assert ip in sh(pod, "ip", "-4", "addr", "show", "eth0").stdout
    sh(pod, "ping", "-c1", "-W2", out["ips"][0]["gateway"])
    rc, out, err = plugin("podnet", "DEL", conf, netns=pod)
    assert rc == 0, (out, err)
    assert "eth0" not in sh(pod, "ip", "link").stdout
