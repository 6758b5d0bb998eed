"""The pod subresources that reach into a node: log, exec, attach,
portforward, for a lab's nodes (all on this machine).

In Kubernetes the API server forwards these to the kubelet's port on the
pod's node. A lab's nodes are network namespaces of this machine and its
container logs are files in the lab's state, so the API server reaches
them directly: logs are read from the node's pod directory, exec runs the
command in the pod's network namespace with the pod's hostname and
resolv.conf (what `podnet exec` always did), port-forward connects to
localhost inside the pod's namespace, as kubelet does.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web

from podnet.apiserver import errors, query

Obj = dict[str, Any]


class LabStreams:
    def __init__(self, lab: str):
        from podnet.lab import topology

        self.lab = lab
        self.state = topology.state_dir(lab)

    # ---- where a pod's things are ---------------------------------------------

    def pod_dir(self, pod: Obj) -> str:
        m = pod["metadata"]
        return os.path.join(
            self.state,
            "nodes",
            pod["spec"].get("nodeName") or "-",
            "pods",
            "%s_%s_%s" % (m["namespace"], m["name"], m["uid"]),
        )

    def netns_path(self, pod: Obj) -> str:
        from podnet.agent.agent import pod_netns
        from podnet.lab import topology

        if pod["spec"].get("hostNetwork"):
            return "/run/netns/" + topology.ns_name(self.lab, pod["spec"]["nodeName"])
        return "/run/netns/" + pod_netns(self.lab, pod["metadata"]["uid"])

    def _container(self, pod: Obj, name: str | None) -> str:
        names = [c["name"] for c in pod["spec"]["containers"]]
        if not name:
            if len(names) == 1:
                return names[0]
            raise errors.bad_request(
                "a container name must be specified for pod %s, choose one of: [%s]"
                % (pod["metadata"]["name"], " ".join(names))
            )
        if name not in names + [c["name"] for c in pod["spec"].get("initContainers") or []]:
            raise errors.bad_request("container %s is not valid for pod %s" % (name, pod["metadata"]["name"]))
        return name

    def _running(self, pod: Obj) -> None:
        if not pod["spec"].get("nodeName") or not (pod.get("status") or {}).get("podIP"):
            phase = (pod.get("status") or {}).get("phase", "Pending")
            raise errors.bad_request(
                "pod %s does not have a host assigned or is not running yet (phase %s)"
                % (pod["metadata"]["name"], phase)
            )

    # ---- the subresources -----------------------------------------------------

    async def handle(self, request: web.Request, sub: str, pod: Obj) -> web.StreamResponse:
        q = request.query
        if sub == "log":
            return await self.log(request, pod)
        self._running(pod)
        if sub == "portforward":
            from podnet.apiserver import portforward

            ports = [int(p) for p in q.getall("ports", []) if p.isdigit()]
            who = "%s/%s" % (pod["metadata"]["namespace"], pod["metadata"]["name"])
            return await portforward.serve_portforward(request, self.netns_path(pod), ports, pod=who)
        from podnet.apiserver import streams

        container = self._container(pod, q.get("container"))
        tty = query.bool_param(q.get("tty"))
        if sub == "attach":
            pod_dir = self.pod_dir(pod)
            return await streams.serve_attach(
                request,
                os.path.join(pod_dir, container + ".log"),
                stdout=query.bool_param(q.get("stdout")),
                stderr=query.bool_param(q.get("stderr")),
                stdin=query.bool_param(q.get("stdin")),
                tty=tty,
                container=container,
                running=lambda: os.path.isdir(pod_dir),  # the agent removes it with the pod
            )
        command = q.getall("command", [])
        if not command:
            raise errors.bad_request("you must specify at least one command for the container")
        from podnet.agent.containers import container_env, pod_hostname, wrap
        from podnet.api import downward

        resolv = os.path.join(self.pod_dir(pod), "resolv.conf")
        argv = ["nsenter", "--net=" + self.netns_path(pod), "--"] + wrap(
            list(command), pod["metadata"]["name"], resolv if os.path.exists(resolv) else None
        )
        spec = next(
            c for c in pod["spec"]["containers"] + (pod["spec"].get("initContainers") or []) if c["name"] == container
        )
        # the container's environment, as kubelet gives an exec'd command
        status = pod.get("status") or {}
        env = container_env(
            pod_hostname(pod["metadata"]["name"]),
            downward.container_env(pod, spec, status.get("podIP", ""), status.get("hostIP", "")),
        )
        if tty:
            env.setdefault("TERM", "xterm")
        from podnet.agent import oci

        in_image = oci.exec_argv(self.pod_dir(pod), container, command, query.bool_param(q.get("stdin")), tty)
        if in_image is not None:  # an image container: podman exec, with the image's own environment
            argv, env = in_image, None
        return await streams.serve_exec(
            request,
            argv,
            stdin=query.bool_param(q.get("stdin")),
            stdout=query.bool_param(q.get("stdout")),
            stderr=query.bool_param(q.get("stderr")),
            tty=tty,
            env=env,
        )

    async def log(self, request: web.Request, pod: Obj) -> web.StreamResponse:
        q = request.query
        container = self._container(pod, q.get("container"))
        path = os.path.join(self.pod_dir(pod), container + ".log")
        if q.get("previous") in ("true", "1"):
            path += ".previous" if os.path.exists(path + ".previous") else ""
        tail = query.int_param(q.get("tailLines"), "tailLines")
        limit = query.int_param(q.get("limitBytes"), "limitBytes")
        try:
            with open(path, "rb") as f:
                data = f.read()
                pos = f.tell()
        except FileNotFoundError:
            raise errors.bad_request(
                'container "%s" in pod "%s" is waiting to start: no logs yet' % (container, pod["metadata"]["name"])
            ) from None
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        if limit:
            data = data[:limit]
        if not query.bool_param(q.get("follow")):
            return web.Response(body=data, content_type="text/plain")
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(data)
        # follow: read what the container appends until the client goes or
        # the pod is gone (its directory removed by the agent)
        try:
            while os.path.exists(path):
                await asyncio.sleep(0.2)
                with open(path, "rb") as f:
                    f.seek(0, 2)
                    end = f.tell()
                    if end < pos:  # restarted container: file rewritten
                        pos = 0
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
                if chunk:
                    await resp.write(chunk)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp
