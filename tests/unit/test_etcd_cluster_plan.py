"""The lab's etcd cluster plan: names, addresses, one --initial-cluster for all."""

import pytest

from podnet.lab import etcdcluster
from podnet.lab.topology import LabError


def test_three_members_each_with_its_own_namespace_and_address():
    ms = etcdcluster.plan("lx", 3, "/state/etcd")
    assert [m["name"] for m in ms] == ["etcd1", "etcd2", "etcd3"]
    assert [m["ip"] for m in ms] == ["192.168.200.2", "192.168.200.3", "192.168.200.4"]
    assert [m["netns"] for m in ms] == ["pn-lx-etcd1", "pn-lx-etcd2", "pn-lx-etcd3"]
    initial = {m["argv"][m["argv"].index("--initial-cluster") + 1] for m in ms}
    assert initial == {
        "etcd1=http://192.168.200.2:2380,etcd2=http://192.168.200.3:2380,etcd3=http://192.168.200.4:2380"
    }
    m = ms[1]
    assert m["argv"][m["argv"].index("--listen-client-urls") + 1] == "http://192.168.200.3:2379"
    assert m["argv"][m["argv"].index("--data-dir") + 1] == "/state/etcd/etcd2"
    assert etcdcluster.store_url("lx", ms) == (
        "etcd://192.168.200.2:2379,192.168.200.3:2379,192.168.200.4:2379?netns=pn-lx-cp"
    )


def test_member_addresses_stay_clear_of_the_control_plane_and_the_nodes():
    ips = {m["ip"] for m in etcdcluster.plan("lx", 7, "/d")}
    assert "192.168.200.1" not in ips and etcdcluster.CONTROL_PLANE_NS_IP not in ips
    assert not ips & {"192.168.200.%d" % i for i in range(11, 20)}


def test_a_bad_member_count_is_refused():
    with pytest.raises(LabError, match="--etcd-members must be between 1 and 7, got 0"):
        etcdcluster.plan("lx", 0, "/d")
