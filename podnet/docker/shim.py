"""The parent of a detached container (containerd-shim's job, in small).

`podnet run -d` returns at once, so something must stay behind to wait for
the container: to record its exit code (which only the parent can read)
and to remove it when it was started with --rm. That is this process: one
per detached container, started in the node's netns (so `podnet lab down`,
which kills what lives in the lab's namespaces, stops it too), with the
container's output going to its log file.

    python -m podnet.docker.shim --lab LAB --name NAME
"""

import argparse
import signal
import sys


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m podnet.docker.shim")
    p.add_argument("--lab", required=True)
    p.add_argument("--name", required=True)
    a = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from podnet.docker import engine, proc
    from podnet.docker.store import Store

    store = Store(a.lab)
    rec = store.container(a.name)
    if rec is None:
        print("podnet shim: no container %s" % a.name, file=sys.stderr)
        return 1
    try:
        child = proc.start(rec, stdout=sys.stdout.fileno(), stderr=sys.stderr.fileno())
    except Exception as exc:  # noqa: BLE001 - recorded as the container's failure to start
        print("podnet: cannot start container %s: %s" % (a.name, exc), file=sys.stderr, flush=True)
        engine.finish(store, a.lab, a.name, 127)
        return 1
    engine.started(store, a.name, child)
    code = proc.exit_code(child.wait())
    engine.finish(store, a.lab, a.name, code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
