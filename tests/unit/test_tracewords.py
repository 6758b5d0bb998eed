"""tracewords on trace lines recorded from a real 3-node vxlan lab (podnet
trace client svc/web and friends, nft 1.0.6): parsing, the order of the
namespaces, the hops in words and the verdict, reason and culprit. The
kernel's routing answers come from FakeLook, recorded from the same lab."""

from podnet.diag import tracewords as tw

OK = {
    "pod-client": """\
trace id 1d6b4b82 inet podnet-trace out packet: oif "eth0" ip saddr 10.244.1.2 ip daddr 10.96.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 80 tcp flags == syn tcp window 64860
trace id 1d6b4b82 inet podnet-trace out unknown rule handle 11 (verdict continue)
trace id 1d6b4b82 inet podnet-trace out policy accept
trace id 4df6adec inet podnet-trace pre packet: iif "eth0" ether saddr 3e:28:c0:49:a5:66 ether daddr 22:a4:41:24:a2:79 ip saddr 10.96.0.2 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 0 ip protocol tcp ip length 60 tcp sport 80 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id 4df6adec inet podnet-trace pre unknown rule handle 4 (verdict continue)
trace id 4df6adec inet podnet-trace pre policy accept
""",  # noqa: E501
    "node1": """\
trace id 974b1100 inet podnet-trace pre packet: iif "podnet.1" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 974b1100 inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id 974b1100 inet podnet-trace pre unknown rule handle 6 (verdict continue)
trace id 974b1100 inet podnet-trace pre policy accept
trace id 974b1100 ip podnet-proxy filter-prerouting packet: iif "podnet.1" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 1416 ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 974b1100 ip podnet-proxy filter-prerouting rule ct state new jump firewall-check (verdict jump firewall-check)
trace id 974b1100 ip podnet-proxy filter-prerouting policy accept
trace id 974b1100 ip podnet-proxy nat-prerouting packet: iif "podnet.1" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 1416 ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 974b1100 ip podnet-proxy nat-prerouting rule jump services (verdict jump services)
trace id 974b1100 ip podnet-proxy nat-prerouting policy accept
trace id 974b1100 ip podnet-proxy filter-forward packet: iif "podnet.1" oif "cni0" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 1416 ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 974b1100 ip podnet-proxy filter-forward rule ct state new jump service-endpoints-check (verdict jump service-endpoints-check)
trace id 974b1100 ip podnet-proxy filter-forward rule ct state new jump cluster-ips-check (verdict jump cluster-ips-check)
trace id 974b1100 ip podnet-proxy filter-forward policy accept
trace id 974b1100 inet podnet-policy egress packet: iif "podnet.1" oif "cni0" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 974b1100 inet podnet-policy egress policy accept
trace id 974b1100 inet podnet-policy ingress packet: iif "podnet.1" oif "cni0" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 974b1100 inet podnet-policy ingress policy accept
trace id 974b1100 ip podnet-proxy nat-postrouting packet: iif "podnet.1" oif "cni0" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 1416 ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 974b1100 ip podnet-proxy nat-postrouting policy accept
trace id 974b1100 inet podnet-node postrouting packet: iif "podnet.1" oif "cni0" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 974b1100 inet podnet-node postrouting policy accept
trace id 50e9591e inet podnet-trace pre packet: iif "cni0" ether saddr 1a:d1:5c:be:73:ff ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id 50e9591e inet podnet-trace pre unknown rule handle 4 (verdict continue)
trace id 50e9591e inet podnet-trace pre unknown rule handle 8 (verdict continue)
trace id 50e9591e inet podnet-trace pre policy accept
trace id 50e9591e ip podnet-proxy filter-prerouting packet: iif "cni0" ether saddr 1a:d1:5c:be:73:ff ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id 50e9591e ip podnet-proxy filter-prerouting policy accept
trace id 0d0affd3 ip podnet-proxy filter-forward packet: iif "cni0" oif "podnet.1" ether saddr 1a:d1:5c:be:73:ff ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 0 ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id 0d0affd3 ip podnet-proxy filter-forward policy accept
trace id 0d0affd3 inet podnet-policy egress packet: iif "cni0" oif "podnet.1" ether saddr 1a:d1:5c:be:73:ff ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id 0d0affd3 inet podnet-policy egress rule ct state established,related accept comment "replies and open connections" (verdict accept)
trace id 0d0affd3 inet podnet-policy ingress packet: iif "cni0" oif "podnet.1" ether saddr 1a:d1:5c:be:73:ff ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id 0d0affd3 inet podnet-policy ingress rule ct state established,related accept comment "replies and open connections" (verdict accept)
""",  # noqa: E501
    "node2": """\
trace id 75ae79b6 inet podnet-trace pre packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 80 tcp flags == syn tcp window 64860
trace id 75ae79b6 inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id 75ae79b6 inet podnet-trace pre policy accept
trace id 75ae79b6 ip podnet-proxy filter-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 1416 ip length 60 tcp sport 60864 tcp dport 80 tcp flags == syn tcp window 64860
trace id 75ae79b6 ip podnet-proxy filter-prerouting rule ct state new jump firewall-check (verdict jump firewall-check)
trace id 75ae79b6 ip podnet-proxy filter-prerouting policy accept
trace id 75ae79b6 ip podnet-proxy nat-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 1416 ip length 60 tcp sport 60864 tcp dport 80 tcp flags == syn tcp window 64860
trace id 75ae79b6 ip podnet-proxy nat-prerouting rule jump services (verdict jump services)
trace id 75ae79b6 ip podnet-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips (verdict goto svc-EDE67E021A-default/web/tcp/80)
trace id 75ae79b6 ip podnet-proxy svc-EDE67E021A-default/web/tcp/80 rule numgen random mod 3 0 meta l4proto tcp dnat to 10.244.0.3:8080 (verdict accept)
trace id 25814e5e ip podnet-proxy filter-forward packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 1416 ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 25814e5e ip podnet-proxy filter-forward rule ct state new jump service-endpoints-check (verdict jump service-endpoints-check)
trace id 25814e5e ip podnet-proxy filter-forward rule ct state new jump cluster-ips-check (verdict jump cluster-ips-check)
trace id 25814e5e ip podnet-proxy filter-forward policy accept
trace id 25814e5e inet podnet-policy egress packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 25814e5e inet podnet-policy egress policy accept
trace id 25814e5e inet podnet-policy ingress packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 25814e5e inet podnet-policy ingress policy accept
trace id 25814e5e ip podnet-proxy nat-postrouting packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 1416 ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 25814e5e ip podnet-proxy nat-postrouting policy accept
trace id 25814e5e inet podnet-node postrouting packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 25814e5e inet podnet-node postrouting policy accept
trace id a4b3c745 inet podnet-trace pre packet: iif "podnet.1" ether saddr 8e:07:ae:d0:b0:fc ether daddr fe:d7:d3:c8:95:22 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id a4b3c745 inet podnet-trace pre unknown rule handle 4 (verdict continue)
trace id a4b3c745 inet podnet-trace pre unknown rule handle 8 (verdict continue)
trace id a4b3c745 inet podnet-trace pre policy accept
trace id a4b3c745 ip podnet-proxy filter-prerouting packet: iif "podnet.1" ether saddr 8e:07:ae:d0:b0:fc ether daddr fe:d7:d3:c8:95:22 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 0 ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id a4b3c745 ip podnet-proxy filter-prerouting policy accept
trace id a4b3c745 ip podnet-proxy filter-forward packet: iif "podnet.1" oif "cni0" ether saddr 8e:07:ae:d0:b0:fc ether daddr fe:d7:d3:c8:95:22 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 0 ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id a4b3c745 ip podnet-proxy filter-forward policy accept
trace id a4b3c745 inet podnet-policy egress packet: iif "podnet.1" oif "cni0" ether saddr 8e:07:ae:d0:b0:fc ether daddr fe:d7:d3:c8:95:22 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id a4b3c745 inet podnet-policy egress rule ct state established,related accept comment "replies and open connections" (verdict accept)
trace id a4b3c745 inet podnet-policy ingress packet: iif "podnet.1" oif "cni0" ether saddr 8e:07:ae:d0:b0:fc ether daddr fe:d7:d3:c8:95:22 ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id a4b3c745 inet podnet-policy ingress rule ct state established,related accept comment "replies and open connections" (verdict accept)
""",  # noqa: E501
    "pod-web1": """\
trace id b6409bee inet podnet-trace pre packet: iif "eth0" ether saddr 3e:28:c0:49:a5:66 ether daddr 1a:d1:5c:be:73:ff ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 1416 ip protocol tcp ip length 60 tcp sport 60864 tcp dport 8080 tcp flags == syn tcp window 64860
trace id b6409bee inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id b6409bee inet podnet-trace pre unknown rule handle 6 (verdict continue)
trace id b6409bee inet podnet-trace pre policy accept
trace id 5d06af08 inet podnet-trace out packet: oif "eth0" ip saddr 10.244.0.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 60864 tcp flags == 0x12 tcp window 64308
trace id 5d06af08 inet podnet-trace out unknown rule handle 12 (verdict continue)
trace id 5d06af08 inet podnet-trace out unknown rule handle 16 (verdict continue)
trace id 5d06af08 inet podnet-trace out policy accept
""",  # noqa: E501
}
SPORT_OK = 60864

