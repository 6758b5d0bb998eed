"""kubectl port-forward: SPDY streams to localhost:<port> inside the pod.

kubectl opens one SPDY session (spdy.py) and, per local connection, two
streams with the same `requestid` and `port` headers: `streamtype: error`,
which it half-closes at once, and `streamtype: data`. As kubelet does, we
wait for both, connect to localhost:<port> in the pod's network namespace
(127.0.0.1, then ::1), copy bytes both ways passing half-closes on, and end
the error stream empty on success or with a message on failure.

What kubectl does with a message is its own business: since 1.23 any
message on an error stream makes it print the error and drop the whole
forward ("lost connection to pod"), as it does against a real kubelet. A
connection the pod resets is not such an error (kubelet does not close the
forward for ECONNRESET either): we reset the data stream, the local client
sees its connection closed, and the forward goes on.

kubectl 1.31+ first tries a websocket whose subprotocol is
`SPDY/3.1+portforward.k8s.io` and whose binary messages carry the SPDY
bytes; on refusal it falls back to `Upgrade: SPDY/3.1`. We accept both.

A socket belongs to the network namespace it was created in, so each dial
runs in a fresh thread that setns(2)s first and then ends: no shared worker
thread is ever moved into a pod and back.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from podnet.apiserver import spdy
from podnet.apiserver.streams import refuse_protocols, status_response

PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = f"{spdy.SPDY_UPGRADE}+{PROTOCOL}"  # the websocket subprotocol of kubectl's tunnel
STREAM_CREATION_TIMEOUT = 30.0  # kubelet's: both streams of a pair must be open by then
DIAL_TIMEOUT = 10.0
COPY_CHUNK = 32 * 1024
CLONE_NEWNET = 0x40000000


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if hasattr(os, "setns"):  # Python 3.12+
            os.setns(fd, CLONE_NEWNET)
        elif ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _dial_blocking(netns_path: str, port: int) -> socket.socket:
    """In the calling, throw-away thread: enter the namespace and connect."""
    _setns(netns_path)
    errors = []
    for family, host, label in ((socket.AF_INET, "127.0.0.1", "IPv4"), (socket.AF_INET6, "::1", "IPv6")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(DIAL_TIMEOUT)
        try:
            sock.connect((host, port))
        except OSError as e:
            sock.close()
            errors.append(f"{label}: dial tcp {host}:{port}: {e.strerror or e}")
            continue
        sock.setblocking(False)
        return sock
    why = f"failed to connect to localhost:{port} inside namespace {netns_path}, {'; '.join(errors)}"
    raise ConnectionRefusedError(errno.ECONNREFUSED, why)


def _settle(done: asyncio.Future[socket.socket], sock: socket.socket | None, error: Exception | None) -> None:
    if done.cancelled():
        if sock is not None:
            sock.close()
    elif error is not None:
        done.set_exception(error)
    elif sock is not None:
        done.set_result(sock)


async def dial_in_netns(netns_path: str, port: int) -> socket.socket:
    """A connected, non-blocking TCP socket to localhost:port in the netns."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[socket.socket] = loop.create_future()

    def run() -> None:
        try:
            sock = _dial_blocking(netns_path, port)
        except Exception as e:  # handed to the waiting coroutine
            loop.call_soon_threadsafe(_settle, done, None, e)
        else:
            loop.call_soon_threadsafe(_settle, done, sock, None)

    threading.Thread(target=run, name=f"portforward-dial-{port}", daemon=True).start()
    return await done


