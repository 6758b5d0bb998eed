"""Docker's network modes for single containers on a lab node (issue 8).

A lab node stands for a Docker host. `podnet run` starts a host process as a
"container" in one of Docker's network modes, built on podnet's own CNI
plugins through the real CNI contract (podnet.cni.libcni):

  spec.py      pure: names, --network and -p parsing, subnets, conflists
  store.py     the records of containers and networks (JSON under the lab's state)
  isolation.py the nft table `inet podnet-docker` that keeps bridges apart
  dns.py       the embedded DNS server of a user-defined network
  networks.py  network create / rm / ls (bridge, DNS server, isolation)
  modes.py     attach / detach a container's network (bridge, host, none, container:)
  proc.py      the container process (netns, UTS and mount namespaces), stop
  shim.py      the parent of a detached container (exit code, --rm)
  engine.py    run / stop / rm / exec, tying the above together
"""