POLICY = {
    "pod-client": """\
trace id 93f96741 inet podnet-trace out packet: oif "eth0" ip saddr 10.244.1.2 ip daddr 10.96.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 22807 ip protocol tcp ip length 60 tcp sport 41535 tcp dport 80 tcp flags == syn tcp window 64860
trace id 93f96741 inet podnet-trace out unknown rule handle 11 (verdict continue)
trace id 93f96741 inet podnet-trace out policy accept
""",  # noqa: E501
    "node2": """\
trace id 5a3390fa inet podnet-trace pre packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 22807 ip protocol tcp ip length 60 tcp sport 41535 tcp dport 80 tcp flags == syn tcp window 64860
trace id 5a3390fa inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id 5a3390fa inet podnet-trace pre policy accept
trace id 5a3390fa ip podnet-proxy filter-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 22807 ip length 60 tcp sport 41535 tcp dport 80 tcp flags == syn tcp window 64860
trace id 5a3390fa ip podnet-proxy filter-prerouting rule ct state new jump firewall-check (verdict jump firewall-check)
trace id 5a3390fa ip podnet-proxy filter-prerouting policy accept
trace id 5a3390fa ip podnet-proxy nat-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 22807 ip length 60 tcp sport 41535 tcp dport 80 tcp flags == syn tcp window 64860
trace id 5a3390fa ip podnet-proxy nat-prerouting rule jump services (verdict jump services)
trace id 5a3390fa ip podnet-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips (verdict goto svc-EDE67E021A-default/web/tcp/80)
trace id 5a3390fa ip podnet-proxy svc-EDE67E021A-default/web/tcp/80 rule numgen random mod 2 0 meta l4proto tcp dnat to 10.244.1.3:8080 (verdict accept)
trace id 5a3390fa ip podnet-proxy filter-forward packet: iif "cni0" oif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 86:6b:84:8a:65:5a ip saddr 10.244.1.2 ip daddr 10.244.1.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 22807 ip length 60 tcp sport 41535 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 5a3390fa ip podnet-proxy filter-forward rule ct state new jump service-endpoints-check (verdict jump service-endpoints-check)
trace id 5a3390fa ip podnet-proxy filter-forward rule ct state new jump cluster-ips-check (verdict jump cluster-ips-check)
trace id 5a3390fa ip podnet-proxy filter-forward policy accept
trace id 5a3390fa inet podnet-policy egress packet: iif "cni0" oif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 86:6b:84:8a:65:5a ip saddr 10.244.1.2 ip daddr 10.244.1.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 22807 ip protocol tcp ip length 60 tcp sport 41535 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 5a3390fa inet podnet-policy egress policy accept
trace id 5a3390fa inet podnet-policy ingress packet: iif "cni0" oif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 86:6b:84:8a:65:5a ip saddr 10.244.1.2 ip daddr 10.244.1.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 22807 ip protocol tcp ip length 60 tcp sport 41535 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 5a3390fa inet podnet-policy ingress rule ip daddr vmap @ingress-pods (verdict goto ingress-UWGMCNMK-default/web-57bdf4545f-m8ctj)
trace id 5a3390fa inet podnet-policy ingress-UWGMCNMK-default/web-57bdf4545f-m8ctj rule jump policy-in-OSW5HWHH-default/deny-web (verdict jump policy-in-OSW5HWHH-default/deny-web)
trace id 5a3390fa inet podnet-policy ingress-UWGMCNMK-default/web-57bdf4545f-m8ctj rule counter packets 0 bytes 0 drop comment "default/web-57bdf4545f-m8ctj: no NetworkPolicy allows this ingress" (verdict drop)
""",  # noqa: E501
}
SPORT_POLICY = 41535

