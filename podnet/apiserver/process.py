"""An exec'd command's process for kubectl exec (streams.py): argv with
pipes, or on a pty under a TTY, in a session of its own; our ends are
non-blocking fds bridged to the client's channels. If the client goes first
the process group is SIGKILLed, so nothing the user started stays behind;
after the command exits its output is copied until the pipes end or stay
idle OUTPUT_GRACE seconds (a background child holding stdout open must not
keep the exec open for ever).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import pty
import signal
import struct
import termios
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podnet.apiserver.streams import Channels

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
DISCARD = -1  # output nobody asked for is read all the same, or the process would block
OUTPUT_GRACE, POLL, CHUNK = 1.0, 0.25, 32 * 1024  # POLL: how often idle waits look at the clock or a log


async def _wait_fd(fd: int, writable: bool, timeout: float) -> bool:
    """Wait until fd is readable (writable); -> False after `timeout`."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    add(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        remove(fd)


def _take_terminal() -> None:
    """In the child, after setsid(): the pty on fd 0 becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Process:
    """argv with pipes, or on a pty for a TTY; our ends are non-blocking fds."""

    def __init__(self, proc: asyncio.subprocess.Process, stdin: int | None, outputs: list[tuple[int, int]], tty: bool):
        self.proc, self.stdin, self.outputs, self.tty = proc, stdin, outputs, tty
        self.exited = asyncio.Event()

    @classmethod
    async def start(
        cls, argv: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool, env: dict[str, str] | None
    ) -> Process:
        if tty:
            master, slave = pty.openpty()
            child: list[int] = [slave] * 3
            theirs, ours, outputs = [slave], [master], [(master, STDOUT if stdout else DISCARD)]
            stdin_fd = master if stdin else None
        else:  # pipes as (read end, write end): the child gets stdin's read end, the outputs' write ends
            pipes = {ch: os.pipe() for ch, want in ((STDIN, stdin), (STDOUT, stdout), (STDERR, stderr)) if want}
            child = [pipes[ch][ch != STDIN] if ch in pipes else asyncio.subprocess.DEVNULL for ch in range(3)]
            theirs = [fds[ch != STDIN] for ch, fds in pipes.items()]
            ours = [fds[ch == STDIN] for ch, fds in pipes.items()]
            outputs = [(fds[0], ch) for ch, fds in pipes.items() if ch != STDIN]
            stdin_fd = pipes[STDIN][1] if stdin else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=child[0],
                stdout=child[1],
                stderr=child[2],
                env=env,
                start_new_session=True,
                preexec_fn=_take_terminal if tty else None,
            )
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        for fd in ours:
            os.set_blocking(fd, False)
        return cls(proc, stdin_fd, outputs, tty)

    def kill(self) -> None:
        if self.proc.returncode is None:  # not reaped yet, so the pid (= its group) is still ours
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        for fd in {fd for fd, _ in self.outputs} | ({self.stdin} if self.stdin is not None else set()):
            os.close(fd)
        self.outputs, self.stdin = [], None

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.stdin is not None:
            try:
                view = view[os.write(self.stdin, view) :]
            except BlockingIOError:
                await _wait_fd(self.stdin, True, POLL)

    async def feed(self, chans: Channels) -> None:
        """Client input, until cancelled: stdin, its EOF, terminal sizes."""
        pending = ""
        while True:
            channel, data = await chans.inbox.get()
            try:
                if channel == STDIN and (data or self.tty):
                    await self.write(data or b"\x04")  # a terminal's EOF is its EOF character
                elif channel == STDIN and self.stdin is not None:
                    os.close(self.stdin)
                    self.stdin = None
            except BrokenPipeError:
                pass  # the process closed its stdin; what is left is for nobody
            # {"Width":W,"Height":H}: one per message from kubectl, but take
            # whole objects as they come, split or run together.
            pending += data.decode(errors="replace") if channel == RESIZE and self.tty else ""
            while pending.strip():
                try:
                    size, end = json.JSONDecoder().raw_decode(pending.lstrip())
                except ValueError:
                    break
                pending = pending.lstrip()[end:]
                winsize = struct.pack("HHHH", int(size.get("Height", 0)), int(size.get("Width", 0)), 0, 0)
                fcntl.ioctl(self.outputs[0][0], termios.TIOCSWINSZ, winsize)

    async def pump(self, fd: int, channel: int, chans: Channels) -> None:
        """Copy fd to channel until it ends, or stays idle once the process exited."""
        idle = 0.0
        while True:
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                if await _wait_fd(fd, False, POLL):
                    idle = 0.0
                elif self.exited.is_set() and (idle := idle + POLL) >= OUTPUT_GRACE:
                    return
                continue
            except OSError as e:
                if e.errno == errno.EIO:  # a pty whose slave ends are all closed
                    return
                raise
            if not data:
                return
            if channel != DISCARD:
                await chans.send(channel, data)

    async def bridge(self, chans: Channels) -> int | None:
        """-> the exit status, or None when the client went first."""
        feeder = asyncio.create_task(self.feed(chans))
        pumps = [asyncio.create_task(self.pump(fd, channel, chans)) for fd, channel in self.outputs]
        waiter = asyncio.create_task(self.proc.wait())
        gone = asyncio.create_task(chans.gone.wait())
        try:
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                return None
            self.exited.set()
            await asyncio.gather(*pumps)
            return waiter.result()
        finally:
            tasks = (feeder, waiter, gone, *pumps)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
