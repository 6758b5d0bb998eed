"""`podnet image build|ls|import`: the machine's image store, which every lab
sees (podnet.image.store): images built from Debian packages for offline
labs, and OCI or docker-archive tarballs loaded with `podman load`."""

import sys
import time


def add_parsers(sub):
    p = sub.add_parser("image", help="container images of this machine: build, ls, import")
    p.set_defaults(image_run=run)
    isub = p.add_subparsers(dest="image_cmd", required=True)
    b = isub.add_parser("build", help="make busybox and nginx images from the machine's Debian packages")
    b.add_argument("names", nargs="*", help="busybox, nginx (default: all)")
    b.add_argument("--force", action="store_true", help="rebuild even when up to date")
    isub.add_parser("ls", help="the images: name, where each came from, size")
    i = isub.add_parser("import", help="load an OCI or docker-archive tarball (podman load)")
    i.add_argument("file")


def human(size):
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (size, unit)
        size /= 1000.0
    return str(size)


def source_of(image):
    """Where an image came from, in words."""
    labels = image.get("labels") or {}
    from podnet.image import build

    if labels.get(build.SOURCE_LABEL):
        return "built from " + labels[build.SOURCE_LABEL]
    return "imported or pulled"


def run(args):
    from podnet.image import build, store

    try:
        if args.image_cmd == "build":
            t0 = time.monotonic()
            build.build(args.names or None, force=args.force, progress=lambda m: print(m, flush=True))
            print("done in %.1fs" % (time.monotonic() - t0))
            return 0
        if args.image_cmd == "ls":
            rows = [("NAME", "ID", "SIZE", "SOURCE")]
            for img in sorted(store.machine().images(), key=lambda i: i["name"]):
                rows.append((img["name"], img["id"], human(img["size"]), source_of(img)))
            widths = [max(len(r[i]) for r in rows) for i in range(3)]
            for r in rows:
                print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
            return 0
        if args.image_cmd == "import":
            for name in store.machine().load(args.file):
                print("imported %s" % name)
            return 0
    except (store.StoreError, build.BuildError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 2