NOEP = {
    "pod-client": """\
trace id bbbf2723 inet podnet-trace out packet: oif "eth0" ip saddr 10.244.1.2 ip daddr 10.96.0.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 31854 ip protocol tcp ip length 60 tcp sport 58000 tcp dport 80 tcp flags == syn tcp window 64860
trace id bbbf2723 inet podnet-trace out unknown rule handle 7 (verdict continue)
trace id bbbf2723 inet podnet-trace out policy accept
trace id a5666218 inet podnet-trace pre packet: iif "eth0" ether saddr 3e:28:c0:49:a5:66 ether daddr 22:a4:41:24:a2:79 ip saddr 10.244.1.1 ip daddr 10.244.1.2 ip dscp cs6 ip ecn not-ect ip ttl 64 ip id 34899 ip protocol icmp ip length 88 icmp type destination-unreachable icmp code port-unreachable icmp id 0 icmp sequence 0 @th,64,96 0x4500003c7c6e40003f06a8f5
trace id a5666218 inet podnet-trace pre unknown rule handle 6 (verdict continue)
trace id a5666218 inet podnet-trace pre policy accept
""",  # noqa: E501
    "node2": """\
trace id 5bae9f65 inet podnet-trace pre packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 31854 ip protocol tcp ip length 60 tcp sport 58000 tcp dport 80 tcp flags == syn tcp window 64860
trace id 5bae9f65 inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id 5bae9f65 inet podnet-trace pre policy accept
trace id 5bae9f65 ip podnet-proxy filter-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 31854 ip length 60 tcp sport 58000 tcp dport 80 tcp flags == syn tcp window 64860
trace id 5bae9f65 ip podnet-proxy filter-prerouting rule ct state new jump firewall-check (verdict jump firewall-check)
trace id 5bae9f65 ip podnet-proxy filter-prerouting policy accept
trace id 5bae9f65 ip podnet-proxy nat-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 31854 ip length 60 tcp sport 58000 tcp dport 80 tcp flags == syn tcp window 64860
trace id 5bae9f65 ip podnet-proxy nat-prerouting rule jump services (verdict jump services)
trace id 5bae9f65 ip podnet-proxy nat-prerouting policy accept
trace id 17e8ad26 ip podnet-proxy filter-forward packet: iif "cni0" oif "eth0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 31854 ip length 60 tcp sport 58000 tcp dport 80 tcp flags == syn tcp window 64860
trace id 17e8ad26 ip podnet-proxy filter-forward rule ct state new jump service-endpoints-check (verdict jump service-endpoints-check)
trace id 17e8ad26 ip podnet-proxy service-endpoints-check rule ip daddr . meta l4proto . th dport vmap @no-endpoint-services (verdict goto reject-chain)
trace id 0029dae6 inet podnet-trace out packet: oif "cni0" ip saddr 10.244.1.1 ip daddr 10.244.1.2 ip dscp cs6 ip ecn not-ect ip ttl 64 ip id 34899 ip protocol icmp ip length 88 icmp type destination-unreachable icmp code port-unreachable icmp id 0 icmp sequence 0 @th,64,96 0x4500003c7c6e40003f06a8f5
trace id 0029dae6 inet podnet-trace out unknown rule handle 10 (verdict continue)
trace id 0029dae6 inet podnet-trace out policy accept
trace id 0029dae6 ip podnet-proxy filter-output packet: oif "cni0" ip saddr 10.244.1.1 ip daddr 10.244.1.2 ip dscp cs6 ip ecn not-ect ip ttl 64 ip id 34899 ip length 88 icmp type destination-unreachable icmp code port-unreachable icmp id 0 icmp sequence 0 @th,64,96 0x4500003c7c6e40003f06a8f5
trace id 0029dae6 ip podnet-proxy filter-output policy accept
trace id 0029dae6 ip podnet-proxy filter-output-post-dnat packet: oif "cni0" ip saddr 10.244.1.1 ip daddr 10.244.1.2 ip dscp cs6 ip ecn not-ect ip ttl 64 ip id 34899 ip length 88 icmp type destination-unreachable icmp code port-unreachable icmp id 0 icmp sequence 0 @th,64,96 0x4500003c7c6e40003f06a8f5
trace id 0029dae6 ip podnet-proxy filter-output-post-dnat policy accept
trace id 17e8ad26 ip podnet-proxy reject-chain rule reject (verdict drop)
""",  # noqa: E501
}
SPORT_NOEP = 58000

