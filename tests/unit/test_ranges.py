"""Pure: range parsing with host-local's defaults, and the candidate order."""

import ipaddress as ia

import pytest

from podnet.ipam.ranges import RangeError, candidates, parse_range_sets


def test_defaults_match_host_local():
    (rset,) = parse_range_sets({"ranges": [[{"subnet": "10.1.0.0/24"}]]})
    r = rset[0]
    assert (str(r.start), str(r.end), str(r.gateway)) == ("10.1.0.1", "10.1.0.254", "10.1.0.1")
    (rset6,) = parse_range_sets({"ranges": [[{"subnet": "fd00::/120"}]]})
    assert str(rset6[0].end) == "fd00::ff"


def test_legacy_single_subnet_form():
    (rset,) = parse_range_sets({"subnet": "10.22.0.0/16", "rangeStart": "10.22.1.1", "gateway": "10.22.0.1"})
    assert str(rset[0].start) == "10.22.1.1"


@pytest.mark.parametrize(
    "ipam,field",
    [
        ({"ranges": [[{"subnet": "10.0.0.0/33"}]]}, "ipam.ranges[0][0].subnet"),
        ({"ranges": [[{"subnet": "banana"}]]}, "ipam.ranges[0][0].subnet"),
        ({"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}]]}, "ipam.ranges[0][0].rangeStart"),
        ({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "x"}]]}, "ipam.ranges[0][0].gateway"),
        (
            {"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.3"}]]},
            "ipam.ranges[0][0].rangeStart",
        ),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}, "ipam.ranges[0][1].subnet"),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.128/25"}]]}, "ipam.ranges[1][0]"),
        ({"ranges": []}, "ipam.ranges"),
        ({}, "ipam.ranges"),
    ],
)
def test_errors_name_the_field(ipam, field):
    with pytest.raises(RangeError) as e:
        parse_range_sets(ipam)
    assert str(e.value).startswith(field)


def test_candidates_round_robin_skip_gateway_and_wrap():
    (rset,) = parse_range_sets({"ranges": [[{"subnet": "10.0.0.0/29"}]]})
    order = [str(ip) for ip, _ in candidates(rset, None)]
    assert order == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    after = [str(ip) for ip, _ in candidates(rset, ia.ip_address("10.0.0.4"))]
    assert after == ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_candidates_span_several_ranges_of_a_set():
    (rset,) = parse_range_sets({"ranges": [[{"subnet": "10.0.0.0/30"}, {"subnet": "10.0.1.0/30"}]]})
    assert [str(ip) for ip, _ in candidates(rset, None)] == ["10.0.0.2", "10.0.1.2"]
