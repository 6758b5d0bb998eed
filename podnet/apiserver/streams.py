"""kubectl exec and attach: a command, or a container's log, bridged to the
client's stdin, stdout, stderr, error and resize channels.

The channels arrive one of two ways, as the client upgrades:

* a websocket, subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`
  (kubectl 1.30+; 1.29 with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true): each
  binary message starts with its channel byte (0 stdin, 1 stdout, 2 stderr,
  3 error, 4 resize); v5 adds `[255, ch]`, "ch is closed", kubectl's stdin EOF;
* SPDY/3.1 (kubectl before 1.30, and 1.30+ when the websocket is refused):
  one stream per channel, named by its `streamtype` header; FIN is EOF.

The error channel carries the outcome at the very end, a v1 Status: kubectl
exits with the code in a NonZeroExitCode failure's ExitCode cause. Under a
TTY stdout and stderr are one terminal and go out on stdout.

The exec'd process itself (pipes or a pty, its session, its output after
exit) is process.py's.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from podnet.apiserver import spdy
from podnet.apiserver.process import (
    CHUNK,
    CLOSE,
    DISCARD,
    ERROR,
    POLL,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    Process,
)

PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]  # over websocket and SPDY alike
STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR, "resize": RESIZE}
STREAM_CREATION_TIMEOUT = 30.0  # kubelet's: every stream of an exec must be open by then
SUCCESS: dict[str, Any] = {"metadata": {}, "status": "Success"}


def failure(code: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code, **extra}


def status_response(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", **failure(code, reason, message)}, status=code)


def refuse_protocols(offered: list[str], accepted: list[str]) -> web.Response:
    """403 with X-Accepted-Stream-Protocol-Versions, as kubelet's handshake answers."""
    why = f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server accepts {accepted}"
    response = status_response(403, "Forbidden", why)
    response.headers.extend(("X-Accepted-Stream-Protocol-Versions", p) for p in accepted)
    return response


def exit_status(command: list[str], returncode: int) -> dict[str, Any]:
    code = returncode if returncode >= 0 else 128 - returncode  # killed by a signal: the shell's convention
    if code == 0:
        return SUCCESS
    why = f"command terminated with non-zero exit code: error executing command {command}, exit code {code}"
    return failure(500, "NonZeroExitCode", why, details={"causes": [{"reason": "ExitCode", "message": str(code)}]})


