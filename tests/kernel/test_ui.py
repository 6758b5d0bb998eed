"""`podnet lab ui` in a real browser: Debian's headless Chromium driven by
chromedriver (selenium), with networking to anything but 127.0.0.1 turned
off. One 3-node lab, one UI server and one browser for the module; every
test leaves a screenshot in its tmp dir."""

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from tests.helpers import process_running, wait_for
from tests.kernel.test_lab import EXAMPLE, Lab, leftovers, ready

pytestmark = pytest.mark.kernel

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 60  # seconds: generous, the machine is shared
EXTRA_POD = """apiVersion: v1
kind: Pod
metadata: {name: extra, labels: {app: extra}}
spec:
  nodeName: node3
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.45
    args: [netexec, --http-port=8080]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
"""
EXTRA_SVC = """apiVersion: v1
kind: Service
metadata: {name: extra}
spec:
  selector: {app: extra}
  ports: [{port: 81, targetPort: 8080}]
"""
DENY_WEB = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("gu%d" % (os.getpid() % 10000), root)
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "3", "-f", EXAMPLE, "--timeout", "90", timeout=150)
        lab.wait("every pod Ready", lambda: all(ready(p) for p in lab.get("pods", "-A")), WAIT)
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


@contextlib.contextmanager
def ui_server(lab, logdir):
    """`podnet lab ui --port 0` as a person starts it; its first line names the
    URL; its log goes to a file (printed at the end, shown when a test fails)."""
    log = logdir / "ui.log"
    errf = open(log, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "podnet.cli.main", "lab", "ui", "--lab", lab.name, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=errf,
        text=True,
        env=lab.env,
    )
    try:
        ready_, _, _ = select.select([proc.stdout], [], [], WAIT)
        line = proc.stdout.readline() if ready_ else ""
        assert line.startswith("podnet lab ui: http://127.0.0.1:"), line + log.read_text()
        yield line.split()[3]
    finally:
        print("podnet lab ui's log:\n" + log.read_text())
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)  # SIGTERM ends it cleanly: exit 0
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        proc.stdout.close()
        errf.close()
        assert code == 0 and not process_running(proc.pid)


@pytest.fixture(scope="module")
def url(lab, tmp_path_factory):
    with ui_server(lab, tmp_path_factory.mktemp("ui")) as u:
        yield u


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, task)) as f:
                    kids = [int(k) for k in f.read().split()]
                out += kids
                todo += kids
        except FileNotFoundError:
            continue
    return out


@pytest.fixture(scope="module")
def browser(url):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="podnet-ui-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root
        "--disable-dev-shm-usage",
        "--user-data-dir=" + profile,
        "--window-size=1500,1100",
        # nothing leaves the machine: names resolve to nothing but 127.0.0.1, and
        # every connection but loopback goes to a proxy port that does not answer
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        opts.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER)
    driver = None
    pids = []
    try:
        driver = webdriver.Chrome(service=service, options=opts)
        pids = [service.process.pid, *_descendants(service.process.pid)]
        driver.get(url)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        for pid in pids:  # whatever quit() left: by the PIDs we saw, never by name
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)
        wait_for("chromium and chromedriver gone", lambda: not any(process_running(p) for p in pids), 20)
        shutil.rmtree(profile, ignore_errors=True)
        assert not os.path.exists(profile)


def _shot(driver, tmp_path, name):
    path = str(tmp_path / ("%s.png" % name))
    driver.save_screenshot(path)
    assert os.path.getsize(path) > 1000
    return path


def _present(driver, css):
    return driver.find_elements("css selector", css)


