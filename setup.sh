#!/usr/bin/env bash
# podnet's one entry point on a fresh Debian machine (run as root):
#   ./setup.sh demo    install everything, then bring up the example lab (examples/demo.sh)
#   ./setup.sh test    install everything, then lint and type-check, then run the whole test suite
#   ./setup.sh lint    install everything, then only lint and type-check (ruff, mypy)
#   ./setup.sh         install only
# Idempotent: a second run skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

# System packages: the kernel tools podnet drives, the Go reference plugins
# (interop tests and benchmarks), podman + runc + a static busybox (a real CNI
# runtime running a real container), etcd-server (the distributed store
# backend, started by its tests), bird2 (BGP routing between nodes),
# wireguard-go + wireguard-tools (encryption between nodes where the kernel has
# no WireGuard module; wg configures either), tcpdump (the test that the underlay
# carries pod traffic only encrypted), iperf3
# (the dataplane benchmark), dnsperf + dnsmasq-base (the DNS benchmark; the
# -base package has no system service) + dnsutils (dig, nslookup), netcat-openbsd
# (nc -zv, the articles' port check, in docs/troubleshooting.md), nginx-light
# (the Ingress/Gateway data plane and the nginx image), wrk (bench/ingress.py's
# load generator), chromium + chromium-driver (the web view's tests drive a real
# headless browser), gcc + libc6-dev (build the compiled CNI forwarder), and
# kubectl (the real client, tested against the API server) and python3-venv for the virtualenv.
APT_PACKAGES=(iproute2 nftables iptables conntrack iputils-ping procps util-linux curl
              containernetworking-plugins podman runc busybox-static
              etcd-server bird2 wireguard-go wireguard-tools tcpdump iperf3 dnsperf dnsmasq-base dnsutils netcat-openbsd nginx-light wrk chromium chromium-driver gcc libc6-dev kubectl python3 python3-venv python3-pip)

need=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo ">> apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # RUNLEVEL=1: invoke-rc.d starts no service (nginx-light's would listen on
  # the machine's port 80; podnet runs nginx itself, inside lab pods)
  RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Python interpreter: the machine's python3 (>= 3.11).
PY=${PODNET_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import podnet, pyroute2, rich, yaml, pytest, dns, prometheus_client, ruff, mypy, aiohttp, cryptography, jsonpatch, kubernetes" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ] || ls .venv/lib/python3*/site-packages/__editable___*finder.py >/dev/null 2>&1; then
  echo ">> pip install -e .[test]"
  # compat mode: a plain path entry in a .pth file. The default editable mode
  # installs an import finder whose own imports cost 50-300 ms at every
  # interpreter start, and podnet starts many (CLI, agents, pods, probes).
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test]" --config-settings editable_mode=compat
  touch .venv/.installed
fi

# The compiled CNI forwarder (podnet/cni/native/podnet-cni.c; the plugins'
# entry point, see podnet/cni/install.py), rebuilt when older than its source.
# The compiler flags live in install.py, in one place.
.venv/bin/python -m podnet.cni.install >/dev/null
# The CNI executables for tests, demo and benchmarks (a private bin dir:
# the system's /opt/cni/bin is left alone).
.venv/bin/podnet cni install --bin-dir "$ROOT/build/cni-bin" >/dev/null
# The API server's OpenAPI schema, prebuilt (else each server start builds it:
# ~0.35 s of CPU importing the Python client's models); rebuilt when stale.
.venv/bin/python -m podnet.apiserver.schemacache --write >/dev/null

# Lint and types: ruff (rules and format) over the tree, mypy over podnet
# (configuration in pyproject.toml: strict for the pure layers). Any finding
# fails the run (set -e), so CI fails before the tests start.
lint() {
  echo ">> ruff check, ruff format --check, mypy"
  .venv/bin/ruff check --quiet .
  .venv/bin/ruff format --check --quiet .
  .venv/bin/mypy
}

case "${1:-}" in
  demo) shift; exec examples/demo.sh "$@" ;;
  lint) lint ;;
  test) shift; lint; exec .venv/bin/python -m pytest -q "$@" ;;
  "") echo "installed: .venv/bin/podnet, CNI plugins in build/cni-bin" ;;
  *) echo "usage: $0 [demo|lint|test]" >&2; exit 2 ;;
esac