FOREIGN = {
    "pod-client": """\
trace id b376f55c inet podnet-trace out packet: oif "eth0" ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 8037 ip protocol tcp ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id b376f55c inet podnet-trace out unknown rule handle 7 (verdict continue)
trace id b376f55c inet podnet-trace out policy accept
""",  # noqa: E501
    "node1": """\
trace id a852c38b inet podnet-trace pre packet: iif "podnet.1" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 8037 ip protocol tcp ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id a852c38b inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id a852c38b inet podnet-trace pre policy accept
trace id a852c38b ip podnet-proxy filter-prerouting packet: iif "podnet.1" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 8037 ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id a852c38b ip podnet-proxy filter-prerouting rule ct state new jump firewall-check (verdict jump firewall-check)
trace id a852c38b ip podnet-proxy filter-prerouting policy accept
trace id a852c38b ip podnet-proxy nat-prerouting packet: iif "podnet.1" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 8037 ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id a852c38b ip podnet-proxy nat-prerouting rule jump services (verdict jump services)
trace id a852c38b ip podnet-proxy nat-prerouting policy accept
trace id a852c38b ip podnet-proxy filter-forward packet: iif "podnet.1" oif "cni0" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 8037 ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id a852c38b ip podnet-proxy filter-forward rule ct state new jump service-endpoints-check (verdict jump service-endpoints-check)
trace id a852c38b ip podnet-proxy filter-forward rule ct state new jump cluster-ips-check (verdict jump cluster-ips-check)
trace id a852c38b ip podnet-proxy filter-forward policy accept
trace id a852c38b inet podnet-policy egress packet: iif "podnet.1" oif "cni0" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 8037 ip protocol tcp ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id a852c38b inet podnet-policy egress policy accept
trace id a852c38b inet foreign filt packet: iif "podnet.1" oif "cni0" ether saddr fe:d7:d3:c8:95:22 ether daddr 8e:07:ae:d0:b0:fc ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 62 ip id 8037 ip protocol tcp ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id a852c38b inet foreign filt rule tcp dport 8080 counter packets 0 bytes 0 drop comment "foreign" (verdict drop)
""",  # noqa: E501
    "node2": """\
trace id 4911bdef inet podnet-trace pre packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 8037 ip protocol tcp ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 4911bdef inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id 4911bdef inet podnet-trace pre policy accept
trace id 4911bdef ip podnet-proxy filter-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 8037 ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 4911bdef ip podnet-proxy filter-prerouting rule ct state new jump firewall-check (verdict jump firewall-check)
trace id 4911bdef ip podnet-proxy filter-prerouting policy accept
trace id 4911bdef ip podnet-proxy nat-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 8037 ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 4911bdef ip podnet-proxy nat-prerouting rule jump services (verdict jump services)
trace id 4911bdef ip podnet-proxy nat-prerouting policy accept
trace id 49564223 ip podnet-proxy filter-forward packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 8037 ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 49564223 ip podnet-proxy filter-forward rule ct state new jump service-endpoints-check (verdict jump service-endpoints-check)
trace id 49564223 ip podnet-proxy filter-forward rule ct state new jump cluster-ips-check (verdict jump cluster-ips-check)
trace id 49564223 ip podnet-proxy filter-forward policy accept
trace id 49564223 inet podnet-policy egress packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 8037 ip protocol tcp ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 49564223 inet podnet-policy egress policy accept
trace id 49564223 inet podnet-policy ingress packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 8037 ip protocol tcp ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 49564223 inet podnet-policy ingress policy accept
trace id 49564223 ip podnet-proxy nat-postrouting packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 8037 ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 49564223 ip podnet-proxy nat-postrouting policy accept
trace id 49564223 inet podnet-node postrouting packet: iif "cni0" oif "podnet.1" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.244.0.3 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 8037 ip protocol tcp ip length 60 tcp sport 57353 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 49564223 inet podnet-node postrouting policy accept
""",  # noqa: E501
}
SPORT_FOREIGN = 57353


