"""Pure: the CNI contract as data (env, config, versions, results)."""

import json

import pytest

from podnet.cni import dispatch, thin
from podnet.cni.errors import CNIError
from podnet.cni.spec import (
    check_version,
    from_any_version,
    parse_cni_args,
    parse_config,
    parse_env,
    route_attrs,
    to_version,
    valid_attachments,
)

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}


def code_of(fn, *a):
    with pytest.raises(CNIError) as e:
        fn(*a)
    return e.value.code


@pytest.mark.parametrize("missing", ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])
def test_add_needs_all_four_params(missing):
    env = dict(ENV)
    del env[missing]
    assert code_of(parse_env, env) == 4


def test_del_does_not_need_netns():
    env = dict(ENV, CNI_COMMAND="DEL")
    del env["CNI_NETNS"]
    assert parse_env(env).netns == ""


def test_gc_needs_path_version_needs_nothing():
    assert code_of(parse_env, {"CNI_COMMAND": "GC"}) == 4
    assert parse_env({"CNI_COMMAND": "VERSION"}).command == "VERSION"


@pytest.mark.parametrize("cid", ["../etc", "a/b", "/abs", "-lead", "", "x y"])
def test_container_id_with_path_or_bad_chars_is_refused(cid):
    env = dict(ENV, CNI_CONTAINERID=cid)
    assert code_of(parse_env, env) == 4


@pytest.mark.parametrize("ifname", ["a" * 16, "et/h0", "eth:0", "..", "e th"])
def test_bad_ifname(ifname):
    assert code_of(parse_env, dict(ENV, CNI_IFNAME=ifname)) == 4


def test_cni_args_with_kubernetes_keys():
    args = parse_cni_args(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
    )
    assert args["K8S_POD_NAME"] == "web-0" and args["IgnoreUnknown"] == "1"
    assert code_of(parse_cni_args, "novalue") == 4


def test_config_decode_errors():
    assert code_of(parse_config, b"{not json") == 6
    assert code_of(parse_config, b"[1,2]") == 6
    assert code_of(parse_config, b'{"name": "x"}') == 7


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_supported_versions(version):
    check_version(version, "ADD")


def test_unsupported_version_and_verbs_too_new_for_the_config():
    assert code_of(check_version, "0.2.0") == 1
    assert code_of(check_version, "9.9.9") == 1
    assert code_of(check_version, "0.3.1", "CHECK") == 1
    assert code_of(check_version, "1.0.0", "GC") == 1
    assert code_of(check_version, "1.0.0", "STATUS") == 1


def test_result_conversion_round_trip():
    result = {
        "cniVersion": "1.1.0",
        "ips": [
            {"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 2},
            {"address": "fd00::2/64", "interface": 2},
        ],
    }
    old = to_version(result, "0.3.1")
    assert [ip["version"] for ip in old["ips"]] == ["4", "6"] and old["cniVersion"] == "0.3.1"
    new = to_version(from_any_version(old), "1.0.0")
    assert all("version" not in ip for ip in new["ips"])
    assert new["ips"][0]["gateway"] == "10.0.0.1"


def test_valid_attachments():
    conf = {"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}
    assert valid_attachments(conf) == {("a", "eth0")}
    assert code_of(valid_attachments, {"cni.dev/valid-attachments": [{"ifname": "x"}]}) == 7


def test_dispatch_version_and_error_shapes():
    rc, out, _ = dispatch.run("podnet", {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    doc = json.loads(out)
    assert rc == 0 and doc["cniVersion"] == "0.4.0" and "1.1.0" in doc["supportedVersions"]
    rc, out, err = dispatch.run("podnet", dict(ENV), b"{broken")
    doc = json.loads(out)
    assert rc == 1 and doc["code"] == 6 and doc["msg"] and err  # message on stdout, log on stderr
    rc, out, _ = dispatch.run("podnet", dict(ENV), b'{"cniVersion": "0.1.0", "name": "n", "type": "podnet"}')
    assert json.loads(out)["code"] == 1


def test_thin_field_scan_matches_json():
    raw = b'{"cniVersion": "1.0.0", "daemonSocket" : "/run/podnet/cni.sock", "x": {"y": 1}}'
    assert thin.find_string_field(raw, "daemonSocket") == "/run/podnet/cni.sock"
    assert thin.find_string_field(b'{"a": 1}', "daemonSocket") is None
    assert thin.find_string_field(b'{"daemonSocket": 5}', "daemonSocket") is None
    escaped = json.dumps({"daemonSocket": "/tmp/we\\ird"}).encode()
    assert thin.find_string_field(escaped, "daemonSocket") == "/tmp/we\\ird"


def test_thin_wire_round_trip():
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1;B=2", "HOME": "/root"}
    frame = thin.encode_request("podnet", env, b'{"x": "\\u0000"}\n')
    plugin, got, stdin = thin.decode_request(frame)
    assert plugin == "podnet" and got == {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1;B=2"}
    assert stdin == b'{"x": "\\u0000"}\n'
    assert thin.decode_response(thin.encode_response(7, b"out", b"err")) == (7, b"out", b"err")


def test_thin_status_when_daemon_down_is_50(tmp_path):
    import io

    out, err = io.BytesIO(), io.BytesIO()
    raw = json.dumps({"cniVersion": "1.1.0", "daemonSocket": str(tmp_path / "none.sock")}).encode()
    rc = thin.main("podnet", {"CNI_COMMAND": "STATUS", "CNI_PATH": "/x"}, io.BytesIO(raw), out, err)
    assert rc == 1 and json.loads(out.getvalue())["code"] == 50


def test_route_fields_of_cni_1_1():
    r = {"dst": "0.0.0.0/0", "gw": "10.0.0.1", "mtu": 1450, "advmss": 1400, "priority": 0, "table": 300, "scope": 253}
    assert route_attrs(r, "ipam.routes[0]", strict=True) == {
        "mtu": 1450,
        "advmss": 1400,
        "priority": 0,
        "table": 300,
        "scope": 253,
    }
    for bad, says in (
        ({"mtu": True}, "ipam.routes[0].mtu: must be an integer 68-65535"),
        ({"advmss": 0}, "ipam.routes[0].advmss: must be an integer 1-65535"),
        ({"table": 0}, "ipam.routes[0].table: must be an integer 1-4294967295"),
        ({"via": "x"}, "ipam.routes[0].via: unknown route field (a route has dst, gw, mtu, advmss"),
    ):
        with pytest.raises(CNIError) as exc:
            route_attrs(dict(bad, dst="0.0.0.0/0"), "ipam.routes[0]", strict=True)
        assert exc.value.code == 7 and says in exc.value.msg, exc.value.msg
    # a delegated plugin's result may carry a later spec's fields: left alone
    assert route_attrs({"dst": "0.0.0.0/0", "future": 1, "mtu": 1400}, "routes[0]", strict=False) == {"mtu": 1400}


def test_route_fields_leave_results_older_than_1_1():
    result = {"cniVersion": "1.1.0", "ips": [], "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1", "mtu": 1450}]}
    assert to_version(result, "1.0.0")["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
    assert to_version(result, "0.4.0")["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
    assert to_version(result, "1.1.0")["routes"][0]["mtu"] == 1450
