#!/usr/bin/env bash
# The example lab, step by step (run by `./setup.sh demo`; every line is a
# command you can type yourself). The lab stays up afterwards for exploring:
# remove it with `.venv/bin/podnet lab down`.
set -euo pipefail
cd "$(dirname "$0")/.."
podnet() { .venv/bin/podnet "$@"; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step podnet lab up -f examples/lab.yaml
podnet lab up -f examples/lab.yaml

step podnet get nodes -o wide
podnet get nodes -o wide
step podnet get pods -o wide
podnet get pods -o wide
step podnet get svc web; podnet get endpoints web
podnet get svc web
podnet get endpoints web

# the web pod that runs on the same node as the client
read -r NODE CLIENT_IP < <(podnet get pod client -o json | .venv/bin/python -c \
  'import json,sys; p=json.load(sys.stdin); print(p["spec"]["nodeName"], p["status"]["podIP"])')
WEB_IP=$(podnet get pods -l app=web -o json | .venv/bin/python -c \
  "import json,sys; print(next(p['status']['podIP'] for p in json.load(sys.stdin)['items'] if p['spec']['nodeName']=='$NODE'))")
echo
echo "client ($CLIENT_IP) and a web pod ($WEB_IP) both run on $NODE: they meet on its cni0 bridge"
step podnet exec client -- curl -s http://$WEB_IP:8080/hostname
podnet exec client -- curl -s "http://$WEB_IP:8080/hostname"; echo
step podnet exec client -- curl -s http://$WEB_IP:8080/clientip
podnet exec client -- curl -s "http://$WEB_IP:8080/clientip"; echo "   <- the client's own pod IP: no NAT"
OTHER=$(podnet get pods -l app=web -o json | .venv/bin/python -c \
  "import json,sys; print(next((p['status']['podIP'] for p in json.load(sys.stdin)['items'] if p['spec']['nodeName']!='$NODE'), ''))")
if [ -n "$OTHER" ]; then
  echo
  echo "and a web pod on another node ($OTHER): across the VXLAN overlay, still no NAT"
  step podnet exec client -- curl -s http://$OTHER:8080/clientip
  podnet exec client -- curl -s "http://$OTHER:8080/clientip"; echo
fi
step podnet lab exec $NODE -- ip route
podnet lab exec "$NODE" -- ip route

echo
echo "the Service: a virtual IP every node load-balances with nftables, found by name through the cluster DNS"
step podnet exec client -- cat /etc/resolv.conf
podnet exec client -- cat /etc/resolv.conf
step 'podnet exec client -- sh -c "for i in 1 2 3 4 5 6; do curl -s http://web/hostname; echo; done"'
podnet exec client -- sh -c 'for i in 1 2 3 4 5 6; do curl -s http://web/hostname; echo; done'
step podnet exec client -- nslookup web.default.svc.cluster.local
podnet exec client -- nslookup web.default.svc.cluster.local || true
step podnet rules $NODE --service web
podnet rules "$NODE" --service web

if command -v kubectl >/dev/null; then
  echo
  echo "the lab speaks the Kubernetes API: the real kubectl works against it"
  step 'export KUBECONFIG=$(podnet lab kubeconfig)'
  KUBECONFIG=$(podnet lab kubeconfig)
  export KUBECONFIG
  step kubectl get pods -o wide
  kubectl get pods -o wide
  step kubectl exec client -- nslookup kubernetes.default
  kubectl exec client -- nslookup kubernetes.default || true
fi
echo
echo "The lab is still up. Try: .venv/bin/podnet describe pod client; .venv/bin/podnet lab status"
echo "Remove it with: .venv/bin/podnet lab down"
