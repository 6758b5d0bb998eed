"""The client side of pods/exec: a websocket speaking the channel protocol
kubectl 1.32 speaks (v5.channel.k8s.io: a channel byte, then data; 0 stdin,
1 stdout, 2 stderr, 3 the final Status, 4 terminal size, 255 close).

`podnet exec` uses it, so it reaches a pod the way kubectl does, through
the API server; with a terminal on both ends it is interactive (raw mode,
size changes sent on SIGWINCH).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
import urllib.parse
from typing import Any

from podnet.client.config import Config

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def _size() -> dict[str, int] | None:
    try:
        import fcntl
        import termios

        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8))
        return {"Width": cols, "Height": rows}
    except OSError:
        return None


def exit_code(status: dict[str, Any]) -> int:
    """The command's exit code from the Status on the error channel."""
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                break
    sys.stderr.write("error: %s\n" % (status.get("message") or "command failed"))
    return 1


async def _exec(config: Config, path: str, tty: bool, user_agent: str) -> int:
    import aiohttp

    headers = {"User-Agent": user_agent}
    if config.token:
        headers["Authorization"] = "Bearer " + config.token
    ssl_ctx = config.ssl_context()
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(
                config.server + path, protocols=("v5.channel.k8s.io",), headers=headers, ssl=ssl_ctx, max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as exc:
            sys.stderr.write("error: the API server refused the exec (HTTP %d %s)\n" % (exc.status, exc.message))
            return 1
        code = 0
        stdin_done = asyncio.Event()

        def on_stdin() -> None:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(0)
                stdin_done.set()
                asyncio.ensure_future(ws.send_bytes(bytes([CLOSE, STDIN])))
                return
            asyncio.ensure_future(ws.send_bytes(bytes([STDIN]) + data))

        try:
            loop.add_reader(0, on_stdin)
        except (PermissionError, OSError):  # a regular file or /dev/null: epoll cannot watch it

            async def whole_stdin() -> None:
                data = await loop.run_in_executor(None, sys.stdin.buffer.read)
                if data:
                    await ws.send_bytes(bytes([STDIN]) + data)
                await ws.send_bytes(bytes([CLOSE, STDIN]))

            asyncio.ensure_future(whole_stdin())

        def on_resize() -> None:
            size = _size()
            if size:
                asyncio.ensure_future(ws.send_bytes(bytes([RESIZE]) + json.dumps(size).encode()))

        if tty:
            loop.add_signal_handler(signal.SIGWINCH, on_resize)
            on_resize()
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                    continue
                ch, data = msg.data[0], msg.data[1:]
                if ch == STDOUT:
                    os.write(1, data)
                elif ch == STDERR:
                    os.write(2, data)
                elif ch == ERROR and data:
                    code = exit_code(json.loads(data))
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(0)
            if tty:
                loop.remove_signal_handler(signal.SIGWINCH)
        return code


def exec_in_pod(
    config: Config,
    namespace: str,
    pod: str,
    command: list[str],
    container: str | None = None,
    user_agent: str = "podnet",
) -> int:
    """Run command in the pod through the API server; -> its exit code."""
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    q: list[tuple[str, str]] = [("command", c) for c in command]
    q += [("stdin", "true"), ("stdout", "true"), ("stderr", "false" if tty else "true"), ("tty", str(tty).lower())]
    if container:
        q.append(("container", container))
    path = "/api/v1/namespaces/%s/pods/%s/exec?%s" % (namespace, pod, urllib.parse.urlencode(q))
    if not tty:
        return asyncio.run(_exec(config, path, False, user_agent))
    import termios
    import tty as ttymod

    saved = termios.tcgetattr(0)
    ttymod.setraw(0)
    try:
        return asyncio.run(_exec(config, path, True, user_agent))
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
