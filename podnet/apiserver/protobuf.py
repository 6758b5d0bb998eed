"""Request bodies in Kubernetes protobuf (`application/vnd.kubernetes.protobuf`)
-> the JSON object kubectl would have sent.

kubectl's typed commands (`create namespace`, `create deployment`, `create
service ...`) encode the object with protobuf and do not fall back to JSON
when the server refuses it, so the API server has to read it. The body is
the magic `k8s\\x00` and a runtime.Unknown {1: typeMeta {1: apiVersion, 2:
kind}, 2: raw, 3: contentEncoding, 4: contentType}, whose raw bytes are the
object's own message; podnet.apiserver.protoschema says which field number
is which JSON field.

The wire reader is our own (varints, 64- and 32-bit words, length-delimited
bytes; packed repeated scalars): a protobuf library would need the compiled
.proto files of all of Kubernetes for the handful of kinds podnet serves.

Nothing is dropped quietly: a field number the schema does not know, or a
field podnet does not decode, fails the whole body with its field path
(UnknownFields), since accepting it would look like it had been applied.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from typing import Any

from podnet.api.types import Obj
from podnet.apiserver.errors import StatusError, bad_request
from podnet.apiserver.protoschema import DROP, KINDS, REFUSE, SCHEMA, Field

MAGIC = b"k8s\x00"
VARINT, I64, LEN, I32 = 0, 1, 2, 5
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class ProtobufError(ValueError):
    """A body that is not well-formed Kubernetes protobuf (a 400)."""


class UnsupportedKind(ProtobufError):
    """A well-formed body of a kind (or an encoding) podnet does not decode (a 415)."""


class UnknownFields(ProtobufError):
    """Fields set in the body that podnet would otherwise drop; `paths` names them."""

    def __init__(self, kind: str, paths: list[str]):
        self.kind, self.paths = kind, paths
        super().__init__(
            "protobuf body of a %s sets fields podnet does not decode: %s (send the object as JSON, "
            "e.g. with kubectl create -f)" % (kind, ", ".join(paths))
        )


# ---- the wire format ------------------------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """The varint at buf[i:] and the index after it."""
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("protobuf: truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift >= 64:
            raise ProtobufError("protobuf: varint longer than 10 bytes")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one message: an int
    for varints and fixed words, the bytes for length-delimited fields."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ProtobufError("protobuf: field number 0")
        value: int | bytes
        if wt == VARINT:
            value, i = _varint(buf, i)
        elif wt in (I64, I32):
            n = 8 if wt == I64 else 4
            if i + n > len(buf):
                raise ProtobufError("protobuf: truncated %d-bit field %d" % (n * 8, num))
            value, i = int.from_bytes(buf[i : i + n], "little"), i + n
        elif wt == LEN:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtobufError("protobuf: field %d is %d bytes, %d left" % (num, n, len(buf) - i))
            value, i = buf[i : i + n], i + n
        else:  # 3 and 4 are proto2 groups, which Kubernetes never uses; 6 and 7 do not exist
            raise ProtobufError("protobuf: field %d has wire type %d" % (num, wt))
        yield num, wt, value


def _signed(v: int) -> int:
    """int32 and int64 are sent as the two's complement in 64 bits."""
    return v - (1 << 64) if v >= 1 << 63 else v


# ---- messages -> JSON ---------------------------------------------------------------


def _join(path: str, name: str) -> str:
    return "%s.%s" % (path, name) if path else name