AFF = {
    "pod-client": """\
trace id d40a675e inet podnet-trace out packet: oif "eth0" ip saddr 10.244.1.2 ip daddr 10.96.0.6 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip protocol tcp ip length 60 tcp sport 33717 tcp dport 80 tcp flags == syn tcp window 64860
trace id d40a675e inet podnet-trace out unknown rule handle 11 (verdict continue)
trace id d40a675e inet podnet-trace out policy accept
trace id 5d147c8b inet podnet-trace pre packet: iif "eth0" ether saddr 86:6b:84:8a:65:5a ether daddr 22:a4:41:24:a2:79 ip saddr 10.96.0.6 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol tcp ip length 60 tcp sport 80 tcp dport 33717 tcp flags == 0x12 tcp window 64308
trace id 5d147c8b inet podnet-trace pre unknown rule handle 4 (verdict continue)
trace id 5d147c8b inet podnet-trace pre policy accept
""",  # noqa: E501
    "node2": """\
trace id fbf4bdd3 inet podnet-trace pre packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.6 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip protocol tcp ip length 60 tcp sport 33717 tcp dport 80 tcp flags == syn tcp window 64860
trace id fbf4bdd3 inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id fbf4bdd3 inet podnet-trace pre policy accept
trace id fbf4bdd3 ip podnet-proxy filter-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.6 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip length 60 tcp sport 33717 tcp dport 80 tcp flags == syn tcp window 64860
trace id fbf4bdd3 ip podnet-proxy filter-prerouting rule ct state new jump firewall-check (verdict jump firewall-check)
trace id fbf4bdd3 ip podnet-proxy filter-prerouting policy accept
trace id fbf4bdd3 ip podnet-proxy nat-prerouting packet: iif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 3e:28:c0:49:a5:66 ip saddr 10.244.1.2 ip daddr 10.96.0.6 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip length 60 tcp sport 33717 tcp dport 80 tcp flags == syn tcp window 64860
trace id fbf4bdd3 ip podnet-proxy nat-prerouting rule jump services (verdict jump services)
trace id fbf4bdd3 ip podnet-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips (verdict goto svc-FBADC5F2F1-default/aff/tcp/80)
trace id fbf4bdd3 ip podnet-proxy svc-FBADC5F2F1-default/aff/tcp/80 rule ip saddr @affinity-3E0608BE2D-default/aff/tcp/80__10.244.1.3/8080 goto ep-3E0608BE2D-default/aff/tcp/80__10.244.1.3/8080 (verdict goto ep-3E0608BE2D-default/aff/tcp/80__10.244.1.3/8080)
trace id fbf4bdd3 ip podnet-proxy ep-3E0608BE2D-default/aff/tcp/80__10.244.1.3/8080 rule update @affinity-3E0608BE2D-default/aff/tcp/80__10.244.1.3/8080 { ip saddr } (verdict continue)
trace id fbf4bdd3 ip podnet-proxy ep-3E0608BE2D-default/aff/tcp/80__10.244.1.3/8080 rule meta l4proto tcp dnat to 10.244.1.3:8080 (verdict accept)
trace id fbf4bdd3 ip podnet-proxy filter-forward packet: iif "cni0" oif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 86:6b:84:8a:65:5a ip saddr 10.244.1.2 ip daddr 10.244.1.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip length 60 tcp sport 33717 tcp dport 8080 tcp flags == syn tcp window 64860
trace id fbf4bdd3 ip podnet-proxy filter-forward rule ct state new jump service-endpoints-check (verdict jump service-endpoints-check)
trace id fbf4bdd3 ip podnet-proxy filter-forward rule ct state new jump cluster-ips-check (verdict jump cluster-ips-check)
trace id fbf4bdd3 ip podnet-proxy filter-forward policy accept
trace id fbf4bdd3 inet podnet-policy egress packet: iif "cni0" oif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 86:6b:84:8a:65:5a ip saddr 10.244.1.2 ip daddr 10.244.1.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip protocol tcp ip length 60 tcp sport 33717 tcp dport 8080 tcp flags == syn tcp window 64860
trace id fbf4bdd3 inet podnet-policy egress policy accept
trace id fbf4bdd3 inet podnet-policy ingress packet: iif "cni0" oif "cni0" ether saddr 22:a4:41:24:a2:79 ether daddr 86:6b:84:8a:65:5a ip saddr 10.244.1.2 ip daddr 10.244.1.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip protocol tcp ip length 60 tcp sport 33717 tcp dport 8080 tcp flags == syn tcp window 64860
trace id fbf4bdd3 inet podnet-policy ingress policy accept
trace id fbf4bdd3 ip podnet-proxy nat-postrouting packet: oif "cni0" @ll,0,112 0x866b848a655a22a44124a2790800 ip saddr 10.244.1.2 ip daddr 10.244.1.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip length 60 tcp sport 33717 tcp dport 8080 tcp flags == syn tcp window 64860
trace id fbf4bdd3 ip podnet-proxy nat-postrouting policy accept
trace id fbf4bdd3 inet podnet-node postrouting packet: oif "cni0" @ll,0,112 0x866b848a655a22a44124a2790800 ip saddr 10.244.1.2 ip daddr 10.244.1.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip protocol tcp ip length 60 tcp sport 33717 tcp dport 8080 tcp flags == syn tcp window 64860
trace id fbf4bdd3 inet podnet-node postrouting policy accept
trace id 90d1c0ba inet podnet-trace pre packet: iif "cni0" ether saddr 86:6b:84:8a:65:5a ether daddr 22:a4:41:24:a2:79 ip saddr 10.244.1.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 33717 tcp flags == 0x12 tcp window 64308
trace id 90d1c0ba inet podnet-trace pre unknown rule handle 4 (verdict continue)
trace id 90d1c0ba inet podnet-trace pre unknown rule handle 8 (verdict continue)
trace id 90d1c0ba inet podnet-trace pre policy accept
trace id 90d1c0ba ip podnet-proxy filter-prerouting packet: iif "cni0" ether saddr 86:6b:84:8a:65:5a ether daddr 22:a4:41:24:a2:79 ip saddr 10.244.1.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip length 60 tcp sport 8080 tcp dport 33717 tcp flags == 0x12 tcp window 64308
trace id 90d1c0ba ip podnet-proxy filter-prerouting policy accept
trace id 90d1c0ba ip podnet-proxy filter-forward packet: iif "cni0" oif "cni0" ether saddr 86:6b:84:8a:65:5a ether daddr 22:a4:41:24:a2:79 ip saddr 10.244.1.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip length 60 tcp sport 8080 tcp dport 33717 tcp flags == 0x12 tcp window 64308
trace id 90d1c0ba ip podnet-proxy filter-forward policy accept
trace id 90d1c0ba inet podnet-policy egress packet: iif "cni0" oif "cni0" ether saddr 86:6b:84:8a:65:5a ether daddr 22:a4:41:24:a2:79 ip saddr 10.244.1.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 33717 tcp flags == 0x12 tcp window 64308
trace id 90d1c0ba inet podnet-policy egress rule ct state established,related accept comment "replies and open connections" (verdict accept)
trace id 90d1c0ba inet podnet-policy ingress packet: iif "cni0" oif "cni0" ether saddr 86:6b:84:8a:65:5a ether daddr 22:a4:41:24:a2:79 ip saddr 10.244.1.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 33717 tcp flags == 0x12 tcp window 64308
trace id 90d1c0ba inet podnet-policy ingress rule ct state established,related accept comment "replies and open connections" (verdict accept)
""",  # noqa: E501
    "pod-web2": """\
trace id 0c6c2a52 inet podnet-trace pre packet: iif "eth0" ether saddr 22:a4:41:24:a2:79 ether daddr 86:6b:84:8a:65:5a ip saddr 10.244.1.2 ip daddr 10.244.1.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 59621 ip protocol tcp ip length 60 tcp sport 33717 tcp dport 8080 tcp flags == syn tcp window 64860
trace id 0c6c2a52 inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id 0c6c2a52 inet podnet-trace pre unknown rule handle 6 (verdict continue)
trace id 0c6c2a52 inet podnet-trace pre policy accept
trace id f5693cde inet podnet-trace out packet: oif "eth0" ip saddr 10.244.1.3 ip daddr 10.244.1.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol tcp ip length 60 tcp sport 8080 tcp dport 33717 tcp flags == 0x12 tcp window 64308
trace id f5693cde inet podnet-trace out unknown rule handle 12 (verdict continue)
trace id f5693cde inet podnet-trace out unknown rule handle 16 (verdict continue)
trace id f5693cde inet podnet-trace out policy accept
""",  # noqa: E501
}
SPORT_AFF = 33717

