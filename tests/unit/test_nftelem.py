"""kernel/nftelem.py's pure builders: the bytes must be what nft itself sends,
so the kernel stores (and `nft list` shows) the same element either way."""

import ipaddress
import socket
import struct

import pytest

from podnet.kernel import nftelem, nftnl

# The NFTA_SET_ELEM_LIST_ELEMENTS payload nft 1.0.6 sent (strace) for
#   nft add element inet podnet-bridge masq4 { 10.1.0.9 comment "ab" : jump sub-abc }
NFT_ELEMENTS = (
    b"\x38\x00\x01\x80"  # LIST_ELEM (nested)
    b"\x0c\x00\x01\x80\x08\x00\x01\x00\x0a\x01\x00\x09"  # KEY { VALUE 10.1.0.9 }
    b"\x1c\x00\x02\x80\x18\x00\x02\x80\x08\x00\x01\x00\xff\xff\xff\xfd"  # DATA { VERDICT { CODE jump
    b"\x0c\x00\x02\x00sub-abc\x00"  # CHAIN "sub-abc" } }
    b"\x09\x00\x06\x00\x00\x03ab\x00\x00\x00\x00"  # USERDATA: comment TLV, padded
)


def test_add_element_matches_nft():
    m = nftelem.add_message("inet", "podnet-bridge", "masq4", [(ipaddress.ip_address("10.1.0.9"), "sub-abc", "ab")])
    assert (m.kind, m.flags, m.family) == (12, 0x400, 1)  # NFT_MSG_NEWSETELEM, NLM_F_CREATE, NFPROTO_INET
    assert m.line == "add element inet podnet-bridge masq4"  # what a refusal names
    body = m.body
    head = b"\x12\x00\x01\x00podnet-bridge\x00\x00\x00" + b"\x0a\x00\x02\x00masq4\x00\x00\x00"
    assert body == head + struct.pack("=HH", 4 + len(NFT_ELEMENTS), 3 | 0x8000) + NFT_ELEMENTS


def test_delete_carries_only_keys_and_ipv6_is_16_bytes():
    m = nftelem.delete_message("inet", "t", "masq6", [ipaddress.ip_address("fd00::5")])
    assert (m.kind, m.flags, m.family) == (14, 0, 1)  # NFT_MSG_DELSETELEM
    body = m.body
    assert ipaddress.ip_address("fd00::5").packed in body
    assert b"sub-" not in body and struct.pack(">i", -3) not in body


def test_no_comment_no_userdata():
    m = nftelem.add_message("inet", "t", "masq4", [(ipaddress.ip_address("10.0.0.1"), "c", None)])
    assert m.body.endswith(b"\x06\x00\x02\x00c\x00\x00\x00")  # ends with the chain name, padded


def test_batch_frames_and_acks():
    """nftelem's batches (nftnl.encode with ack_each): every message asks for an ACK."""
    msgs = [nftelem.delete_message("inet", "t", "masq4", [ipaddress.ip_address("10.0.0.1")])] * 2
    data = nftnl.encode(msgs, 100, ack_each=True)
    types, pos = [], 0
    while pos < len(data):
        length, mtype, flags, seq, _ = struct.unpack_from("=LHHLL", data, pos)
        types.append((mtype, seq, bool(flags & nftnl.NLM_F_ACK)))
        if mtype in (nftnl.NFNL_MSG_BATCH_BEGIN, nftnl.NFNL_MSG_BATCH_END):
            assert data[pos + 18 : pos + 20] == struct.pack(">H", nftnl.NFNL_SUBSYS_NFTABLES)
            assert data[pos + 16] == socket.AF_UNSPEC
        pos += (length + 3) & ~3
    delete = (nftnl.NFNL_SUBSYS_NFTABLES << 8) | nftnl.DELSETELEM
    assert types == [(0x10, 100, False), (delete, 101, True), (delete, 102, True), (0x11, 103, False)]
    reply = struct.pack("=LHHLLi", 20, 2, 0, 101, 0, 0) + struct.pack("=LHHLLi", 20, 2, 0, 102, 0, -2)
    assert nftnl.read_acks(reply) == {101: 0, 102: 2}
    assert nftnl.read_acks(reply + struct.pack("=LHHLL", 20, 2, 0, 103, 0)) == {101: 0, 102: 2}  # cut short: skipped


def test_refuses_what_it_cannot_say():
    with pytest.raises(ValueError, match="family"):
        nftelem.delete_message("bridge", "t", "s", [ipaddress.ip_address("10.0.0.1")])
    with pytest.raises(ValueError, match="too long"):
        nftelem.comment_userdata("x" * 300)