class _Decoder:
    """Decodes messages, collecting the paths of fields it would have to drop."""

    def __init__(self) -> None:
        self.unknown: list[str] = []

    def message(self, buf: bytes, name: str, path: str) -> Obj:
        """One message as a JSON object, its keys in the schema's (Go's) order."""
        schema = SCHEMA[name]
        seen: dict[int, Any] = {}
        for num, wt, v in fields(buf):
            f = schema.get(num)
            if f is None:
                self.unknown.append(_join(path, "<field %d of %s>" % (num, name)))
            elif f.type == REFUSE:
                self.unknown.append(_join(path, f.name))
            elif f.type == DROP:
                continue
            elif f.repeated or f.map:
                items = seen.setdefault(num, [])
                if f.type in ("i", "b") and wt == LEN:  # packed: the varints back to back
                    packed, j = _need_bytes(v, path), 0
                    while j < len(packed):
                        x, j = _varint(packed, j)
                        items.append(x)
                else:
                    items.append(_wire(wt, v, f, path))
            elif f.type in ("i", "b", "s"):
                seen[num] = _wire(wt, v, f, path)  # the last one wins, as in protobuf
            else:  # a message sent twice is merged, as protobuf does it: concatenate
                seen[num] = seen.get(num, b"") + _wire(wt, v, f, path)
        out: Obj = {}
        for num, f in schema.items():
            if num not in seen:
                continue
            p, v = _join(path, f.name), seen[num]
            if f.inline:
                out.update(self.message(v, f.type, path))
            elif f.map:
                out[f.name] = dict(self.entry(e, f, p) for e in v)
            elif f.repeated:
                out[f.name] = [self.value(e, f.type, "%s[%d]" % (p, k)) for k, e in enumerate(v)]
            else:
                val = self.value(v, f.type, p)
                if f.keep_zero or f.type not in ("s", "i", "b") or val:
                    out[f.name] = val
        return out

    def entry(self, buf: bytes, f: Field, path: str) -> tuple[str, Any]:
        """A map entry {1: key, 2: value}; a missing part is the zero value."""
        d = self.plain(buf, path, {1: "s", 2: "s" if f.type == "s" else "raw"})
        key = d.get(1, "")
        return key, d.get(2, "") if f.type == "s" else self.value(d.get(2, b""), f.type, "%s[%s]" % (path, key))

    def value(self, v: Any, t: str, path: str) -> Any:
        """One value of type t (a scalar or a message) as JSON."""
        if t == "s":
            return _str(v, path)
        if t == "i":
            return _signed(v)
        if t == "b":
            return bool(v)
        if t in ("Time", "MicroTime"):
            return self.time(v, path, micro=t == "MicroTime")
        if t == "IntOrString":  # {1: type (0 int, 1 string), 2: intVal, 3: strVal}
            d = self.plain(v, path, {1: "i", 2: "i", 3: "s"})
            return d.get(3, "") if d.get(1) == 1 else d.get(2, 0)
        if t == "Bytes":  # a Secret's data: JSON has it in base64
            return base64.b64encode(v if isinstance(v, bytes) else b"").decode()
        if t == "Quantity":  # {1: the canonical string}
            return self.plain(v, path, {1: "s"}).get(1, "0")
        return self.message(v, t, path)

    def plain(self, buf: bytes, path: str, types: dict[int, str]) -> dict[int, Any]:
        """A small message by field number: "s" strings, "i" integers, "raw" bytes."""
        out: dict[int, Any] = {}
        for num, wt, v in fields(buf):
            t = types.get(num)
            if t is None:
                self.unknown.append(_join(path, "<field %d>" % num))
                continue
            v = _wire(wt, v, t, path)
            out[num] = _str(v, path) if t == "s" else _signed(v) if t == "i" else v
        return out

    def time(self, buf: bytes, path: str, micro: bool) -> str | None:
        """metav1.Time {1: seconds, 2: nanos} -> RFC 3339 as its JSON has it
        (whole seconds; MicroTime with 6 digits). A zero time is sent as an
        empty message and is JSON null."""
        if not buf:
            return None
        d = self.plain(buf, path, {1: "i", 2: "i"})
        try:
            t = _EPOCH + datetime.timedelta(seconds=d.get(1, 0), microseconds=d.get(2, 0) // 1000)
        except OverflowError:
            raise ProtobufError("protobuf: %s: time out of range" % path) from None
        # by hand: strftime's %Y does not pad years before 1000 on glibc
        text = "%04d-%02d-%02dT%02d:%02d:%02d" % (t.year, t.month, t.day, t.hour, t.minute, t.second)
        return text + (".%06dZ" % t.microsecond if micro else "Z")


def _wire(wt: int, v: int | bytes, f: Field | str, path: str) -> Any:
    """v, checked to have the wire type its field's type is sent with."""
    t = f.type if isinstance(f, Field) else f
    want = VARINT if t in ("i", "b") else LEN
    if wt != want:
        raise ProtobufError("protobuf: %s: wire type %d, expected %d" % (path or "body", wt, want))
    return v


def _need_bytes(v: int | bytes, path: str) -> bytes:
    if not isinstance(v, bytes):
        raise ProtobufError("protobuf: %s: a number where bytes belong" % (path or "body"))
    return v


def _str(v: bytes, path: str) -> str:
    try:
        return v.decode()
    except UnicodeDecodeError:
        raise ProtobufError("protobuf: %s: not UTF-8" % (path or "body")) from None


# ---- the envelope -------------------------------------------------------------------------


def decode(raw: bytes) -> Obj:
    """A Kubernetes protobuf body -> the JSON object, apiVersion and kind
    first (from the envelope's TypeMeta). UnsupportedKind for a kind not in
    podnet.apiserver.protoschema.KINDS, UnknownFields for fields podnet would
    drop, ProtobufError for anything malformed."""
    if not raw.startswith(MAGIC):
        raise ProtobufError("protobuf: the body does not start with the Kubernetes magic k8s\\x00")
    dec = _Decoder()
    env = dec.plain(raw[len(MAGIC) :], "", {1: "raw", 2: "raw", 3: "s", 4: "s"})
    tm = dec.plain(env.get(1, b""), "typeMeta", {1: "s", 2: "s"})
    api_version, kind = tm.get(1, ""), tm.get(2, "")
    if env.get(3) or env.get(4):
        raise UnsupportedKind(
            "protobuf: contentEncoding %r, contentType %r: podnet reads only plain protobuf"
            % (env.get(3, ""), env.get(4, ""))
        )
    if dec.unknown:
        raise ProtobufError("protobuf: unknown fields in the runtime.Unknown envelope: " + ", ".join(dec.unknown))
    message = KINDS.get((api_version, kind))
    if message is None:
        raise UnsupportedKind(
            "protobuf: podnet does not decode %s %s from protobuf" % (api_version, kind or "(no kind)")
        )
    obj = dec.message(env.get(2, b""), message, "")
    if dec.unknown:
        raise UnknownFields(kind, dec.unknown)
    return {"kind": kind, "apiVersion": api_version, **obj}


def request_body(raw: bytes) -> Obj:
    """decode() for the REST handlers: the object, or the Status to answer
    with (415 for a kind or encoding podnet does not read, so the client
    knows to send JSON; 400 for a malformed body or undecoded fields)."""
    try:
        return decode(raw)
    except UnsupportedKind as exc:
        raise StatusError(415, "UnsupportedMediaType", str(exc)) from None
    except ProtobufError as exc:
        raise bad_request(str(exc)) from None
