/* podnet-cni: the compiled CNI entry point, one program for the three plugins
 * (podnet, podnet-ipam, podnet-portmap; the name is the executable's own).
 *
 * A runtime execs a plugin for every ADD and DEL, so the exec is on every
 * pod's critical path, and a Python interpreter's start alone costs more than
 * the Go reference plugin's whole call. This program does only the fast path
 * of podnet/cni/thin.py: read stdin, find the top-level "daemonSocket" string
 * the way thin.find_string_field does, send the call to `podnet cni serve` in
 * thin.py's wire format, and relay the daemon's exit code, stdout and stderr.
 *
 * Every other case (no daemonSocket, a value with an escape or anything the
 * byte scan cannot be sure of, nobody listening, any unexpected error before
 * the request is sent) execs the Python thin script installed beside it
 * (.podnet-thin/<plugin>), with the stdin bytes already read handed over as a
 * memfd on fd 0: the in-process fallback, STATUS's error 50 and their messages
 * stay the Python's, so there is one implementation of each behaviour.
 *
 * Wire format (see thin.py):
 *   request:  "PNCNI1\0" plugin "\0" (KEY=VALUE "\0")* "\0" stdin-bytes
 *   response: "<rc>\0<len(stdout)>\0" stdout-bytes stderr-bytes
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "PNCNI1"          /* followed by its NUL: 7 bytes on the wire */
#define THIN_DIR ".podnet-thin" /* the Python scripts, beside this binary */
#define TIMEOUT_S 120           /* thin.call_daemon's socket timeout */
#define CONNECT_TRIES 200       /* thin.call_daemon's back-off on a full backlog */

static const char *const PLUGINS[] = {"podnet", "podnet-ipam", "podnet-portmap", NULL};
/* thin.FORWARDED_ENV, in its order */
static const char *const FORWARDED_ENV[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME",
                                            "CNI_ARGS",    "CNI_PATH",        "PODNET_LOG", NULL};

struct buf {
    char *data;
    size_t len, cap;
};

static const char *plugin_name;
static char self_dir[PATH_MAX];

static void die(const char *what) {
    /* Only after the request went out: the call may have happened, so a
     * fallback could run it twice. The Python client fails the same way
     * (an exception, exit 1). */
    fprintf(stderr, "podnet-cni %s: %s: %s\n", plugin_name ? plugin_name : "?", what, strerror(errno));
    exit(1);
}

