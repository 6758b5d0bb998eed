"""nft rule text -> nf_tables netlink expressions, for the few shapes the
Services table's per-Service chains use. Pure (no socket, no kernel).

Why: `nft` 1.0.6 (the tool and libnftables alike) re-reads the ruleset's
chains and sets before every command, and its own commit moves the
generation id, so even a long-lived libnftables context reads them again:
about 40 ms at 10,000 Services for a two-rule change. Building the
expressions ourselves lets nftnl.py send a one-Service change as one small
netlink batch.

The bytecode is exactly what nft 1.0.6 emits for the same text (checked
with `nft --debug=netlink`), so the kernel lists the rule the same way and a
table changed through here equals one loaded whole by `nft -f`. Anything
outside the known shapes raises Unsupported and the caller hands the
script to `nft` instead: this compiler only has to be right, not complete.

Shapes: `ip saddr|daddr [!=] A.B.C.D[/P]`, `ip saddr|daddr @set`,
`meta l4proto tcp|udp|sctp`, `numgen random mod N [==] V`,
`fib saddr|daddr type local`, `meta mark set meta mark | X`,
`update @set { ip saddr }`, `dnat to A.B.C.D:PORT`, and the verdicts
accept, drop, return, jump C, goto C.
"""

import ipaddress
import socket
import struct

NLA_F_NESTED = 0x8000
NFTA_LIST_ELEM = 1
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN = 1, 2
VERDICTS = {"accept": 1, "drop": 0, "return": -5, "jump": -3, "goto": -4}
PROTOS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
ADDR_OFFSET = {"saddr": 12, "daddr": 16}  # in the IPv4 header
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_META_MARK, NFT_META_L4PROTO = 3, 16
NFT_CMP_EQ, NFT_CMP_NEQ = 0, 1
NFT_NG_RANDOM = 1
NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_F_SADDR, NFTA_FIB_F_DADDR = 3, 1, 2
RTN_LOCAL = 2
NFT_NAT_DNAT, NFPROTO_IPV4, NF_NAT_RANGE_PROTO_SPECIFIED = 1, 2, 2
NFT_DYNSET_OP_UPDATE = 1
REG_VERDICT, REG1, REG2 = 0, 1, 2


class Unsupported(ValueError):
    """Text this compiler does not know; the caller uses `nft` for it."""


# ---- netlink attributes -------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)


def nest(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack(">I", value))  # nf_tables attributes are big-endian


