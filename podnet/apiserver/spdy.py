"""The server side of SPDY/3.1, as Kubernetes' streaming clients speak it.

kubectl port-forward (always) and exec/attach (before 1.30, or when the
websocket upgrade fails) multiplex streams over one SPDY session: the client
opens each (SYN_STREAM, headers such as `streamtype`), we answer SYN_REPLY,
DATA flows both ways, an empty DATA frame with FIN half-closes a direction.
It runs over the HTTP connection after `Upgrade: SPDY/3.1` (`upgrade_raw`) or
inside a websocket's binary messages (port-forward since 1.31; portforward.py).

What shaped it (client-go uses moby/spdystream, whose framer is Go's old
net/spdy; checked with kubectl 1.27 to 1.33):

* Header blocks share one zlib context per direction for the whole session,
  primed with the SPDY/3 dictionary: every header block must be inflated,
  even of a frame we ignore.
* spdystream has no flow control: it never sends WINDOW_UPDATE or SETTINGS
  and ignores ours. Enforcing the 64 KiB initial window would stall every
  transfer at 64 KiB, so we track the window but enforce it only once the
  peer shows it speaks flow control, and announce what we consume.
* So a spdystream peer is held back only by our not reading: a stream with
  INBOX_LIMIT unread bytes stalls the session until its reader catches up.
* Go writes a frame in several writes, each its own websocket message in the
  tunnel: the tunnel is a byte stream, not one frame per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast

from aiohttp import web

VERSION, FLAG_FIN, SETTINGS_INITIAL_WINDOW_SIZE, INITIAL_WINDOW = 3, 0x01, 7, 64 * 1024
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
RST_REFUSED_STREAM, RST_CANCEL, GOAWAY_OK, GOAWAY_PROTOCOL_ERROR = 3, 5, 0, 1
MAX_CHUNK = 32 * 1024  # DATA payload we send per frame
INBOX_LIMIT = 1024 * 1024  # unread bytes a stream may hold before the session stops reading
MAX_CONTROL_FRAME = 1024 * 1024  # header blocks are tiny; refuse absurd lengths early
MAX_HEADER_BLOCK = 256 * 1024  # decompressed: a few compressed bytes must not inflate to gigabytes
SPDY_UPGRADE = "SPDY/3.1"  # the Upgrade header value, also the websocket tunnel prefix + "+"

# The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00,
# 2.6.10.1): comma-separated words, each stored with a 4-byte length, then a raw tail.
_WORDS = (
    "options,head,post,put,delete,trace,accept,accept-charset,accept-encoding,accept-language,accept-ranges,age,"
    "allow,authorization,cache-control,connection,content-base,content-encoding,content-language,content-length,"
    "content-location,content-md5,content-range,content-type,date,etag,expect,expires,from,host,if-match,"
    "if-modified-since,if-none-match,if-range,if-unmodified-since,last-modified,location,max-forwards,pragma,"
    "proxy-authenticate,proxy-authorization,range,referer,retry-after,server,te,trailer,transfer-encoding,upgrade,"
    "user-agent,vary,via,warning,www-authenticate,method,get,status,200 OK,version,HTTP/1.1,url,public,set-cookie,"
    "keep-alive,origin"
)
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS.split(",")) + _TAIL.encode()


class SpdyError(Exception):
    """The peer broke the SPDY protocol; the session cannot go on."""


class Transport(Protocol):
    """A byte pipe under a session: read() -> b"" at the end."""

    async def read(self) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


def control_frame(ftype: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, data: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


def decode_header_block(block: bytes) -> dict[str, str]:
    """-> {lowercase name: value}; several values stay NUL-separated."""
    try:
        (count,), pos, headers = struct.unpack_from(">I", block), 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name, pos = block[pos + 4 : pos + 4 + n].decode().lower(), pos + 4 + n
            (n,) = struct.unpack_from(">I", block, pos)
            headers[name], pos = block[pos + 4 : pos + 4 + n].decode(), pos + 4 + n
        if pos > len(block):
            raise struct.error(f"lengths run {pos - len(block)} bytes past the block")
    except (struct.error, UnicodeDecodeError) as e:
        raise SpdyError(f"decoding a SPDY header block: {e}") from e
    return headers


class HeaderCodec:
    """One zlib context per direction for the whole session (see the top)."""

    def __init__(self) -> None:
        self._compress = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._decompress = zlib.decompressobj(zdict=DICTIONARY)

    def encode_empty(self) -> bytes:
        """A header block with no headers: all a server's SYN_REPLY needs (kubelet sends the same)."""
        return self._compress.compress(struct.pack(">I", 0)) + self._compress.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, data: bytes) -> dict[str, str]:
        try:
            block = self._decompress.decompress(data, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise SpdyError(f"decompressing a SPDY header block: {e}") from e
        if self._decompress.unconsumed_tail:
            raise SpdyError(f"a SPDY header block larger than {MAX_HEADER_BLOCK} bytes")
        return decode_header_block(block)


class Stream:
    """One client-opened stream. read() -> b"" once the client half-closed
    (FIN) or reset it, or the session ended; unread data comes first."""

    def __init__(self, session: Session, stream_id: int, headers: dict[str, str], remote_fin: bool) -> None:
        self.session, self.id, self.headers = session, stream_id, headers
        self.remote_closed, self.local_closed, self.was_reset = remote_fin, False, False
        self._inbox: deque[bytes] = deque()
        self._buffered = self._unannounced = 0
        self._send_window = session.initial_window
        # Data, FIN, reset, room in the inbox, send window: every waiter re-checks
        # its own condition (check, clear, wait has no await in between).
        self._changed = asyncio.Event()

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "").split("\0")[0]

    def _gone(self) -> bool:
        return self.was_reset or self.session.closed.is_set()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def read(self) -> bytes:
        while not self._inbox:
            if self.remote_closed or self._gone():
                return b""
            await self._wait()
        data = self._inbox.popleft()
        self._buffered -= len(data)
        self._unannounced += len(data)
        self._changed.set()
        if self._unannounced >= INITIAL_WINDOW // 2 and not (self.remote_closed or self._gone()):
            delta, self._unannounced = self._unannounced, 0
            await self.session.send(control_frame(WINDOW_UPDATE, 0, struct.pack(">II", self.id, delta)))
        return data

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.session.flow_control and self._send_window <= 0 and not self._gone():
                await self._wait()
                continue
            if self.local_closed or self._gone():
                raise ConnectionResetError(f"write on SPDY stream {self.id}: the stream is closed")
            size = min(len(view), MAX_CHUNK, self._send_window if self.session.flow_control else MAX_CHUNK)
            self._send_window -= size
            await self.session.send(data_frame(self.id, 0, bytes(view[:size])))
            view = view[size:]

    async def close(self) -> None:
        """Half-close our direction (an empty DATA frame with FIN)."""
        if not (self.local_closed or self._gone()):
            self.local_closed = True
            if self.remote_closed:
                self.session.forget(self)
            await self.session.send(data_frame(self.id, FLAG_FIN, b""))

    async def reset(self, status: int = RST_CANCEL) -> None:
        if not self._gone():
            self._on_reset()
            await self.session.send(control_frame(RST_STREAM, 0, struct.pack(">II", self.id, status)))

    # ---- called by the session ----

    async def _deliver(self, data: bytes, fin: bool) -> None:
        if data and not (self.remote_closed or self._gone()):
            self._inbox.append(data)
            self._buffered += len(data)
            self._changed.set()
            while self._buffered >= INBOX_LIMIT and not self._gone():
                await self._wait()  # holds the session's reader: see the top
        if fin:
            self.remote_closed = True
            self._changed.set()
            if self.local_closed:
                self.session.forget(self)

    def _on_reset(self) -> None:
        self.was_reset = True
        self.session.forget(self)
        self._changed.set()

    def _grow_window(self, delta: int) -> None:
        self._send_window += delta
        self._changed.set()