LOCAL = {
    "ext": """\
trace id ec3af163 inet podnet-trace out packet: oif "eth0" ip saddr 192.168.200.100 ip daddr 192.168.200.11 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 15981 ip protocol tcp ip length 60 tcp sport 44844 tcp dport 30090 tcp flags == syn tcp window 64240
trace id ec3af163 inet podnet-trace out unknown rule handle 9 (verdict continue)
trace id ec3af163 inet podnet-trace out policy accept
""",  # noqa: E501
    "node1": """\
trace id f5d94f58 inet podnet-trace pre packet: iif "eth0" ether saddr c6:76:71:18:47:95 ether daddr 02:b2:6c:a4:77:5d ip saddr 192.168.200.100 ip daddr 192.168.200.11 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 15981 ip protocol tcp ip length 60 tcp sport 44844 tcp dport 30090 tcp flags == syn tcp window 64240
trace id f5d94f58 inet podnet-trace pre unknown rule handle 3 (verdict continue)
trace id f5d94f58 inet podnet-trace pre policy accept
trace id f5d94f58 ip podnet-proxy filter-prerouting packet: iif "eth0" ether saddr c6:76:71:18:47:95 ether daddr 02:b2:6c:a4:77:5d ip saddr 192.168.200.100 ip daddr 192.168.200.11 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 15981 ip length 60 tcp sport 44844 tcp dport 30090 tcp flags == syn tcp window 64240
trace id f5d94f58 ip podnet-proxy filter-prerouting rule ct state new jump firewall-check (verdict jump firewall-check)
trace id f5d94f58 ip podnet-proxy filter-prerouting policy accept
trace id f5d94f58 ip podnet-proxy nat-prerouting packet: iif "eth0" ether saddr c6:76:71:18:47:95 ether daddr 02:b2:6c:a4:77:5d ip saddr 192.168.200.100 ip daddr 192.168.200.11 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 15981 ip length 60 tcp sport 44844 tcp dport 30090 tcp flags == syn tcp window 64240
trace id f5d94f58 ip podnet-proxy nat-prerouting rule jump services (verdict jump services)
trace id f5d94f58 ip podnet-proxy services rule fib daddr type local ip daddr != 127.0.0.0/8 ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports (verdict goto ext-85888ABE97-default/cl-local/tcp/80)
trace id f5d94f58 ip podnet-proxy ext-85888ABE97-default/cl-local/tcp/80 rule drop (verdict drop)
""",  # noqa: E501
}
SPORT_LOCAL = 44844


ROUTES = {
    ("pod-client", "10.96.0.2"): {
        "gateway": "10.244.1.1",
        "dev": "eth0",
        "proto": "static",
        "line": "default via 10.244.1.1 dev eth0 proto static",
        "mtu": 1450,
    },
    ("pod-client", "10.96.0.3"): {
        "gateway": "10.244.1.1",
        "dev": "eth0",
        "proto": "static",
        "line": "default via 10.244.1.1 dev eth0 proto static",
        "mtu": 1450,
    },
    ("pod-client", "10.244.0.3"): {
        "gateway": "10.244.1.1",
        "dev": "eth0",
        "proto": "static",
        "line": "default via 10.244.1.1 dev eth0 proto static",
        "mtu": 1450,
    },
    ("node2", "10.244.0.3"): {
        "gateway": "10.244.0.0",
        "dev": "podnet.1",
        "proto": "44",
        "line": "10.244.0.0/24 via 10.244.0.0 dev podnet.1 proto 44 onlink",
        "mtu": 1450,
    },
    ("node1", "10.244.0.3"): {
        "gateway": None,
        "dev": "cni0",
        "proto": "kernel",
        "line": "10.244.0.0/24 dev cni0 proto kernel",
        "mtu": 1450,
    },
}


class FakeLook:
    def __init__(self, routes=ROUTES, sysctls=None, fdb=None):
        self.routes, self.sysctls = routes, sysctls or {}
        self.fdbs = fdb or {"8e:07:ae:d0:b0:fc": "192.168.200.11"}

    def route(self, ns, dst):
        return self.routes.get((ns, dst)) or {"dst": dst, "error": "Network is unreachable"}

    def neighbour(self, ns, dev, ip):
        return {"10.244.0.0": "8e:07:ae:d0:b0:fc"}.get(ip)

    def fdb(self, ns, dev):
        return self.fdbs

    def sysctl(self, ns, key):
        return self.sysctls.get((ns, key), "1")


def ctx():
    return tw.Context(
        source_ns="pod-client",
        places={
            "pod-client": tw.Place("pod default/client", "node2", "pod"),
            "node1": tw.Place("node node1", "node1", "node"),
            "node2": tw.Place("node node2", "node2", "node"),
            "node3": tw.Place("node node3", "node3", "node"),
            "pod-web1": tw.Place("pod default/web-57bdf4545f-k6kgm", "node1", "pod"),
        },
        node_ips={"192.168.200.11": "node1", "192.168.200.12": "node2", "192.168.200.13": "node3"},
        pod_cidrs={"10.244.0.0/24": "node1", "10.244.1.0/24": "node2", "10.244.2.0/24": "node3"},
        services={"10.96.0.2:80": "default/web", "10.96.0.3:80": "default/nosel"},
    )


def events(recorded):
    return {ns: tw.parse(ns, lines(text)) for ns, text in recorded.items()}


def lines(text):
    return text.splitlines()


def probe(sport, dst, port, outcome, detail=""):
    return tw.Probe("tcp", sport, "10.244.1.2", dst, port, outcome, detail)


def test_parse_rule_packet_and_policy_lines():
    evs = tw.parse("node2", lines(OK["node2"]))
    dnat = [e for e in evs if "dnat to" in e.text]
    assert [(e.table, e.chain, e.verdict) for e in dnat] == [
        ("podnet-proxy", "svc-EDE67E021A-default/web/tcp/80", "accept")
    ]
    assert dnat[0].text == "numgen random mod 3 0 meta l4proto tcp dnat to 10.244.0.3:8080"
    assert dnat[0].pkt["daddr"] == "10.96.0.2" and dnat[0].pkt["sport"] == SPORT_OK and dnat[0].pkt["ttl"] == 64
    pol = [e for e in evs if e.kind == "policy" and e.table == "podnet-policy"]
    assert pol and all(e.verdict == "accept" for e in pol)
    fwd = [e for e in evs if e.kind == "packet" and e.chain == "filter-forward"]
    assert fwd[0].pkt["iif"] == "cni0" and fwd[0].pkt["oif"] == "podnet.1" and fwd[0].pkt["daddr"] == "10.244.0.3"


