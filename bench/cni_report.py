"""bench/cni.py's arithmetic and its printed report (pure: numbers in, text out)."""

import os
import platform
import statistics


def p50(xs):
    return statistics.median(xs)


def p95(xs):  # nearest rank
    s = sorted(xs)
    return s[max(0, -(-95 * len(s) // 100) - 1)]


def kernel_floor(k):
    """Median over pods of the least a DEL can cost: a compiled program's
    exec (the same shape as the plugins' execs) plus the kernel's whole DEL
    work (the veth, and the map element with ipMasq), each pod's parts summed
    first."""
    unmasq = k["unmasq"] or [0.0] * len(k["del"])
    return p50([a + b + c for a, b, c in zip(k["exec"], k["del"], unmasq, strict=True)])


def report(data, args):
    def ms(s):
        return "%.1f" % (s * 1e3)

    fl = data["floors"]
    print(
        "\nCNI plugin exec latency: %d sequential pods, %d ADDs %d at a time, %d warm-up cycles; %s, %d CPUs"
        % (args.pods, args.pods, args.parallel, data["warmup"], platform.release(), os.cpu_count())
    )
    head = ("system", "ipMasq", "ADD p50", "ADD p95", "DEL p50", "DEL p95", "par ADD wall")
    rows = [head, ("", "", "ms", "ms", "ms", "ms", "s")]
    for masq in ("false", "true"):
        for name in data["systems"]:
            r = data["results"][name][masq]
            rows.append(
                (
                    name,
                    masq,
                    ms(p50(r["add"])),
                    ms(p95(r["add"])),
                    ms(p50(r["del"])),
                    ms(p95(r["del"])),
                    "%.2f" % r["par_add_wall"],
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for n, row in enumerate(rows):
        print(
            "  "
            + "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False)))
        )
        if n == 1:
            print("  " + "  ".join("-" * w for w in widths))
    print(
        "\nDEL = floor + the plugin's own time. The floor, per pod: a compiled no-op's exec (/bin/true, run as"
        "\nthe plugins are) + the netlink delete of a veth pair like the plugin's (+ with ipMasq the netlink"
        "\ndelete of a map element like the plugin's), each timed alone"
    )
    for masq in ("false", "true"):
        k = data["results"]["kernel"][masq]
        floor = kernel_floor(k)
        note = "exec %s + veth %s" % (ms(p50(k["exec"])), ms(p50(k["del"])))
        if k["unmasq"]:
            note += " + element %s" % ms(p50(k["unmasq"]))
        print("  ipMasq %-5s floor p50 %s ms (%s)" % (masq, ms(floor), note))
        for name in data["systems"]:
            d = p50(data["results"][name][masq]["del"])
            print("    %-13s DEL p50 %6s ms = floor %5s ms + own %5s ms" % (name, ms(d), ms(floor), ms(d - floor)))
    print("\nratios (< 1: podnet faster)          ADD p50   DEL p50   par ADD wall")
    for masq in ("false", "true"):
        for name in ("podnet-daemon", "podnet-inproc"):
            q = data["ratios"][name][masq]
            print(
                "  %-13s / reference  ipMasq %-5s  %5.2f     %5.2f     %5.2f"
                % (name, masq, q["add_p50"], q["del_p50"], q["par_add_wall"])
            )
    print(
        "\ntarget (daemon mode): ADD p50 <= 0.75 x reference, DEL p50 <= floor + %.0f ms,"
        " %d ADDs %d at a time <= 0.75 x reference" % (data["del_margin"] * 1e3, args.pods, args.parallel)
    )
    for masq in ("false", "true"):
        q = data["ratios"]["podnet-daemon"][masq]
        own = p50(data["results"]["podnet-daemon"][masq]["del"]) - kernel_floor(data["results"]["kernel"][masq])
        ok = q["add_p50"] <= 0.75 and own <= data["del_margin"] and q["par_add_wall"] <= 0.75
        print(
            "  ipMasq %-5s: ADD %.2f, DEL floor + %s ms, parallel ADD %.2f -> %s"
            % (masq, q["add_p50"], ms(own), q["par_add_wall"], "met" if ok else "NOT met")
        )
        # The floor's exec is sampled right after a veth delete, as the plugins'
        # are; the quiet figure below (floors section) is often lower: say both.
        k = data["results"]["kernel"][masq]
        quiet = dict(k, exec=[fl["noop_exec"]] * len(k["exec"]))
        own_quiet = p50(data["results"]["podnet-daemon"][masq]["del"]) - kernel_floor(quiet)
        print("                 (DEL floor + %s ms with the floors section's /bin/true as the exec)" % ms(own_quiet))
    print("\nfloors (median of %d execs):" % data["floor_runs"])
    print("  %-56s %6s ms" % ("/bin/true (a compiled program's exec)", ms(fl["noop_exec"])))
    print("  %-56s %6s ms" % ("%s -IS -c pass (plugin interpreter start)" % fl["python"], ms(fl["python_start"])))
    front = "compiled forwarder" if fl["native"] else "Python thin exe (no forwarder built)"
    print("  %-56s %6s ms" % ("podnet VERSION via daemon (%s + socket)" % front, ms(fl["podnet_version_daemon"])))
    print(
        "  %-56s %6s ms"
        % ("podnet VERSION via daemon (Python thin script + socket)", ms(fl["podnet_version_daemon_python"]))
    )
    print("  %-56s %6s ms" % ("podnet VERSION in-process (no daemonSocket)", ms(fl["podnet_version_inproc"])))
    print("  %-56s %6s ms" % ("Go bridge VERSION", ms(fl["ref_version"])))
    print(
        "\ntotal run time %.1f s; load average at start %.2f, at end %.2f (others' work skews every figure)"
        % (data["total_seconds"], data["loadavg_start"], data["loadavg_end"])
    )