static int grow(struct buf *b, size_t need) {
    if (b->cap - b->len >= need) return 0;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap - b->len < need) {
        if (cap > SIZE_MAX / 2) {
            errno = ENOMEM;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static int append(struct buf *b, const void *p, size_t n) {
    if (grow(b, n) < 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* Everything until EOF; -1 with errno on a read error. */
static int read_all(int fd, struct buf *b) {
    for (;;) {
        if (grow(b, 65536) < 0) return -1;
        ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
        if (n > 0) {
            b->len += (size_t)n;
        } else if (n == 0) {
            return 0;
        } else if (errno != EINTR) {
            return -1;
        }
    }
}

static int write_all(int fd, const char *p, size_t n, int is_socket) {
    while (n > 0) {
        /* MSG_NOSIGNAL: a daemon that went away is an error to report, not SIGPIPE */
        ssize_t w = is_socket ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Run the Python thin script with `in` as its stdin; returns only if that
 * cannot be done at all. */
static void fallback(const struct buf *in) {
    char script[PATH_MAX];
    if (snprintf(script, sizeof script, "%s/%s/%s", self_dir, THIN_DIR, plugin_name) >= (int)sizeof script) {
        errno = ENAMETOOLONG;
        die("the Python thin script's path");
    }
    int fd = memfd_create("podnet-cni-stdin", MFD_CLOEXEC);
    if (fd < 0) fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) die("a file for the fallback's stdin");
    if (write_all(fd, in->data, in->len, 0) < 0) die("writing the fallback's stdin");
    if (lseek(fd, 0, SEEK_SET) < 0) die("rewinding the fallback's stdin");
    if (dup2(fd, 0) < 0) die("handing stdin to the fallback"); /* fd 0 is not close-on-exec */
    close(fd);
    char *argv[] = {script, NULL};
    execv(script, argv);
    fprintf(stderr, "podnet-cni %s: exec %s: %s\n", plugin_name, script, strerror(errno));
    exit(1);
}

/* thin.find_string_field(raw, "daemonSocket"), byte for byte: the key must
 * occur once; whitespace, ':', whitespace, '"', then the value up to the next
 * '"'. Returns 1 with the value in *out (NUL-terminated, in buf `val`) when it
 * is certain; 0 when there is none or when only Python can decide (an escape,
 * a byte that is not printable ASCII: thin decodes UTF-8 with "replace"). */
static int find_socket(const struct buf *in, char *out, size_t outsz) {
    static const char key[] = "\"daemonSocket\"";
    const size_t klen = sizeof key - 1;
    const char *raw = in->data, *end = in->data + in->len;
    const char *at = memmem(raw, in->len, key, klen);
    if (!at) return 0;
    if (memmem(at + 1, (size_t)(end - at - 1), key, klen)) return 0;
    const char *p = at + klen;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    if (p >= end || *p != ':') return 0;
    p++;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    if (p >= end || *p != '"') return 0;
    p++;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q || q == p || (size_t)(q - p) >= outsz) return 0;
    for (const char *c = p; c < q; c++)
        if (*c == '\\' || (unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) return 0;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return 1;
}

/* Our own name and directory, from /proc/self/exe (symlinks resolved, so a
 * link to us from another bin dir still finds the thin scripts); argv[0]
 * when that is unreadable. */
static int find_self(const char *argv0) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        size_t len = (size_t)n;
        static const char deleted[] = " (deleted)"; /* replaced by a new install while we run */
        if (len > sizeof deleted - 1 && strcmp(exe + len - (sizeof deleted - 1), deleted) == 0)
            exe[len - (sizeof deleted - 1)] = '\0';
    } else if (strlen(argv0) < sizeof exe && strchr(argv0, '/')) {
        strcpy(exe, argv0);
    } else {
        return -1;
    }
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = '\0';
    strcpy(self_dir, exe[0] ? exe : "/");
    for (int i = 0; PLUGINS[i]; i++)
        if (strcmp(slash + 1, PLUGINS[i]) == 0) plugin_name = PLUGINS[i];
    if (!plugin_name) { /* a copy under another name: trust argv[0]'s basename */
        const char *base = strrchr(argv0, '/');
        base = base ? base + 1 : argv0;
        for (int i = 0; PLUGINS[i]; i++)
            if (strcmp(base, PLUGINS[i]) == 0) plugin_name = PLUGINS[i];
    }
    return plugin_name ? 0 : -1;
}

/* Connected socket; -1 when the fallback should decide (nobody listens, or
 * anything else the Python client would report in its own way). */
static int connect_daemon(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) return -1;
    strcpy(sa.sun_path, path);
    /* Non-blocking connect: a full backlog answers EAGAIN at once (as in
     * thin.call_daemon, where the socket timeout makes it non-blocking). */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    for (int attempt = 0;; attempt++) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) break;
        if (errno == EINTR) continue;
        if (errno != EAGAIN || attempt + 1 >= CONNECT_TRIES) {
            close(fd);
            return -1;
        }
        int ms = 10 * (attempt + 1 < 10 ? attempt + 1 : 10);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
    int flags = fcntl(fd, F_GETFL);
    struct timeval tv = {.tv_sec = TIMEOUT_S};
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* "<digits>\0" at *p; advances past the NUL. */
static int parse_num(const char **p, const char *end, long long *out) {
    const char *s = *p;
    long long v = 0;
    int neg = 0;
    if (s < end && *s == '-') {
        neg = 1;
        s++;
    }
    const char *digits = s;
    while (s < end && *s >= '0' && *s <= '9') {
        if (v > (LLONG_MAX - 9) / 10) return -1;
        v = v * 10 + (*s++ - '0');
    }
    if (s == digits || s >= end || *s != '\0') return -1;
    *out = neg ? -v : v;
    *p = s + 1;
    return 0;
}

int main(int argc, char **argv) {
    (void)argc;
    struct buf in = {0};
    if (read_all(0, &in) < 0) {
        /* Let Python meet the same stdin: hand over what was read (likely nothing). */
        if (find_self(argv[0]) < 0) die("reading stdin");
        fallback(&in);
    }
    if (find_self(argv[0]) < 0) {
        fprintf(stderr, "podnet-cni: cannot tell which plugin this is (%s): install with 'podnet cni install'\n",
                argv[0]);
        return 1;
    }
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (!find_socket(&in, path, sizeof path)) fallback(&in);
    int fd = connect_daemon(path);
    if (fd < 0) fallback(&in);

    struct buf req = {0};
    if (append(&req, MAGIC, sizeof MAGIC) < 0 || append(&req, plugin_name, strlen(plugin_name) + 1) < 0)
        die("building the request");
    for (int i = 0; FORWARDED_ENV[i]; i++) {
        const char *v = getenv(FORWARDED_ENV[i]);
        if (!v) continue;
        size_t k = strlen(FORWARDED_ENV[i]);
        if (append(&req, FORWARDED_ENV[i], k) < 0 || append(&req, "=", 1) < 0 || append(&req, v, strlen(v) + 1) < 0)
            die("building the request");
    }
    if (append(&req, "", 1) < 0) die("building the request");
    /* Header and stdin in two writes: stdin may be large (prevResult), no copy. */
    if (write_all(fd, req.data, req.len, 1) < 0 || write_all(fd, in.data, in.len, 1) < 0)
        die("sending the call to the podnet daemon");
    if (shutdown(fd, SHUT_WR) < 0) die("half-closing the daemon socket");
    struct buf reply = {0};
    if (read_all(fd, &reply) < 0) die("reading the podnet daemon's answer");
    close(fd);

    const char *p = reply.data, *end = reply.data + reply.len;
    long long rc, outlen;
    if (!p || parse_num(&p, end, &rc) < 0 || parse_num(&p, end, &outlen) < 0 || outlen < 0 ||
        outlen > end - p) {
        fprintf(stderr, "podnet-cni %s: malformed answer from the podnet daemon at %s (%zu bytes)\n", plugin_name,
                path, reply.len);
        return 1;
    }
    if (write_all(1, p, (size_t)outlen, 0) < 0) die("writing stdout");
    if (write_all(2, p + outlen, (size_t)(end - p - outlen), 0) < 0) die("writing stderr");
    return (int)(rc & 0xff);
}
