"""Images made from Debian packages already on the machine, for offline labs:
`busybox` (busybox-static and its applet links) and `nginx` (Debian's nginx
binary with the shared libraries ldd names, a config, mime.types and an
entrypoint that writes a default page naming the pod), imported into the
machine's store with `podman import` and tagged as Docker Hub names them, so
`image: nginx`, `nginx:latest`, `docker.io/library/nginx`, `busybox` and
`busybox:1.36` resolve to them when nothing can be pulled.
"""

import io
import os
import re
import subprocess
import tarfile
import tempfile

from podnet.image import store as store_mod

BUILD_LABEL = "io.podnet.build"
SOURCE_LABEL = "io.podnet.source"
BUILD_VERSION = "1"  # bump when a recipe changes: `lab up` rebuilds once

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"

NGINX_CONF = """\
# podnet's nginx image: the shape of the Docker Hub image (port 80, html in
# /usr/share/nginx/html, logs to the container's stdout and stderr)
user root;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr notice;
events { worker_connections 512; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    server {
        listen 80;
        listen [::]:80;
        server_name localhost;
        root /usr/share/nginx/html;
        index index.html;
    }
}
"""

# the page names the pod: written at start from the container's hostname
ENTRYPOINT = """\
#!/bin/sh
# podnet nginx image: a default page that names the pod, then the command
if [ ! -e /usr/share/nginx/html/.keep ]; then
  host=$(hostname)
  cat > /usr/share/nginx/html/index.html <<PAGE
<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1>
<p>Served by pod $host.</p>
<p>podnet's nginx image, built from Debian's nginx.</p></body></html>
PAGE
fi
exec "$@"
"""


class BuildError(Exception):
    pass


def pkg_version(package):
    res = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError("package %s is not installed (apt-get install %s)" % (package, package))
    return res.stdout.strip()


def upstream(version):
    """'1:1.35.0-4+deb12u1+b1' -> '1.35.0'."""
    return version.split(":", 1)[-1].split("-", 1)[0].split("+", 1)[0]


def shared_libs(binary):
    """Absolute paths of the libraries `ldd binary` names (and the loader)."""
    res = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError("ldd %s: %s" % (binary, res.stderr.strip()))
    return sorted(set(re.findall(r"(/\S+)\s+\(0x", res.stdout)))


class Rootfs:
    """A rootfs tarball written entry by entry (host files, links, texts)."""

    def __init__(self, path):
        self.tar = tarfile.open(path, "w")
        self.dirs = set()

    def _dirs(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                self.dir(d)

    def dir(self, path, mode=0o755):
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.mode = tarfile.DIRTYPE, mode
        self.dirs.add(path.strip("/"))
        self.tar.addfile(info)

    def file(self, src, dest=None):
        """A host file (symlinks followed) at dest (default: the same path)."""
        dest = (dest or src).strip("/")
        self._dirs(dest)
        real = os.path.realpath(src)
        info = self.tar.gettarinfo(real, arcname=dest)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        with open(real, "rb") as f:
            self.tar.addfile(info, f)

    def text(self, dest, content, mode=0o644):
        data = content.encode()
        dest = dest.strip("/")
        self._dirs(dest)
        info = tarfile.TarInfo(dest)
        info.size, info.mode = len(data), mode
        self.tar.addfile(info, io.BytesIO(data))

    def link(self, dest, target):
        dest = dest.strip("/")
        self._dirs(dest)
        info = tarfile.TarInfo(dest)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self.tar.addfile(info)

    def close(self):
        self.tar.close()


def _base(fs):
    """busybox with its applets in /bin, /etc/passwd, /tmp: both images' base."""
    fs.file("/bin/busybox", "/bin/busybox")
    res = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True)
    for applet in res.stdout.split():
        if applet != "busybox":
            fs.link("/bin/" + applet, "busybox")
    fs.link("/usr/bin/env", "/bin/env")
    fs.text("/etc/passwd", PASSWD)
    fs.text("/etc/group", GROUP)
    for d in ("tmp", "root", "run", "proc", "sys", "dev"):
        fs.dir(d, 0o1777 if d == "tmp" else 0o755)