class Channels:
    """One remote-command connection. `inbox` holds (channel, data) from the
    client, b"" meaning that channel ended; `gone` is set when the client is.
    The inbox is bounded: a process that does not read its stdin slows the
    client down rather than filling our memory."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.inbox: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(16)
        self.gone = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def send(self, channel: int, data: bytes) -> None:
        raise NotImplementedError

    async def finish(self, status: dict[str, Any]) -> None:
        """The outcome on the error channel, then the end of the connection."""
        raise NotImplementedError

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class WebSocketChannels(Channels):
    def __init__(self, ws: web.WebSocketResponse, v5: bool) -> None:
        super().__init__(ws)
        self.ws, self.v5, self._lock = ws, v5, asyncio.Lock()
        self.tasks.append(asyncio.create_task(self._receive()))

    async def _receive(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY and len(msg.data) > 1:
                    closed = msg.data[0] == CLOSE and self.v5
                    await self.inbox.put((msg.data[1], b"") if closed else (msg.data[0], bytes(msg.data[1:])))
        finally:
            self.gone.set()

    async def send(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("exec/attach websocket: the client is gone")
        async with self._lock:
            await self.ws.send_bytes(bytes([channel]) + data)

    async def finish(self, status: dict[str, Any]) -> None:
        await self.send(ERROR, json.dumps(status).encode())
        await self.ws.close()

    async def close(self) -> None:
        await super().close()
        await self.ws.close()


class SpdyChannels(Channels):
    def __init__(self, session: spdy.Session, streams: dict[int, spdy.Stream], response: web.StreamResponse) -> None:
        super().__init__(response)
        self.session, self.streams = session, streams
        self.tasks += [asyncio.create_task(self._receive(ch, s)) for ch, s in streams.items() if ch in (STDIN, RESIZE)]
        self.tasks.append(asyncio.create_task(self._watch()))

    async def _receive(self, channel: int, stream: spdy.Stream) -> None:
        while data := await stream.read():
            await self.inbox.put((channel, data))
        if not self.session.closed.is_set():
            await self.inbox.put((channel, b""))

    async def _watch(self) -> None:
        await self.session.closed.wait()
        self.gone.set()

    async def send(self, channel: int, data: bytes) -> None:
        await self.streams[channel].write(data)

    async def finish(self, status: dict[str, Any]) -> None:
        # The client waits for stdout and stderr to end, reads the error
        # stream to its end, then closes the connection itself.
        for channel, stream in self.streams.items():
            if channel != ERROR:
                await stream.close()
        await self.streams[ERROR].write(json.dumps(status).encode())
        await self.streams[ERROR].close()
        try:
            await asyncio.wait_for(self.session.closed.wait(), 5)
        except TimeoutError:
            await self.session.goaway()

    async def close(self) -> None:
        await super().close()
        await self.session.transport.close()


async def open_channels(
    request: web.Request, *, stdin: bool, stdout: bool, stderr: bool, tty: bool
) -> Channels | web.StreamResponse:
    """Upgrade the request; -> the channels, or a response to return as it is."""
    upgrade = spdy.upgrade_of(request)
    header = "Sec-WebSocket-Protocol" if upgrade == "websocket" else "X-Stream-Protocol-Version"
    offered = spdy.protocols_offered(request.headers.getall(header, []))
    chosen = next((p for p in offered if p in PROTOCOLS), None)
    if upgrade not in ("websocket", spdy.SPDY_UPGRADE.lower()):
        return status_response(400, "BadRequest", "Upgrade request required")
    if chosen is None:
        return refuse_protocols(offered, PROTOCOLS)
    if upgrade == "websocket":
        ws = web.WebSocketResponse(protocols=[chosen], max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        chans: Channels = WebSocketChannels(ws, chosen.startswith("v5."))
        # As kubelet: an empty message on the lowest writable channel says the streams are up.
        await chans.send(STDOUT if stdout else STDERR if stderr else ERROR, b"")
        return chans
    wanted = ((STDIN, stdin), (STDOUT, stdout), (STDERR, stderr and not tty), (RESIZE, tty))
    expected = {ERROR} | {channel for channel, want in wanted if want}
    seen: set[int] = set()

    def accept(headers: dict[str, str]) -> str | None:
        channel = STREAM_TYPES.get(headers.get("streamtype", ""), DISCARD)
        if channel not in expected - seen:
            return f"unexpected stream type {headers.get('streamtype')!r}"
        seen.add(channel)
        return None

    raw = await spdy.upgrade_raw(request, chosen)
    session = spdy.Session(raw, accept)
    runner = asyncio.create_task(session.run())
    streams: dict[int, spdy.Stream] = {}
    try:
        async with asyncio.timeout(STREAM_CREATION_TIMEOUT):
            while set(streams) != expected and (stream := await session.incoming.get()) is not None:
                streams[STREAM_TYPES[stream.header("streamtype")]] = stream
    except TimeoutError:
        pass
    chans = SpdyChannels(session, streams, raw.response)
    chans.tasks.append(runner)
    if set(streams) != expected:  # the client went, or never opened them all: nobody to report to
        await chans.close()
        return raw.response
    return chans


# ---- exec ---------------------------------------------------------------------------


async def serve_exec(
    request: web.Request,
    argv: list[str],
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    env: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Serve /pods/{name}/exec: run argv (the whole host command line; env
    None = ours) and bridge it to the client."""
    stderr = stderr and not tty
    if not (stdin or stdout or stderr):
        return status_response(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
    chans = await open_channels(request, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)
    if not isinstance(chans, Channels):
        return chans
    command = request.query.getall("command", argv)
    try:
        try:
            process = await Process.start(argv, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty, env=env)
        except OSError as e:
            await chans.finish(failure(500, "InternalError", f"starting {command} ({argv[0]}): {e}"))
            return chans.response
        try:
            returncode = await process.bridge(chans)
        finally:
            process.kill()
            process.close()
            await process.proc.wait()
        if returncode is not None:
            await chans.finish(exit_status(command, returncode))
    except ConnectionError:
        pass  # the client went while we wrote to it: nobody is left to tell
    finally:
        await chans.close()
    return chans.response


# ---- attach -------------------------------------------------------------------------


async def serve_attach(
    request: web.Request,
    log_path: str,
    *,
    stdout: bool,
    stderr: bool,
    stdin: bool,
    tty: bool,
    container: str | None = None,
    running: Callable[[], bool] | None = None,
) -> web.StreamResponse:
    """Serve /pods/{name}/attach: the container's log (stdout and stderr in
    one file) from its current end as it grows, on stdout (stderr if only
    that was asked for), until the client goes or `running()` turns False
    (then Success). podnet containers have no stdin and no TTY: asking for
    either is refused before any upgrade, so both transports report it."""
    name = container or request.query.get("container", "")
    if stdin or tty:
        return status_response(
            400, "BadRequest", f"container {name} was not started with {'stdin' if stdin else 'a TTY'}"
        )
    if not (stdout or stderr):
        return status_response(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
    chans = await open_channels(request, stdin=False, stdout=stdout, stderr=stderr, tty=False)
    if not isinstance(chans, Channels):
        return chans
    follower = asyncio.create_task(_follow(log_path, STDOUT if stdout else STDERR, chans, running))
    drain = asyncio.create_task(_drain(chans))
    gone = asyncio.create_task(chans.gone.wait())
    try:
        await asyncio.wait({follower, gone}, return_when=asyncio.FIRST_COMPLETED)
        if follower.done():
            follower.result()  # raises the ConnectionError of a client gone while we wrote
            await chans.finish(SUCCESS)
    except ConnectionError:
        pass
    finally:
        for task in (follower, drain, gone):
            task.cancel()
        await asyncio.gather(follower, drain, gone, return_exceptions=True)
        await chans.close()
    return chans.response


async def _drain(chans: Channels) -> None:
    """Drop what a client sends to attach (we asked for no input), so that it cannot stall the connection."""
    while True:
        await chans.inbox.get()


async def _follow(path: str, channel: int, chans: Channels, running: Callable[[], bool] | None) -> None:
    """`tail -F` from the current end; a file that appears later, replaces
    the one we read or is truncated is read from its start."""
    f, from_start = None, False
    try:
        while True:
            if f is None:
                try:
                    f = open(path, "rb")  # stays open across polls
                except FileNotFoundError:
                    from_start = True
                else:
                    f.seek(0, os.SEEK_SET if from_start else os.SEEK_END)
            if f is not None and (data := f.read(CHUNK)):
                await chans.send(channel, data)
                continue
            if running is not None and not running():
                return
            await asyncio.sleep(POLL)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if f is not None and (st.st_dev, st.st_ino) != (os.fstat(f.fileno()).st_dev, os.fstat(f.fileno()).st_ino):
                f.close()
                f, from_start = None, True
            elif f is not None and st.st_size < f.tell():
                f.seek(0)
    finally:
        if f is not None:
            f.close()