def string(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def value(kind: int, data: bytes) -> bytes:
    return nest(kind, attr(NFTA_DATA_VALUE, data))


def verdict(kind: int, text: str) -> bytes:
    """`drop`, `goto chain`... as NFTA_DATA_VERDICT under attribute `kind`."""
    words = text.split()
    if not words or words[0] not in VERDICTS or len(words) != (2 if words[0] in ("jump", "goto") else 1):
        raise Unsupported("verdict %r" % text)
    inner = attr(NFTA_VERDICT_CODE, struct.pack(">i", VERDICTS[words[0]]))
    if len(words) == 2:
        inner += string(NFTA_VERDICT_CHAIN, words[1])
    return nest(kind, nest(NFTA_DATA_VERDICT, inner))


def _expr(name: str, *parts: bytes) -> bytes:
    return nest(NFTA_LIST_ELEM, string(1, name), nest(2, *parts))  # NFTA_EXPR_NAME, NFTA_EXPR_DATA


def _host32(n: int) -> bytes:
    return struct.pack("=I", n & 0xFFFFFFFF)  # registers hold host-order words for meta/numgen/fib


def payload(offset: int, length: int) -> bytes:
    return _expr("payload", u32(1, REG1), u32(2, NFT_PAYLOAD_NETWORK_HEADER), u32(3, offset), u32(4, length))


def cmp(op: int, data: bytes) -> bytes:
    return _expr("cmp", u32(1, REG1), u32(2, op), value(3, data))


def bitwise(mask: bytes, xor: bytes) -> bytes:
    return _expr("bitwise", u32(1, REG1), u32(2, REG1), u32(3, len(mask)), value(4, mask), value(5, xor))


def immediate(reg: int, data: bytes) -> bytes:
    return _expr("immediate", u32(1, reg), value(2, data))


def immediate_verdict(text: str) -> bytes:
    return _expr("immediate", u32(1, REG_VERDICT), verdict(2, text))


# ---- statements ---------------------------------------------------------------


def _addr_match(field: str, neg: bool, text: str) -> list[bytes]:
    """nft's shortest form: a whole-byte prefix compares only its bytes, any
    other prefix loads the address and masks it."""
    try:
        net = ipaddress.IPv4Network(text)
    except ValueError:
        raise Unsupported("address %r" % text) from None
    op, off, p = NFT_CMP_NEQ if neg else NFT_CMP_EQ, ADDR_OFFSET[field], net.prefixlen
    if p % 8 == 0 and p > 0:
        return [payload(off, p // 8), cmp(op, net.network_address.packed[: p // 8])]
    return [payload(off, 4), bitwise(net.netmask.packed, b"\0" * 4), cmp(op, net.network_address.packed)]


def _ipv4(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise Unsupported("address %r" % text) from None


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise Unsupported("number %r" % text) from None


def compile_rule(body: str) -> list[bytes]:
    """Rule text -> its expressions (NFTA_LIST_ELEM each), in order."""
    w = body.split()
    out: list[bytes] = []
    i = 0

    def take(*expected: str) -> bool:
        nonlocal i
        if tuple(w[i : i + len(expected)]) == expected:
            i += len(expected)
            return True
        return False

    while i < len(w):
        if w[i] == "ip" and i + 2 < len(w) and w[i + 1] in ADDR_OFFSET:
            field, i = w[i + 1], i + 2
            neg = take("!=")
            if w[i].startswith("@") and not neg:
                out += [payload(ADDR_OFFSET[field], 4), _expr("lookup", string(1, w[i][1:]), u32(2, REG1))]
            else:
                out += _addr_match(field, neg, w[i])
            i += 1
        elif take("meta", "l4proto"):
            if w[i] not in PROTOS:
                raise Unsupported("protocol %r" % w[i])
            out += [_expr("meta", u32(2, NFT_META_L4PROTO), u32(1, REG1)), cmp(NFT_CMP_EQ, bytes([PROTOS[w[i]]]))]
            i += 1
        elif take("meta", "mark", "set", "meta", "mark", "|"):
            bits = _int(w[i])
            out += [
                _expr("meta", u32(2, NFT_META_MARK), u32(1, REG1)),
                bitwise(_host32(~bits), _host32(bits)),
                _expr("meta", u32(2, NFT_META_MARK), u32(3, REG1)),
            ]
            i += 1
        elif take("numgen", "random", "mod"):
            mod = _int(w[i])
            i += 1
            take("==")
            out += [
                _expr("numgen", u32(1, REG1), u32(2, mod), u32(3, NFT_NG_RANDOM)),
                cmp(NFT_CMP_EQ, _host32(_int(w[i]))),
            ]
            i += 1
        elif w[i] == "fib" and w[i + 1 : i + 4] in (["saddr", "type", "local"], ["daddr", "type", "local"]):
            flag = NFTA_FIB_F_SADDR if w[i + 1] == "saddr" else NFTA_FIB_F_DADDR
            out += [
                _expr("fib", u32(1, REG1), u32(2, NFT_FIB_RESULT_ADDRTYPE), u32(3, flag)),
                cmp(NFT_CMP_EQ, _host32(RTN_LOCAL)),
            ]
            i += 4
        elif w[i] == "update" and w[i + 1].startswith("@") and w[i + 2 : i + 6] == ["{", "ip", "saddr", "}"]:
            out += [
                payload(ADDR_OFFSET["saddr"], 4),
                _expr("dynset", string(1, w[i + 1][1:]), u32(3, NFT_DYNSET_OP_UPDATE), u32(4, REG1)),
            ]
            i += 6
        elif take("dnat", "to"):
            ip, sep, port = w[i].partition(":")
            if not sep:
                raise Unsupported("dnat without a port: %r" % w[i])
            out += [
                immediate(REG1, _ipv4(ip)),
                immediate(REG2, struct.pack(">H", _int(port))),
                _expr(
                    "nat",
                    u32(1, NFT_NAT_DNAT),
                    u32(2, NFPROTO_IPV4),
                    u32(3, REG1),
                    u32(5, REG2),
                    u32(7, NF_NAT_RANGE_PROTO_SPECIFIED),
                ),
            ]
            i += 1
        elif w[i] in ("jump", "goto") and i + 2 == len(w):
            out.append(immediate_verdict(" ".join(w[i:])))
            i += 2
        elif w[i] in ("accept", "drop", "return") and i + 1 == len(w):
            out.append(immediate_verdict(w[i]))
            i += 1
        else:
            raise Unsupported("rule %r at %r" % (body, " ".join(w[i : i + 3])))
    return out


def element_key(text: str) -> bytes:
    """`10.96.0.1 . tcp . 80` -> the key bytes of a set element. A
    concatenation pads each field to 4 bytes (nft's register layout); the
    Services table's keys are IPv4 addresses, protocols and ports."""
    fields = [f.strip() for f in text.split(" . ")]
    out = []
    for f in fields:
        if f in PROTOS:
            b = bytes([PROTOS[f]])
        elif f.isdigit():
            b = struct.pack(">H", int(f))
        else:
            b = _ipv4(f)
        out.append(b + b"\0" * (-len(b) % 4) if len(fields) > 1 else b)
    return b"".join(out)