def _busybox(fs):
    _base(fs)


def _nginx(fs):
    _base(fs)
    fs.file("/usr/sbin/nginx")
    for lib in shared_libs("/usr/sbin/nginx"):
        fs.file(lib)
    fs.file("/etc/nginx/mime.types")
    fs.text("/etc/nginx/nginx.conf", NGINX_CONF)
    for d in ("var/log/nginx", "var/lib/nginx", "var/lib/nginx/body", "usr/share/nginx/html"):
        fs.dir(d)
    fs.text("/docker-entrypoint.sh", ENTRYPOINT, 0o755)


def recipes():
    """name -> (package, tags, build function, changes)."""
    bb = upstream(pkg_version("busybox-static"))
    ng = upstream(pkg_version("nginx-light")) if _installed("nginx-light") else upstream(pkg_version("nginx"))
    return {
        "busybox": (
            "busybox-static",
            # Debian ships 1.35; 1.36 is the tag the articles use: both name it
            ["docker.io/library/busybox:latest", "docker.io/library/busybox:%s" % bb, "docker.io/library/busybox:1.36"],
            _busybox,
            ['CMD ["sh"]'],
        ),
        "nginx": (
            "nginx-light" if _installed("nginx-light") else "nginx",
            ["docker.io/library/nginx:latest", "docker.io/library/nginx:%s" % ng],
            _nginx,
            [
                'ENTRYPOINT ["/docker-entrypoint.sh"]',
                'CMD ["nginx", "-g", "daemon off;"]',
                "EXPOSE 80",
                "STOPSIGNAL SIGQUIT",
            ],
        ),
    }


def _installed(package):
    try:
        pkg_version(package)
        return True
    except BuildError:
        return False


def is_current(store, tags):
    """Built by this recipe version already (the second `lab up` stays fast)."""
    if not store.exists(tags[0]):
        return False
    res = store.run("inspect %s" % tags[0], "image", "inspect", "--format", "{{json .Labels}}", tags[0], check=False)
    try:
        import json

        return (json.loads(res.stdout or "null") or {}).get(BUILD_LABEL) == BUILD_VERSION
    except ValueError:
        return False


def build(names=None, store=None, force=False, progress=print):
    """Build the named images (default: all) into the machine store -> [tags built]."""
    store = (store or store_mod.machine()).ensure()
    built = []
    for name, (package, tags, fn, changes) in recipes().items():
        if names and name not in names:
            continue
        if not force and is_current(store, tags):
            progress("image %s: up to date (%s)" % (name, ", ".join(tags)))
            continue
        version = pkg_version(package)
        progress("image %s: building from Debian %s %s" % (name, package, version))
        with tempfile.TemporaryDirectory(dir=store.tmp) as tmp:
            path = os.path.join(tmp, "rootfs.tar")
            fs = Rootfs(path)
            fn(fs)
            fs.close()
            labels = [
                "LABEL %s=%s" % (BUILD_LABEL, BUILD_VERSION),
                'LABEL %s="debian:%s=%s"' % (SOURCE_LABEL, package, version),
            ]
            store.import_rootfs(path, tags, changes + labels, message="podnet image build %s" % name)
        progress("image %s: tagged %s" % (name, ", ".join(tags)))
        built += tags
    return built


def stamp_path(store):
    return os.path.join(store.base, "built-v%s" % BUILD_VERSION)


def ensure_built(progress=print):
    """`lab up`: build the images once per machine; afterwards a stat of the
    stamp file is all it costs. A machine without podman or the packages
    gets a line of progress, not a failed lab."""
    store = store_mod.machine()
    if os.path.exists(stamp_path(store)):
        return
    try:
        build(store=store, progress=lambda m: progress("images: " + m))
    except (BuildError, store_mod.StoreError, OSError) as e:
        progress("images: not built (%s); pods with images need `podnet image build`" % e)
        return
    with open(stamp_path(store), "w") as f:
        f.write("podnet image build v%s\n" % BUILD_VERSION)
