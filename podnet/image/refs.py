"""Image references and the kubelet's rules about them, as pure functions.

- `parse`: Docker's reference grammar ("nginx" -> docker.io/library/nginx:latest),
  so `image: nginx`, `nginx:latest` and `docker.io/library/nginx` name one image;
- `default_pull_policy`: Always for :latest or no tag, else IfNotPresent;
- `container_argv`: Kubernetes' command/args against the image's ENTRYPOINT/CMD;
- `is_host_program`: the reserved image `podnet.io/host` (never pulled) whose
  `command` is a program of the machine.
"""

import re
from typing import NamedTuple

HOST_IMAGE = "podnet.io/host"
DEFAULT_DOMAIN = "docker.io"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?$")


class InvalidImageName(ValueError):
    """The image reference does not parse (kubelet's InvalidImageName)."""


class Ref(NamedTuple):
    domain: str
    path: str  # "library/nginx"
    tag: str  # "" when a digest alone pins it
    digest: str

    @property
    def name(self):
        """The fully qualified reference podman is given."""
        out = "%s/%s" % (self.domain, self.path)
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    @property
    def repository(self):
        return "%s/%s" % (self.domain, self.path)


def parse(image):
    """'nginx' -> Ref(docker.io, library/nginx, latest, ''). InvalidImageName
    (naming what is wrong) for anything Docker's grammar refuses."""
    text = (image or "").strip()
    if not text:
        raise InvalidImageName("image name is empty")
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidImageName("invalid digest %r in image %r" % (digest, text))
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidImageName("invalid tag %r in image %r" % (tag, text))
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
        if not _DOMAIN.match(domain):
            raise InvalidImageName("invalid registry %r in image %r" % (domain, text))
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    for part in path.split("/"):
        if not _COMPONENT.match(part):
            raise InvalidImageName(
                "invalid reference format: repository name %r in image %r must be lowercase "
                "letters, digits and separators" % (path, text)
            )
    if len(domain) + len(path) + 1 > 255:
        raise InvalidImageName("repository name of image %r is longer than 255 characters" % text)
    if not tag and not digest:
        tag = "latest"
    return Ref(domain, path, tag, digest)


def default_pull_policy(image):
    """Kubernetes' default: Always for :latest or no tag (and no digest), else IfNotPresent."""
    text = (image or "").strip()
    rest = text.split("@", 1)[0]
    if "@" in text:
        return "IfNotPresent"
    slash, colon = rest.rfind("/"), rest.rfind(":")
    tag = rest[colon + 1 :] if colon > slash else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def pull_policy(spec):
    """The container's imagePullPolicy, or the default for its image."""
    policy = (spec or {}).get("imagePullPolicy") or default_pull_policy((spec or {}).get("image"))
    if policy not in PULL_POLICIES:
        raise ValueError("imagePullPolicy must be one of %s, not %r" % (", ".join(PULL_POLICIES), policy))
    return policy


def plain_http_ok(domain):
    """A registry on localhost or a private address (a lab's own, like the
    external host's) may be plain HTTP, as containerd's and podman's
    configs usually allow; every other registry must speak TLS."""
    import ipaddress

    host = domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return addr.is_private or addr.is_loopback


def is_host_program(image):
    """The reserved image name: the container's command is a program of the machine."""
    return (image or "").strip().split(":", 1)[0] == HOST_IMAGE


def container_argv(command, args, entrypoint, cmd):
    """What a container runs, as Kubernetes defines it:

    command and args given  -> command + args (the image's ENTRYPOINT and CMD ignored)
    command only            -> command (the image's CMD ignored too)
    args only               -> ENTRYPOINT + args
    neither                 -> ENTRYPOINT + CMD
    """
    command, args = list(command or []), list(args or [])
    if command:
        return command + args
    if args:
        return list(entrypoint or []) + args
    return list(entrypoint or []) + list(cmd or [])


def should_pull(policy, present, reachable):
    """-> 'pull', 'local' or an error reason (ErrImageNeverPull, ErrImagePull).

    Always pulls when a registry is reachable; offline the local store
    serves (the labs have no registry: an image built or imported here is
    what there is). IfNotPresent pulls only what is missing; Never never pulls."""
    if policy == "Never":
        return "local" if present else "ErrImageNeverPull"
    if reachable and (policy == "Always" or not present):
        return "pull"
    return "local" if present else "ErrImagePull"