class WebSocketTransport:
    """SPDY bytes in binary websocket messages, with no framing of their own."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def read(self) -> bytes:
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return b""
            else:
                raise spdy.SpdyError(f"port-forward tunnel: a {msg.type.name} websocket message carries no SPDY")

    async def write(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class _Pair:
    request_id: str
    port: int
    error: spdy.Stream | None = None
    data: spdy.Stream | None = None
    timer: asyncio.TimerHandle | None = None
    streams: list[spdy.Stream] = field(default_factory=list)


class Forwarder:
    """Pairs the streams of one session and forwards each pair."""

    def __init__(self, netns_path: str, ports: list[int], pod: str) -> None:
        self.netns_path, self.ports, self.pod = netns_path, ports, pod
        self.pairs: dict[str, _Pair] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def check(self, headers: dict[str, str]) -> str | None:
        """spdy.Session's accept hook: refuse what kubelet refuses."""
        port, kind = headers.get("port", ""), headers.get("streamtype", "")
        if not port.isdigit() or not 0 < int(port) < 65536:
            return f"port header {port!r} is not a port number"
        if kind not in ("error", "data"):
            return f"invalid stream type {kind!r}"
        if self.ports and int(port) not in self.ports:
            return f"port {port} was not requested (ports={','.join(map(str, self.ports))})"
        return None

    async def serve(self, session: spdy.Session) -> None:
        runner = asyncio.create_task(session.run())
        try:
            while (stream := await session.incoming.get()) is not None:
                self._add(session, stream)
        finally:
            await runner
            for pair in self.pairs.values():
                if pair.timer is not None:
                    pair.timer.cancel()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        task = asyncio.create_task(fn(*args))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _add(self, session: spdy.Session, stream: spdy.Stream) -> None:
        kind = stream.header("streamtype")
        # Clients without request ids (before 1.6) get kubelet's guess: the
        # error stream's id, or the data stream's id minus 2.
        request_id = stream.header("requestid") or str(stream.id - (2 if kind == "data" else 0))
        pair = self.pairs.get(request_id)
        if pair is None:
            pair = self.pairs[request_id] = _Pair(request_id, int(stream.header("port")))
            loop = asyncio.get_running_loop()
            pair.timer = loop.call_later(STREAM_CREATION_TIMEOUT, self._spawn, self._expire, session, pair)
        pair.streams.append(stream)
        if getattr(pair, kind) is not None:
            why = f"error processing stream for request {request_id}: {kind} stream already assigned"
            self._spawn(self._fail, session, pair, why)
            return
        setattr(pair, kind, stream)
        if pair.error is not None and pair.data is not None:
            if pair.timer is not None:
                pair.timer.cancel()
            del self.pairs[request_id]
            self._spawn(self._forward, session, pair)

    async def _expire(self, session: spdy.Session, pair: _Pair) -> None:
        if self.pairs.pop(pair.request_id, None) is not None:
            await self._fail(session, pair, f"(request={pair.request_id}) timed out waiting for streams")

    async def _fail(self, session: spdy.Session, pair: _Pair, message: str) -> None:
        try:
            if pair.error is not None:
                await pair.error.write(message.encode())
            for stream in pair.streams:
                await stream.close()
        except ConnectionError:
            pass  # the client went first
        for stream in pair.streams:
            session.forget(stream)

    async def _forward(self, session: spdy.Session, pair: _Pair) -> None:
        assert pair.data is not None
        try:
            sock = await dial_in_netns(self.netns_path, pair.port)
        except OSError as e:
            pod = f" to pod {self.pod}" if self.pod else ""
            await self._fail(session, pair, f"error forwarding port {pair.port}{pod}: {e.strerror or e}")
            return
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._upstream(pair.data, writer))
                group.create_task(self._downstream(reader, pair.data))
        except* ConnectionError:
            await pair.data.reset()  # the pod or the client reset it: see the top
        finally:
            writer.close()
            for stream in pair.streams:
                try:
                    await stream.close()  # an empty error stream says "no error"
                except ConnectionError:
                    pass
                session.forget(stream)

    @staticmethod
    async def _upstream(data: spdy.Stream, writer: asyncio.StreamWriter) -> None:
        while chunk := await data.read():
            writer.write(chunk)
            await writer.drain()
        if not writer.is_closing() and writer.can_write_eof():
            writer.write_eof()  # the local client half-closed: pass it on

    @staticmethod
    async def _downstream(reader: asyncio.StreamReader, data: spdy.Stream) -> None:
        while chunk := await reader.read(COPY_CHUNK):
            await data.write(chunk)
        await data.close()


async def serve_portforward(
    request: web.Request, netns_path: str, ports: list[int], *, pod: str = ""
) -> web.StreamResponse:
    """Serve /pods/{name}/portforward into the network namespace at
    netns_path. `ports` (from ?ports=) limits the ports streams may ask for
    unless empty (kubectl sends none); `pod` names the pod in errors."""
    upgrade = spdy.upgrade_of(request)
    if upgrade == "websocket":
        offered = spdy.protocols_offered(request.headers.getall("Sec-WebSocket-Protocol", []))
        if TUNNEL_PROTOCOL not in offered:
            return refuse_protocols(offered, [TUNNEL_PROTOCOL])
        ws = web.WebSocketResponse(protocols=[TUNNEL_PROTOCOL], max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        transport: spdy.Transport = WebSocketTransport(ws)
        response: web.StreamResponse = ws
    elif upgrade == spdy.SPDY_UPGRADE.lower():
        offered = spdy.protocols_offered(request.headers.getall("X-Stream-Protocol-Version", []))
        if PROTOCOL not in offered:
            return refuse_protocols(offered, [PROTOCOL])
        raw = await spdy.upgrade_raw(request, PROTOCOL)
        transport, response = raw, raw.response
    else:
        return status_response(400, "BadRequest", "Upgrade request required")
    forwarder = Forwarder(netns_path, ports, pod)
    await forwarder.serve(spdy.Session(transport, forwarder.check))
    return response
