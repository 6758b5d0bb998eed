"""The cluster's DNS records as a pure function of Services and EndpointSlices
(Kubernetes DNS specification 1.1.0), and a pod's resolv.conf by dnsPolicy."""

import pytest

from podnet.dns import records, resolvconf


def svc(name, ns="shop", **spec):
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def eps(service, endpoints, ports=(), ns="shop", name=None):
    return {
        "metadata": {
            "name": name or service + "-x",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": list(ports),
    }


def test_cluster_ip_service_gets_a_srv_for_named_ports_and_ptr():
    rec = records.build(
        [
            svc(
                "web",
                clusterIP="10.96.0.20",
                clusterIPs=["10.96.0.20"],
                ports=[{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}],
            )
        ],
        [],
    )
    assert rec.get("web.shop.svc.cluster.local", "A") == ["10.96.0.20"]
    assert rec.get("_http._tcp.web.shop.svc.cluster.local", "SRV") == ["0 100 80 web.shop.svc.cluster.local."]
    assert rec.get("20.0.96.10.in-addr.arpa", "PTR") == ["web.shop.svc.cluster.local."]
    assert rec.get("dns-version.cluster.local", "TXT") == ['"1.1.0"']
    # an unnamed port has no SRV record
    assert not [n for n in rec.names if n.startswith("_81")]


def test_headless_service_lists_ready_endpoints_with_hostnames_or_dashed_addresses():
    slices = [
        eps(
            "db",
            [
                {"addresses": ["10.244.1.5"], "hostname": "db-0"},
                {"addresses": ["10.244.2.6"], "conditions": {"ready": True}},
                {"addresses": ["10.244.2.7"], "conditions": {"ready": False}},
            ],
            ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}],
        )
    ]
    rec = records.build([svc("db", clusterIP="None")], slices)
    assert sorted(rec.get("db.shop.svc.cluster.local", "A")) == ["10.244.1.5", "10.244.2.6"]
    assert rec.get("db-0.db.shop.svc.cluster.local", "A") == ["10.244.1.5"]
    assert rec.get("10-244-2-6.db.shop.svc.cluster.local", "A") == ["10.244.2.6"]
    assert sorted(rec.get("_pg._tcp.db.shop.svc.cluster.local", "SRV")) == [
        "0 50 5432 10-244-2-6.db.shop.svc.cluster.local.",
        "0 50 5432 db-0.db.shop.svc.cluster.local.",
    ]
    assert rec.get("5.1.244.10.in-addr.arpa", "PTR") == ["db-0.db.shop.svc.cluster.local."]
    assert rec.get("10-244-2-7.db.shop.svc.cluster.local") == []  # not ready


def test_headless_without_ready_endpoints_has_no_records_and_publish_not_ready_counts_them():
    slices = [eps("db", [{"addresses": ["10.244.2.7"], "conditions": {"ready": False}}])]
    assert records.build([svc("db", clusterIP="None")], slices).get("db.shop.svc.cluster.local") == []
    rec = records.build([svc("db", clusterIP="None", publishNotReadyAddresses=True)], slices)
    assert rec.get("db.shop.svc.cluster.local", "A") == ["10.244.2.7"]


def test_external_name_is_a_cname_and_other_zones_and_namespaces_are_kept_apart():
    rec = records.build(
        [svc("ext", type="ExternalName", externalName="Example.COM"), svc("web", ns="other", clusterIP="10.96.0.30")],
        [],
        zone="corp.example",
    )
    assert rec.get("ext.shop.svc.corp.example", "CNAME") == ["example.com."]
    assert rec.get("web.other.svc.corp.example", "A") == ["10.96.0.30"]
    assert rec.get("web.shop.svc.corp.example") == []
    assert rec.zones == ["corp.example."]


def test_slices_of_another_namespace_do_not_leak_into_a_headless_service():
    slices = [eps("db", [{"addresses": ["10.244.9.9"]}], ns="other")]
    assert records.build([svc("db", clusterIP="None")], slices).get("db.shop.svc.cluster.local") == []


def test_static_records_need_a_zone():
    rec = records.static([". SOA ns. host. 1 2 3 4 60", "example.com. 60 IN A 192.168.200.100", "; comment"])
    assert rec.get("example.com", "A") == ["192.168.200.100"] and rec.zones == ["."]
    with pytest.raises(ValueError, match="SOA"):
        records.static(["example.com. A 1.2.3.4"])
    with pytest.raises(ValueError, match="line 1"):
        records.static(["example.com."])


# ---- resolv.conf ----------------------------------------------------------------


def pod(ns="shop", **spec):
    return {"metadata": {"name": "p", "namespace": ns}, "spec": spec}


NODE = "nameserver 192.168.200.100\nsearch lab.example\noptions timeout:2\n"


def lines(text):
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_cluster_first_is_the_default():
    assert lines(resolvconf.plan(pod(), NODE)) == [
        "nameserver 10.96.0.10",
        "search shop.svc.cluster.local svc.cluster.local cluster.local lab.example",
        "options ndots:5",
    ]


def test_default_is_the_nodes_and_host_network_falls_back_to_it():
    want = ["nameserver 192.168.200.100", "search lab.example", "options timeout:2"]
    assert lines(resolvconf.plan(pod(dnsPolicy="Default"), NODE)) == want
    assert lines(resolvconf.plan(pod(hostNetwork=True), NODE)) == want
    assert (
        lines(resolvconf.plan(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), NODE))[0]
        == "nameserver 10.96.0.10"
    )


def test_none_takes_only_dns_config_and_dns_config_merges_into_the_others():
    cfg = {
        "nameservers": ["1.1.1.1"],
        "searches": ["a.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    assert lines(resolvconf.plan(pod(dnsPolicy="None", dnsConfig=cfg), NODE)) == [
        "nameserver 1.1.1.1",
        "search a.example",
        "options ndots:2 edns0",
    ]
    out = lines(resolvconf.plan(pod(dnsConfig=cfg), NODE))
    assert out[0:2] == ["nameserver 10.96.0.10", "nameserver 1.1.1.1"]
    assert out[2].endswith(" a.example") and out[3] == "options ndots:2 edns0"


def test_a_hostname_is_a_name_only_in_the_service_its_subdomain_names():
    # the EndpointSlice controller decides (ShouldSetHostname); the records follow the slices
    from podnet.controllers.planners import plan_endpointslices

    pod = {
        "metadata": {"name": "db-0", "namespace": "shop", "labels": {"app": "db"}, "uid": "u"},
        "spec": {"hostname": "db-0", "subdomain": "db", "containers": [{"name": "c"}]},
        "status": {"podIP": "10.244.0.5", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    services = [
        dict(svc(name, clusterIP="None", selector={"app": "db"}), metadata={"name": name, "namespace": "shop"})
        for name in ("db", "db-unready")
    ]
    slices = [s for v in services for s in plan_endpointslices(v, [pod])]
    rec = records.build(services, slices)
    assert rec.get("db-0.db.shop.svc.cluster.local", "A") == ["10.244.0.5"]
    assert rec.get("db-0.db-unready.shop.svc.cluster.local") == []  # NXDOMAIN: not its subdomain
    assert rec.get("10-244-0-5.db-unready.shop.svc.cluster.local", "A") == ["10.244.0.5"]
