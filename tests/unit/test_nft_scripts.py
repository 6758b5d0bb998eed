"""Pure: the nftables scripts the plugins send (checked with `nft -c` in the kernel tier)."""

import ipaddress as ia

import pytest

from podnet.cni import masq, portmap
from podnet.cni.errors import CNIError


def test_masq_scripts():
    addrs = [ia.ip_interface("10.1.0.5/24"), ia.ip_interface("fd00::5/64")]
    fast = masq.elements_script("net/c1/eth0", addrs)
    # the per-pod path is one element per address, nothing else
    assert (
        fast.count("\n") == 2
        and 'add element inet podnet-bridge masq4 { 10.1.0.5 comment "net/c1/eth0" : jump sub-' in fast
    )
    full = masq.skeleton({a.network for a in addrs})
    chain4 = masq.sub_chain(ia.ip_network("10.1.0.0/24"))
    assert "add rule inet podnet-bridge %s ip daddr 10.1.0.0/24 return" % chain4 in full
    assert "ip6 daddr ff00::/8 return" in full and full.count("masquerade") == 2
    assert masq.delete_script([ia.ip_address("10.1.0.5")]) == "delete element inet podnet-bridge masq4 { 10.1.0.5 }\n"


def test_portmap_parsing_errors_name_the_field():
    with pytest.raises(CNIError) as e:
        portmap.parse_mappings({"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}})
    assert e.value.code == 7 and "portMappings[0].hostPort" in e.value.msg
    with pytest.raises(CNIError) as e:
        portmap.parse_mappings(
            {"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "sctp"}]}}
        )
    assert "protocol" in e.value.msg
    with pytest.raises(CNIError):
        portmap.parse_mappings(
            {
                "runtimeConfig": {
                    "portMappings": [{"hostPort": 80, "containerPort": 1}, {"hostPort": 80, "containerPort": 2}]
                }
            }
        )


def test_portmap_script_has_dnat_and_hairpin_mark():
    m = portmap.parse_mappings(
        {
            "runtimeConfig": {
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
                ]
            }
        }
    )
    s = portmap.add_script("n/c/eth0", "pm-x", m, [ia.ip_address("10.1.0.5"), ia.ip_address("fd00::5")])
    assert "tcp dport 8080 dnat ip to 10.1.0.5:80" in s
    assert "udp dport 5353 dnat ip6 to [fd00::5]:53" in s
    assert 'hostports { tcp . 8080 comment "n/c/eth0" : goto pm-x }' in s
    assert "saddr 10.1.0.5 tcp dport 8080 meta mark set mark | 0x2000" in s
