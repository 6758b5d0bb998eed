"""podnet.kernel.nftnl / nftexpr without the kernel: what a script compiles
to, what it refuses to compile, how replies are read, and how apply()
chooses between netlink and nft (FakeTransport, a recording fallback). The
same paths against the kernel: tests/kernel/test_proxy_netlink.py."""

import errno
import struct

import pytest

from podnet.kernel import nftexpr, nftnl
from podnet.proxy.planner import Planner
from podnet.proxy.render import diff
from tests.unit.test_proxy_render import eps, svc, world

T = "ip podnet-proxy"


def test_element_keys_are_padded_like_nft_registers():
    # nft --debug=netlink: element 0100600a 00000006 00005000
    assert nftexpr.element_key("10.96.0.1 . tcp . 80") == bytes.fromhex("0a6000010600000000500000")
    assert nftexpr.element_key("udp . 30001") == bytes.fromhex("1100000075310000")
    assert nftexpr.element_key("10.96.0.1") == bytes.fromhex("0a600001")  # one field: no padding
    assert nftexpr.element_key("10.244.0.2 . 10.244.0.2") == bytes.fromhex("0af400020af40002")


def _exprs(body):
    """Expression names of a compiled rule, in order."""
    names = []
    for e in nftexpr.compile_rule(body):
        # NFTA_LIST_ELEM > NFTA_EXPR_NAME: length, type, then the name
        n, _ = struct.unpack_from("=HH", e, 4)
        names.append(e[8 : 4 + n].rstrip(b"\0").decode())
    return names


def test_rule_shapes_compile_to_nft_s_expressions():
    assert _exprs("ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000") == [
        "payload",
        "cmp",
        "meta",
        "bitwise",
        "meta",
    ]
    # a prefix that is not whole bytes is masked first (nft: payload 4b, bitwise, cmp)
    assert _exprs("ip saddr 10.240.0.0/12 return") == ["payload", "bitwise", "cmp", "immediate"]
    assert _exprs("numgen random mod 3 == 0 meta l4proto tcp dnat to 10.244.1.2:8080") == [
        "numgen",
        "cmp",
        "meta",
        "cmp",
        "immediate",
        "immediate",
        "nat",
    ]
    assert _exprs("ip saddr @aff goto ep-x") == ["payload", "lookup", "immediate"]
    assert _exprs("update @aff { ip saddr }") == ["payload", "dynset"]
    assert _exprs("fib saddr type local goto svc-x") == ["fib", "cmp", "immediate"]
    assert _exprs("drop") == ["immediate"]


@pytest.mark.parametrize(
    "body",
    [
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        'log prefix "x" group 2',
        "reject",
        "ct state new jump firewall-check",
        "meta l4proto icmp dnat to 10.0.0.1:80",
        "dnat to 10.0.0.1",
        "goto",
        "drop accept",
    ],
)
def test_what_the_compiler_does_not_know_is_refused(body):
    with pytest.raises(nftexpr.Unsupported):
        nftexpr.compile_rule(body)


def planned(n):
    """A planner over n Services, their list, and its first plan."""
    services, slices = world(n)
    p = Planner("n1")
    p.replan_all(services, slices)
    return p, services, p.plan(["192.168.1.10"])


def test_a_partial_sync_compiles_line_by_line():
    p, services, before = planned(3)
    p.update("default/s1", services[1], [eps("s1", ["10.244.3.9"], rv="2")])
    p.update("default/new", svc("new", "10.96.9.9"), [eps("new", ["10.244.3.10"])])
    script = diff(before, p.plan(["192.168.1.10"]))
    messages = nftnl.compile_script(script)
    assert [m.line for m in messages] == script.splitlines()
    kinds = {m.line.split()[0] + " " + m.line.split()[1]: m.kind for m in messages}
    assert kinds["add chain"] == nftnl.NEWCHAIN and kinds["flush chain"] == nftnl.DELRULE
    assert kinds["add rule"] == nftnl.NEWRULE and kinds["add element"] == nftnl.NEWSETELEM
    assert kinds["delete element"] == nftnl.DELSETELEM


def test_affinity_sets_and_nothing_else():
    m = nftnl.compile_script("add set %s aff { type ipv4_addr; flags dynamic,timeout; timeout 10800s; }\n" % T)
    assert m[0].kind == nftnl.NEWSET and struct.pack(">Q", 10800000) in m[0].body
    for line in (
        "add set %s s { type ipv4_addr; }" % T,
        "add table %s" % T,
        "add chain %s c { type nat hook output priority -100; policy accept; }" % T,
        "add rule inet podnet-policy c drop",
        "replace rule %s c handle 4 drop" % T,
    ):
        with pytest.raises(nftexpr.Unsupported):
            nftnl.compile_script(line + "\n")


def test_a_batch_is_framed_and_its_last_message_asks_for_an_ack():
    messages = nftnl.compile_script("add chain %s c\nadd rule %s c drop\n" % (T, T))
    data = nftnl.encode(messages, 7)
    seen, off = [], 0
    while off < len(data):
        length, kind, flags, seq, _ = struct.unpack_from("=IHHII", data, off)
        seen.append((kind, bool(flags & nftnl.NLM_F_ACK), seq))
        off += length
    assert seen == [
        (nftnl.NFNL_MSG_BATCH_BEGIN, False, 7),
        (10 << 8 | nftnl.NEWCHAIN, False, 8),
        (10 << 8 | nftnl.NEWRULE, True, 9),
        (nftnl.NFNL_MSG_BATCH_END, False, 10),
    ]


def test_replies_are_read_as_errno_by_sequence():
    def reply(seq, err):
        return struct.pack("=IHHII", 36, nftnl.NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", -err) + b"\0" * 16

    assert nftnl.read_acks(reply(8, 0) + reply(9, errno.ENOENT)) == {8: 0, 9: errno.ENOENT}


def test_apply_prefers_netlink_and_falls_back_to_nft_with_the_same_script():
    fake, to_nft, refusals = nftnl.FakeTransport(), [], []

    def fallback(script, what):
        to_nft.append((script, what))

    script = "flush chain %s c\nadd rule %s c drop\n" % (T, T)
    assert nftnl.apply(script, "one", fake, fallback) == nftnl.FAST
    assert len(fake.batches) == 1 and to_nft == []

    odd = "add rule %s c log prefix x\n" % T
    assert nftnl.apply(odd, "two", fake, fallback) == nftnl.UNSUPPORTED
    assert to_nft == [(odd, "two")] and len(fake.batches) == 1

    fake.fail = errno.ENOENT
    assert nftnl.apply(script, "three", fake, fallback, on_refused=refusals.append) == nftnl.REFUSED
    assert to_nft[-1] == (script, "three") and len(fake.batches) == 1
    assert refusals[0].errno == errno.ENOENT and "flush chain" in str(refusals[0])

    many = "".join(
        "add element %s service-ips { 10.96.%d.%d . tcp . 80 : goto c }\n" % (T, i // 250, i % 250) for i in range(3000)
    )
    assert nftnl.apply(many, "four", fake, fallback) == nftnl.LARGE
    assert to_nft[-1] == (many, "four") and len(fake.batches) == 1


def test_the_diff_of_known_keys_equals_the_diff_of_all():
    p, services, before = planned(20)
    p.update("default/s4", services[4], [eps("s4", ["10.244.7.7"], rv="2")])
    p.update("default/s9", None, [])
    after = p.plan(["192.168.1.10"])
    assert diff(before, after, keys={"default/s4", "default/s9", ""}) == diff(before, after)
    assert "10.244.7.7" in diff(before, after, keys={"default/s4", ""})