def _wait(what, fn, timeout=WAIT):
    """wait_for, where an element replaced while being read (the page
    re-renders on changes) is a "not yet", not a failure."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt():
        try:
            return fn()
        except StaleElementReferenceException:
            return None

    return wait_for(what, attempt, timeout)


def _rgb(css):
    """(r, g, b) of "rgb(1, 2, 3)" or "rgba(1, 2, 3, 1)" (browsers give either)."""
    return tuple(int(v) for v in css[css.index("(") + 1 : -1].split(",")[:3])


def _key(obj):
    return "%s/%s" % (obj["metadata"]["namespace"], obj["metadata"]["name"])


def test_page_shows_every_node_pod_and_service(lab, browser, tmp_path):
    nodes = [n["metadata"]["name"] for n in lab.get("nodes")]
    pods = lab.get("pods", "-A")
    services = lab.get("services", "-A")
    _wait("the page live", lambda: "live on" in browser.find_element("id", "live").get_attribute("class"), WAIT)
    _wait("every pod on the page", lambda: all(_present(browser, '[data-pod="%s"]' % _key(p)) for p in pods), WAIT)
    assert (
        sorted(e.get_attribute("data-node") for e in _present(browser, ".node"))
        == sorted(nodes)
        == [
            "node1",
            "node2",
            "node3",
        ]
    )
    for p in pods:
        box = browser.find_element(
            "css selector", '.node[data-node="%s"] [data-pod="%s"]' % (p["spec"]["nodeName"], _key(p))
        )
        assert p["status"]["podIP"] in box.text and "ready" in box.get_attribute("class").split()
    for s in services:
        el = browser.find_element("css selector", '[data-service="%s"]' % _key(s))
        assert s["spec"]["clusterIP"] in el.text
    web = browser.find_element("css selector", '[data-service="default/web"]')
    web_ips = sorted(p["status"]["podIP"] for p in pods if p["metadata"]["name"].startswith("web-"))
    assert sorted(e.get_attribute("data-ip") for e in web.find_elements("css selector", ".endpoint")) == web_ips
    assert browser.find_element("id", "routing").text == "routing: vxlan"
    assert browser.find_element("css selector", "#external").get_attribute("data-ip") == "192.168.200.100"
    _shot(browser, tmp_path, "lab")


def test_a_new_pod_appears_and_a_deleted_service_goes_without_a_reload(lab, browser, tmp_path):
    browser.execute_script("window.__sameDocument = 1")  # gone if the page reloads
    try:
        lab.run("apply", "-f", "-", input=EXTRA_POD + "---\n" + EXTRA_SVC)
        _wait(
            "pod extra Ready on node3 in the page",
            lambda: _present(browser, '.node[data-node="node3"] .pod.ready[data-pod="default/extra"]'),
            WAIT,
        )
        _wait(
            "Service extra with its endpoint",
            lambda: _present(browser, '[data-service="default/extra"] .endpoint[data-ip]'),
            WAIT,
        )
        _shot(browser, tmp_path, "extra")
        lab.run("delete", "service", "extra")
        _wait("Service extra gone from the page", lambda: not _present(browser, '[data-service="default/extra"]'), WAIT)
        lab.run("delete", "pod", "extra", "--wait")
        _wait("pod extra gone from the page", lambda: not _present(browser, '[data-pod="default/extra"]'), WAIT)
        assert browser.execute_script("return window.__sameDocument") == 1
        assert _present(browser, '[data-service="default/web"]')
    finally:
        lab.run("delete", "service", "extra", "--ignore-not-found", check=False)
        lab.run("delete", "pod", "extra", "--ignore-not-found", check=False)


def _run_trace(browser, src, dst, port="8080", click=False):
    """FROM and TO picked in the lists, or (click) by clicking the two pods on the picture."""
    from selenium.webdriver.support.ui import Select

    before = browser.find_element("id", "trace-result").get_attribute("data-seq")
    if click:
        for key in (src, dst):
            browser.find_element("css selector", '.pod[data-pod="%s"]' % key).click()
        _wait(
            "the clicked pods as FROM and TO",
            lambda: (
                (
                    Select(browser.find_element("id", "trace-from")).first_selected_option.get_attribute("value"),
                    Select(browser.find_element("id", "trace-to")).first_selected_option.get_attribute("value"),
                )
                == (src, dst)
            ),
        )
        assert _present(browser, '.pod.sel-from[data-pod="%s"]' % src) and _present(
            browser, '.pod.sel-to[data-pod="%s"]' % dst
        )
    else:
        Select(browser.find_element("id", "trace-from")).select_by_value(src)
        Select(browser.find_element("id", "trace-to")).select_by_value(dst)
    field = browser.find_element("id", "trace-port")
    field.clear()
    field.send_keys(port)
    browser.find_element("id", "trace-run").click()
    _wait(
        "the trace's answer on the page",
        lambda: browser.find_element("id", "trace-result").get_attribute("data-seq") not in (None, before),
        WAIT,
    )
    return browser.find_element("id", "trace-result")


def _web_pod(lab, node):
    return next(
        p for p in lab.get("pods") if p["metadata"]["name"].startswith("web-") and p["spec"]["nodeName"] == node
    )


def test_a_trace_from_the_page_is_drawn_hop_by_hop(lab, browser, tmp_path):
    client = next(p for p in lab.get("pods") if p["metadata"]["name"] == "client")
    other = next(n for n in ("node1", "node2", "node3") if n != client["spec"]["nodeName"])
    web = _web_pod(lab, other)
    result = _run_trace(browser, "default/client", _key(web), click=True)
    assert result.get_attribute("data-verdict") == "delivered", result.text
    hops = [h.get_attribute("data-where") for h in _present(browser, "#trace-hops .hop")]
    # the same hops as `podnet trace -o json` gives for that path
    doc = json.loads(lab.run("trace", "client", "%s:8080" % web["metadata"]["name"], "-o", "json").stdout)
    assert hops == [h["where"] for h in doc["hops"]]
    assert hops[0] == "pod default/client" and hops[-1] == "pod %s" % _key(web)
    assert "node %s" % client["spec"]["nodeName"] in hops and "node %s" % other in hops
    # drawn: a numbered mark per place on the path, the boxes on it highlighted
    marks = _present(browser, "#edges .hop-mark")
    assert len(marks) == len(dict.fromkeys(hops)) == 4
    assert _present(browser, "#edges polyline.trace-path")
    on_path = {e.get_attribute("data-pod") or e.get_attribute("data-where") for e in _present(browser, ".on-path")}
    assert on_path == {"default/client", _key(web), "node %s" % client["spec"]["nodeName"], "node %s" % other}
    _shot(browser, tmp_path, "trace")


def test_a_policy_shows_as_badges_and_its_drop_in_red(lab, browser, tmp_path):
    webs = [p for p in lab.get("pods") if p["metadata"]["name"].startswith("web-")]
    lab.run("apply", "-f", "-", input=DENY_WEB)
    try:
        _wait(
            "deny-web badges on the web pods",
            lambda: all(
                _present(browser, '[data-pod="%s"] .badge[data-policy="default/deny-web"]' % _key(p)) for p in webs
            ),
            WAIT,
        )
        assert not _present(browser, '[data-pod="default/client"] .badge.policy')
        web = _web_pod(lab, "node1")
        # a trace into the denied pod: the drop is drawn red on the hop where it happens
        result = _wait(
            "the policy in force (the trace dropped)",
            lambda: (
                (r := _run_trace(browser, "default/client", _key(web))).get_attribute("data-verdict") == "dropped" and r
            ),
            WAIT,
        )
        assert "deny-web" in result.text
        assert "failed" in result.get_attribute("class")
        assert _present(browser, "#edges .hop-mark.drop") and _present(browser, "#edges polyline.trace-path.failed")
        red = browser.execute_script(
            "return getComputedStyle(document.querySelector('#edges .hop-mark.drop circle')).fill"
        )
        assert _rgb(red) == (211, 47, 47)
        # the flow log: the denied connection in the feed, red
        code = "import socket; socket.create_connection(('%s', 8080), timeout=2)" % web["status"]["podIP"]
        lab.run("exec", "client", "--", "python3", "-c", code, check=False)
        drop = _wait(
            "a dropped flow in the feed",
            lambda: [e for e in _present(browser, "#flow-feed .flow.dropped") if _key(web) + ":8080" in e.text],
            WAIT,
        )[0]
        assert "deny-web" in drop.text
        assert _rgb(drop.value_of_css_property("color")) == (179, 38, 30)
        assert _present(browser, "#edges line.edge.dropped")
        _shot(browser, tmp_path, "drop")
    finally:
        lab.run("delete", "netpol", "deny-web", "--ignore-not-found", check=False)


def test_the_server_answers_only_loopback_names_and_bad_trace_requests(url):
    import urllib.error
    import urllib.request

    port = url.rsplit(":", 1)[1].strip("/")
    req = urllib.request.Request(url + "api/state", headers={"Host": "attacker.example:%s" % port})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 403
    post = urllib.request.Request(
        url + "api/trace", data=b'{"from": "client", "to": "x:1", "protocol": "sctp"}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(post, timeout=10)
    assert err.value.code == 400 and "protocol" in json.loads(err.value.read())["error"]


def test_a_bgp_lab_shows_its_routing_mode_and_sessions(browser, tmp_path):
    """A second lab, with BIRD: each node's sessions as the Node's
    podnet.io/bgp-sessions annotation says, Established in the page."""
    root = tmp_path / "labs"
    root.mkdir()
    bgp = Lab("gb%d" % (os.getpid() % 10000), str(root))
    try:
        bgp.run("lab", "up", "--name", bgp.name, "--nodes", "2", "--routing", "bgp", "--timeout", "90", timeout=150)
        with ui_server(bgp, tmp_path) as u:
            browser.get(u)
            _wait("routing: bgp", lambda: browser.find_element("id", "routing").text == "routing: bgp", WAIT)
            for n in ("node1", "node2"):
                # the other node and the external host's router, both Established
                _wait(
                    "%s's BGP sessions Established in the page" % n,
                    lambda n=n: len(_present(browser, '.node[data-node="%s"] .bgp .session.Established' % n)) == 2,
                    WAIT,
                )
            other = browser.find_element("css selector", '.node[data-node="node1"] .bgp')
            assert "node2 Established" in other.text and "external Established" in other.text
            _shot(browser, tmp_path, "bgp")
            browser.get("about:blank")
    finally:
        bgp.run("lab", "down", "--name", bgp.name, check=False)
        assert leftovers(bgp.name, str(root)) == []
