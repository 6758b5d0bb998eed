"""Watch streams: `?watch=1` on a collection (or with a metadata.name field
selector, on one object), as kube-apiserver serves them.

The response is chunked JSON, one `{"type", "object"}` per line. Without a
resourceVersion (or with "0") the client first gets ADDED for every
matching object, then the changes; with one it gets every change after it
from the cache's history, or a 410 Expired ERROR event when the history no
longer reaches back (the client re-lists). An object that stops matching a
selector is sent as DELETED, one that starts matching as ADDED. BOOKMARK
events carry the current resourceVersion every few seconds when the client
allows them, so a resumed watch starts close to where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from podnet.apiserver.cache import Cache, Change, TooOld, Watcher
from podnet.apiserver.errors import gone
from podnet.apiserver.resources import Resource

Obj = dict[str, Any]
BOOKMARK_EVERY = 5.0


def _acceptor(prefix: str, pred: Callable[[Obj], bool]) -> Callable[[Change], Change | None]:
    def accept(ch: Change) -> Change | None:
        if not ch.key.startswith(prefix):
            return None
        now = ch.type != "DELETED" and pred(ch.obj)
        before = ch.old is not None and pred(ch.old)
        if ch.type == "DELETED":
            return ch if before else None
        if now and before:
            return ch
        if now:
            return Change("ADDED", ch.key, ch.obj, ch.old, ch.rev)
        if before:  # no longer matches: gone from this client's view
            return Change("DELETED", ch.key, ch.obj, ch.old, ch.rev)
        return None

    return accept


async def serve(
    request: web.Request,
    cache: Cache,
    res: Resource,
    prefix: str,
    pred: Callable[[Obj], bool],
    rv: str | None,
    timeout: float | None,
    bookmarks: bool,
    render: Callable[[str, Obj], Obj] | None,
) -> web.StreamResponse:
    """render(type, obj) -> the event's object (a Table); None: the object itself."""
    plain = render is None
    accept = _acceptor(prefix, pred)
    w = Watcher(res.plural, accept)
    # everything below up to add_watcher runs without awaiting, so no change
    # can slip between the initial events and the live ones
    initial: list[Change] = []
    expired: str | None = None
    if rv in (None, "", "0"):
        for o in cache.list(prefix):
            if pred(o):
                initial.append(Change("ADDED", "", o, None, cache.rev))
    else:
        try:
            start = int(rv)  # type: ignore[arg-type]
        except ValueError:
            start = -1
        try:
            if start < 0:
                raise TooOld("resourceVersion %r is not valid" % rv)
            initial = [c for c in (accept(ch) for ch in cache.since(start, res.plural)) if c is not None]
        except TooOld as exc:
            expired = "too old resource version: %s (%d): %s" % (rv, cache.rev, exc)
    cache.add_watcher(w)

    def encode(ch: Change) -> bytes:
        if plain:
            line = ch.wire.get(ch.type)
            if line is None:
                line = ch.wire[ch.type] = _line(ch.type, ch.obj)
            return line
        assert render is not None
        return _line(ch.type, render(ch.type, ch.obj))

    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        if expired:
            await resp.write(_line("ERROR", gone(expired).status()))
            return resp
        for ch in initial:
            await resp.write(encode(ch))
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            wait = BOOKMARK_EVERY
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            try:
                got = await asyncio.wait_for(w.queue.get(), wait)
            except TimeoutError:
                # also when nothing changed: a client knows a silent
                # connection from a dead one by these
                if bookmarks:
                    mark = {
                        "kind": res.kind.kind,
                        "apiVersion": res.kind.api_version,
                        "metadata": {"resourceVersion": str(cache.rev)},
                    }
                    await resp.write(_line("BOOKMARK", mark))
                continue
            if got is None:  # cut off (too slow) or the cache reloaded
                await resp.write(_line("ERROR", gone("the watch fell behind; list again").status()))
                break
            await resp.write(encode(got))
            # send what is already queued in the same chunk burst
            batch: list[bytes] = []
            ended = False
            while not w.queue.empty() and len(batch) < 500:
                nxt = w.queue.get_nowait()
                if nxt is None:
                    ended = True
                    break
                batch.append(encode(nxt))
            if batch:
                await resp.write(b"".join(batch))
            if ended:
                await resp.write(_line("ERROR", gone("the watch fell behind; list again").status()))
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        cache.remove_watcher(w)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write_eof()
    return resp


def _line(etype: str, obj: Obj) -> bytes:
    return json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"