def test_parse_ignores_other_lines():
    assert tw.parse("x", ["", "add table inet podnet-trace", "trace id"]) == []


def test_delivered_across_nodes_over_vxlan():
    got = tw.explain(probe(SPORT_OK, "10.96.0.2", 80, "reply", "SYN-ACK"), events(OK), ctx(), FakeLook())
    assert got["verdict"] == "delivered" and got["culprit"] is None
    assert got["endpoint"] == "10.244.0.3:8080"
    steps = [(h["where"], h["step"], h["verdict"]) for h in got["hops"]]
    assert steps == [
        ("pod default/client", "route", "continue"),
        ("node node2", "bridge", "continue"),
        ("node node2", "nft", "continue"),
        ("node node2", "nft", "dnat"),
        ("node node2", "vxlan", "continue"),
        ("node node1", "vxlan", "continue"),
        ("node node1", "bridge", "continue"),
        ("pod default/web-57bdf4545f-k6kgm", "deliver", "continue"),
        ("pod default/web-57bdf4545f-k6kgm", "deliver", "accept"),
    ]
    vx = got["hops"][4]
    assert "VNI 1" in vx["what"] and "192.168.200.12 -> 192.168.200.11" in vx["what"] and "to node1" in vx["what"]
    assert "fdb 8e:07:ae:d0:b0:fc dst 192.168.200.11" in vx["object"]
    assert "numgen random mod 3" in got["hops"][3]["what"] and "Service default/web" in got["hops"][2]["what"]
    assert "SYN-ACK" in got["hops"][-1]["object"]


def test_policy_drop_names_the_policy():
    got = tw.explain(probe(SPORT_POLICY, "10.96.0.2", 80, "timeout"), events(POLICY), ctx(), FakeLook())
    assert got["verdict"] == "dropped"
    assert got["culprit"] == {"where": "node2", "kind": "policy", "object": "default/deny-web"}
    assert "deny-web" in got["reason"] and got["hops"][-1]["verdict"] == "drop"


def test_no_endpoints_reject_names_the_service():
    got = tw.explain(probe(SPORT_NOEP, "10.96.0.3", 80, "refused", "RST"), events(NOEP), ctx(), FakeLook())
    assert got["verdict"] == "rejected"
    assert got["culprit"] == {"where": "node2", "kind": "service", "object": "default/nosel"}
    assert got["reason"] == "rejected on node2: Service default/nosel has no ready endpoints"
    assert got["endpoint"] is None
    # nft calls a reject rule's verdict "drop"; the hop says reject
    assert got["hops"][-1]["verdict"] == "reject" and got["hops"][-1]["object"].endswith(": reject")


def test_foreign_table_drop():
    got = tw.explain(probe(SPORT_FOREIGN, "10.244.0.3", 8080, "timeout"), events(FOREIGN), ctx(), FakeLook())
    assert got["verdict"] == "dropped"
    assert got["culprit"] == {
        "where": "node1",
        "kind": "foreign-rule",
        "object": 'inet foreign filt: tcp dport 8080 counter drop comment "foreign"',
    }


def test_refused_when_the_pod_answers_rst():
    got = tw.explain(probe(SPORT_OK, "10.96.0.2", 80, "refused", "RST"), events(OK), ctx(), FakeLook())
    assert got["verdict"] == "refused"
    web = "pod default/web-57bdf4545f-k6kgm"
    assert got["culprit"] == {"where": web, "kind": "listen", "object": "10.244.0.3:8080"}


def test_ip_forward_off_where_the_packet_stops():
    # the foreign recording without its drop rule: node1 saw the packet arrive, nothing after prerouting
    kept = {
        ns: [ln for ln in lines(t) if "foreign" not in ln and "filter-forward" not in ln] for ns, t in FOREIGN.items()
    }
    kept["node1"] = [ln for ln in kept["node1"] if "prerouting" in ln or "podnet-trace" in ln]
    stopped = {ns: "\n".join(ls) for ns, ls in kept.items()}
    look = FakeLook(sysctls={("node1", "net.ipv4.ip_forward"): "0"})
    got = tw.explain(probe(SPORT_FOREIGN, "10.244.0.3", 8080, "timeout"), events(stopped), ctx(), look)
    assert got["verdict"] == "dropped"
    assert got["culprit"] == {"where": "node1", "kind": "sysctl", "object": "net.ipv4.ip_forward"}


def test_no_route_on_a_node():
    routes = {k: v for k, v in ROUTES.items() if k != ("node2", "10.244.0.3")}
    got = tw.explain(probe(SPORT_FOREIGN, "10.244.0.3", 8080, "timeout"), events(FOREIGN), ctx(), FakeLook(routes))
    assert got["verdict"] == "no-route"
    assert got["culprit"] == {"where": "node2", "kind": "route", "object": "10.244.0.0/24"}


def test_no_route_in_bgp_mode_blames_the_stopped_bird():
    routes = {k: v for k, v in ROUTES.items() if k != ("node2", "10.244.0.3")}
    c = ctx()
    c.routing, c.bird_down = "bgp", ["node1"]
    got = tw.explain(probe(SPORT_FOREIGN, "10.244.0.3", 8080, "timeout"), events(FOREIGN), c, FakeLook(routes))
    assert got["culprit"] == {"where": "node2", "kind": "bgp", "object": "bird on node1"}