class Session:
    """A server-side SPDY session over `transport`.

    `accept(headers)` is called for every new stream: return None to accept
    (SYN_REPLY is sent at once and the stream appears on `incoming`) or a
    reason to refuse it (RST_STREAM). run() reads until the transport ends;
    then `incoming` yields None and every stream reads EOF."""

    def __init__(self, transport: Transport, accept: Callable[[dict[str, str]], str | None]) -> None:
        self.transport, self.accept = transport, accept
        self.incoming: asyncio.Queue[Stream | None] = asyncio.Queue()
        self.closed, self.streams = asyncio.Event(), dict[int, Stream]()
        self.flow_control, self.initial_window = False, INITIAL_WINDOW
        self._codec, self._write_lock = HeaderCodec(), asyncio.Lock()
        self._last_stream_id, self._goaway_sent = 0, False

    async def send(self, frame: bytes) -> None:
        async with self._write_lock:
            await self.transport.write(frame)

    async def goaway(self) -> None:
        if not (self._goaway_sent or self.closed.is_set()):
            self._goaway_sent = True
            await self.send(control_frame(GOAWAY, 0, struct.pack(">II", self._last_stream_id, GOAWAY_OK)))

    async def run(self) -> None:
        buf = bytearray()
        try:
            while True:
                data = await self.transport.read()
                if not data:
                    return
                buf += data
                while len(buf) >= 8:
                    (length,) = struct.unpack_from(">I", buf, 4)
                    length &= 0xFFFFFF
                    if buf[0] & 0x80 and length > MAX_CONTROL_FRAME:
                        raise SpdyError(f"SPDY control frame of {length} bytes (at most {MAX_CONTROL_FRAME})")
                    if len(buf) < 8 + length:
                        break
                    frame = bytes(buf[: 8 + length])
                    del buf[: 8 + length]
                    await self._handle(frame)
        except SpdyError:
            with contextlib.suppress(ConnectionError):  # tell the peer why, if it still listens
                await self.send(
                    control_frame(GOAWAY, 0, struct.pack(">II", self._last_stream_id, GOAWAY_PROTOCOL_ERROR))
                )
            await self.transport.close()
        except ConnectionError:
            await self.transport.close()
        finally:
            self.closed.set()
            for stream in list(self.streams.values()):
                stream._on_reset()
            self.incoming.put_nowait(None)

    async def _handle(self, frame: bytes) -> None:
        flags, payload = frame[4], frame[8:]
        if not frame[0] & 0x80:  # DATA
            stream = self.streams.get(struct.unpack_from(">I", frame)[0])
            if stream is not None:  # else one we closed and forgot: spdystream drops these too
                await stream._deliver(payload, bool(flags & FLAG_FIN))
            return
        version, ftype = struct.unpack_from(">HH", frame)
        if version & 0x7FFF != VERSION:
            raise SpdyError(f"SPDY version {version & 0x7FFF} frame (only {VERSION} is spoken)")
        if ftype == SYN_STREAM:
            await self._syn_stream(flags, payload)
        elif ftype in (SYN_REPLY, HEADERS):
            self._codec.decode(payload[4:])  # keeps the shared zlib context in step
        elif ftype == RST_STREAM and len(payload) >= 8:
            stream = self.streams.get(struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF)
            if stream is not None:
                stream._on_reset()
        elif ftype == SETTINGS:
            self._settings(payload)
        elif ftype == PING and len(payload) == 4:
            if struct.unpack(">I", payload)[0] % 2 == 1:  # client pings are odd; echo them
                await self.send(frame)
        elif ftype == GOAWAY:
            self._goaway_sent = True  # no new streams either way; the client closes the transport next
        elif ftype == WINDOW_UPDATE and len(payload) >= 8:
            stream_id, delta = struct.unpack_from(">II", payload)
            self.flow_control = True
            stream = self.streams.get(stream_id & 0x7FFFFFFF)
            if stream is not None:
                stream._grow_window(delta & 0x7FFFFFFF)

    async def _syn_stream(self, flags: int, payload: bytes) -> None:
        if len(payload) < 10:
            raise SpdyError(f"SYN_STREAM of {len(payload)} bytes")
        (stream_id,) = struct.unpack_from(">I", payload)
        stream_id &= 0x7FFFFFFF
        headers = self._codec.decode(payload[10:])
        if stream_id % 2 == 0 or stream_id <= self._last_stream_id:
            raise SpdyError(f"client opened SPDY stream {stream_id} after {self._last_stream_id} (odd, rising)")
        self._last_stream_id = stream_id
        refusal = "the session is going away" if self._goaway_sent else self.accept(headers)
        if refusal is not None:
            await self.send(control_frame(RST_STREAM, 0, struct.pack(">II", stream_id, RST_REFUSED_STREAM)))
            return
        stream = Stream(self, stream_id, headers, bool(flags & FLAG_FIN))
        self.streams[stream_id] = stream
        await self.send(control_frame(SYN_REPLY, 0, struct.pack(">I", stream_id) + self._codec.encode_empty()))
        self.incoming.put_nowait(stream)

    def _settings(self, payload: bytes) -> None:
        for i in range(max(0, (len(payload) - 4) // 8)):  # the entries there are, whatever the count says
            ident, value = struct.unpack_from(">II", payload, 4 + 8 * i)
            if ident & 0xFFFFFF == SETTINGS_INITIAL_WINDOW_SIZE:
                self.flow_control = True
                for stream in self.streams.values():
                    stream._grow_window(value - self.initial_window)
                self.initial_window = value

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)


class RawTransport:
    """The HTTP connection itself after `101 Switching Protocols`. aiohttp
    passes on raw bytes only after websocket upgrades, so we become the
    connection's parser (feed_data/feed_eof, as `RequestHandler.set_parser`
    wants) before answering 101; the client sends nothing before reading it."""

    def __init__(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        self.request, self.response = request, response
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._paused = False
        cast(Any, request.protocol).set_parser(self)

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._chunks.put_nowait(bytes(data))
        if self._chunks.qsize() > 64 and self.request.transport is not None:
            self.request.transport.pause_reading()  # back-pressure: see the top
            self._paused = True
        return False, b""

    def feed_eof(self) -> None:
        self._chunks.put_nowait(b"")

    async def read(self) -> bytes:
        data = await self._chunks.get()
        if self._paused and self._chunks.qsize() < 16 and self.request.transport is not None:
            self._paused = False
            self.request.transport.resume_reading()
        if not data:
            self._chunks.put_nowait(b"")  # later reads see the end too
        return data

    async def write(self, data: bytes) -> None:
        if self.request.transport is None or self.request.transport.is_closing():
            raise ConnectionResetError("SPDY connection: the client is gone")
        await self.response.write(data)

    async def close(self) -> None:
        if self.request.transport is not None:
            self.request.transport.close()
        self._chunks.put_nowait(b"")


def protocols_offered(values: list[str]) -> list[str]:
    """Comma-separated header values, in the client's order."""
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def upgrade_of(request: web.BaseRequest) -> str:
    """The protocol an upgrade request asks for, lowercased ("" if none)."""
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return ""
    return request.headers.get("Upgrade", "").strip().lower()


async def upgrade_raw(request: web.BaseRequest, protocol: str) -> RawTransport:
    """Answer `101 Switching Protocols` to SPDY/3.1 with the negotiated
    X-Stream-Protocol-Version and return the connection as a transport."""
    response = web.StreamResponse(status=101)
    response._length_check = False  # type: ignore[misc]  # a raw byte stream follows, as for websockets
    response.headers.update({"Connection": "Upgrade", "Upgrade": SPDY_UPGRADE})
    if protocol:
        response.headers["X-Stream-Protocol-Version"] = protocol
    response.force_close()
    transport = RawTransport(request, response)
    await response.prepare(request)
    return transport