def test_fdb_pointing_at_the_wrong_node():
    stopped = {"pod-client": FOREIGN["pod-client"], "node2": FOREIGN["node2"]}
    look = FakeLook(fdb={"8e:07:ae:d0:b0:fc": "192.168.200.13"})
    got = tw.explain(probe(SPORT_FOREIGN, "10.244.0.3", 8080, "timeout"), events(stopped), ctx(), look)
    assert got["verdict"] == "dropped"
    assert got["culprit"] == {
        "where": "node2",
        "kind": "fdb",
        "object": "8e:07:ae:d0:b0:fc dst 192.168.200.13 dev podnet.1",
    }


def test_lost_when_nothing_explains_the_silence():
    stopped = {"pod-client": FOREIGN["pod-client"], "node2": FOREIGN["node2"]}
    got = tw.explain(probe(SPORT_FOREIGN, "10.244.0.3", 8080, "timeout"), events(stopped), ctx(), FakeLook())
    assert got["verdict"] == "lost" and got["culprit"] is None and "node2" in got["reason"]


def test_stale_udp_conntrack_entry():
    c = ctx()
    orig = "src=10.244.1.2 dst=10.96.0.10 sport=45454 dport=53"
    c.stale_conntrack = "udp 17 59 %s src=10.244.0.99 dst=10.244.1.2 sport=53 dport=45454" % orig
    stopped = {"pod-client": FOREIGN["pod-client"], "node2": FOREIGN["node2"]}
    got = tw.explain(probe(SPORT_FOREIGN, "10.244.0.3", 8080, "timeout"), events(stopped), c, FakeLook())
    assert got["culprit"] == {"where": "node2", "kind": "conntrack", "object": c.stale_conntrack}
    assert got["hops"][-1]["step"] == "conntrack" and got["hops"][-1]["where"] == "node node2"


def test_session_affinity_hit_explains_the_endpoint():
    c = ctx()
    c.places["pod-web2"] = tw.Place("pod default/web-57bdf4545f-m8ctj", "node2", "pod")
    c.services["10.96.0.6:80"] = "default/aff"
    routes = dict(ROUTES)
    routes[("pod-client", "10.96.0.6")] = ROUTES[("pod-client", "10.96.0.2")]
    routes[("node2", "10.244.1.3")] = {"gateway": None, "dev": "cni0", "line": "10.244.1.0/24 dev cni0 proto kernel"}
    got = tw.explain(probe(SPORT_AFF, "10.96.0.6", 80, "reply", "SYN-ACK"), events(AFF), c, FakeLook(routes))
    assert got["verdict"] == "delivered" and got["endpoint"] == "10.244.1.3:8080"
    dnat = [h for h in got["hops"] if h["verdict"] == "dnat"]
    assert len(dnat) == 1 and "session affinity (ClientIP)" in dnat[0]["what"]
    assert [h["where"] for h in got["hops"]][-1] == "pod default/web-57bdf4545f-m8ctj"


def test_external_traffic_policy_local_without_a_local_endpoint():
    c = ctx()
    c.source_ns = "ext"
    c.places["ext"] = tw.Place("external", None, "external")
    c.services["192.168.200.11:30090"] = "default/cl-local"
    routes = {("ext", "192.168.200.11"): {"gateway": None, "dev": "eth0", "line": "192.168.200.0/24 dev eth0"}}
    got = tw.explain(probe(SPORT_LOCAL, "192.168.200.11", 30090, "timeout"), events(LOCAL), c, FakeLook(routes))
    assert got["verdict"] == "dropped"
    assert got["culprit"] == {"where": "node1", "kind": "service", "object": "default/cl-local"}
    assert "externalTrafficPolicy Local" in got["reason"]


def _default_route_on_node2():
    routes = dict(ROUTES)
    routes[("node2", "10.244.0.3")] = {
        "gateway": "192.168.200.100",
        "dev": "eth0",
        "prefix": "default",
        "line": "default via 192.168.200.100 dev eth0 proto static",
    }
    return FakeLook(routes)


def test_a_pod_address_left_to_the_default_route_is_the_missing_route():
    stopped = {"pod-client": FOREIGN["pod-client"], "node2": FOREIGN["node2"]}
    got = tw.explain(
        probe(SPORT_FOREIGN, "10.244.0.3", 8080, "timeout"), events(stopped), ctx(), _default_route_on_node2()
    )
    assert got["verdict"] == "no-route"
    assert got["culprit"] == {"where": "node2", "kind": "route", "object": "10.244.0.0/24"}
    assert "node1's podCIDR 10.244.0.0/24" in got["reason"]


def test_the_default_route_is_no_culprit_when_the_probe_gets_through():
    got = tw.explain(probe(SPORT_OK, "10.96.0.2", 80, "reply", "SYN-ACK"), events(OK), ctx(), _default_route_on_node2())
    assert got["verdict"] == "delivered" and got["culprit"] is None


def test_trace_table_script_marks_the_probe_and_its_answer_only():
    import os

    from podnet.kernel import nfttrace

    script = nfttrace.trace_script(40000, "tcp", endpoints=("10.244.0.3", "10.244.2.2"))
    table = "podnet-trace-%d-40000" % os.getpid()
    assert script.startswith("add table inet %s\ndelete table inet %s\ntable inet %s {" % (table, table, table))
    assert "type filter hook prerouting priority -400" in script and "type filter hook output priority -400" in script
    assert "tcp sport 40000 tcp flags & (syn | ack) == syn meta nftrace set 1" in script
    assert "tcp dport 40000 tcp flags & (syn | rst) != 0 meta nftrace set 1" in script
    assert "ip daddr { 10.244.0.3, 10.244.2.2 } tcp flags & (syn | ack) == syn meta nftrace set 1" in script
    assert "icmp id 7" in nfttrace.trace_script(7, "icmp") and "udp dport 7" in nfttrace.trace_script(7, "udp")


def test_stale_trace_tables_are_those_of_dead_tracers():
    import os

    from podnet.kernel import nfttrace

    mine = nfttrace.table_name(1234)
    dead = "podnet-trace-%d-1234" % (2**22 + 7)  # above pid_max's default ceiling
    assert nfttrace.stale_tables([mine, dead, "podnet-policy", "podnet-trace"]) == [dead]
    assert mine == "podnet-trace-%d-1234" % os.getpid()
