"""The terminal table, shmring's ratios to the strongest other transport,
the developers' targets with verdicts (--targets), and the plot."""
from typing import Any


def size_name(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n:,} B"


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def peer_name(r):
    """A row's transport, with its mode where it has several."""
    mode = r["mode"].removeprefix("ping-pong ")
    return r["transport"] if mode == "copy" else f"{r['transport']} ({mode})"


def shares_cell(r):
    if r["producers"] == 1 or not r.get("shares"):
        return "-"
    return "∞" if r["share_max_min"] is None else f"{r['share_max_min']:.2f}"


def table(records):
    rows = ["| transport | mode | size | prod. | msgs/s (min-max) | GB/s | CPU s/GB (min-max) "
            "| shares max/min |",
            "|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r["msgs_per_s"] is None:
            continue
        rows.append(
            f"| {r['transport']} | {r['mode']} | {size_name(r['size'])} | {r['producers']} | "
            f"{r['msgs_per_s']:,.0f} ({r['msgs_per_s_min']:,.0f}-{r['msgs_per_s_max']:,.0f}) | "
            f"{r['gb_per_s']:.3f} | {r['cpu_s_per_gb']:.3g} "
            f"({r['cpu_s_per_gb_min']:.3g}-{r['cpu_s_per_gb_max']:.3g}) | {shares_cell(r)} |")
    rows += ["", "64-byte ping-pong, round trip:", "",
             "| transport | mode | p50 us | p99 us | p99.9 us |", "|---|---|---|---|---|"]
    for r in records:
        if r["p50_us"] is not None:
            rows.append(f"| {r['transport']} | {r['mode']} | {r['p50_us']:.1f} | "
                        f"{r['p99_us']:.1f} | {r['p999_us']:.1f} |")
    return "\n".join(rows)


def throughput_rows(records, size, producers):
    return [r for r in records if r["size"] == size and r["producers"] == producers
            and r.get("msgs_per_s") is not None]


def others(rows):
    """The rows of the transports shmring is compared with."""
    return [r for r in rows if r["transport"] != "np.copyto" and not is_shmring(r)]


def is_shmring(r):
    """A row of shmring itself: blocking, awaited (shmring-async), bridged."""
    return r["transport"].startswith("shmring")


def best(rows, key, lower=False):
    """The row with the highest value of key (lowest with lower); None if none."""
    rows = [r for r in rows if r.get(key) is not None]
    if not rows:
        return None
    return (min if lower else max)(rows, key=lambda r: r[key])


def comparisons(records):
    """shmring's rows as ratios to the strongest other transport at the same
    frame size and producer count, naming it."""
    rows = []
    for size, n in sorted({(r["size"], r["producers"]) for r in records if r.get("msgs_per_s")}):
        point = throughput_rows(records, size, n)
        fastest = best(others(point), "msgs_per_s")
        cheapest = best(others(point), "cpu_s_per_gb", lower=True)
        if fastest is not None:
            rows += [f"| {size_name(size)} | {n} | {r['mode']} | "
                     f"{ratio(r, fastest, 'msgs_per_s'):.2f}x {peer_name(fastest)} | "
                     f"{ratio(r, cheapest, 'cpu_s_per_gb'):.2f}x {peer_name(cheapest)} |"
                     for r in point if r["transport"] == "shmring"]
    lat = [r for r in records if r.get("p50_us") is not None]
    quickest = best(others(lat), "p50_us", lower=True)
    lat_rows = [] if quickest is None else [
        f"| {r['mode']} | {ratio(r, quickest, 'p50_us'):.2f}x {peer_name(quickest)} |"
        for r in lat if r["transport"] == "shmring"]
    out = []
    if rows:
        out += ["", "shmring against the strongest other transport at each point "
                "(throughput: above 1 is faster; CPU s/GB: below 1 is cheaper):", "",
                "| size | prod. | shmring | msgs/s vs the fastest other "
                "| CPU s/GB vs the cheapest other |", "|---|---|---|---|---|"] + rows
    if lat_rows:
        out += ["", "| shmring 64-byte ping-pong | p50 vs the quickest other |", "|---|---|"] + lat_rows
    return "\n".join(out)


def checks(extra):
    """The idle CPU and RSS figures, in words."""
    out = [""]
    idle = extra.get("idle")
    if idle:
        out.append(f"Idle CPU over {idle['idle_seconds']:g} s: a consumer waiting in recv() on an "
                   f"empty ring {idle['consumer_spin0_cpu_s'] * 1e3:.2f} ms "
                   f"({idle['consumer_spin200000_cpu_s'] * 1e3:.2f} ms in spin mode), "
                   f"a producer waiting on a full ring {idle['producer_full_cpu_s'] * 1e3:.2f} ms.")
    rss = extra.get("rss")
    if rss:
        out.append(f"Memory over {rss['frames']:,} zero-copy frames: resident size grew by "
                   f"{rss['growth_kb']:,} kB.")
    return "\n".join(out)


def notes(records, cpus):
    """What a reader needs to know to read this run's figures."""
    crowded = sorted({r["producers"] for r in records
                      if cpus and r.get("msgs_per_s") and r["producers"] + 1 > cpus})
    if not crowded:
        return []
    counts = ", ".join(map(str, crowded))
    return [f"rows with {counts} producers run more processes than this machine's {cpus} CPUs: "
            "they take turns on the cores, so those rows (and each producer's share of the "
            "frames) show how the CPU time is shared out, not how a transport scales with "
            "producers; a machine with a core for every process shows that."]


def find(records, transport, mode, size=None, producers=1):
    for r in records:
        if r["transport"] == transport and r["mode"] == mode and r["producers"] == producers \
                and (size is None or r["size"] == size):
            return r
    return None


def strongest(records, transport, key, size=64, producers=1):
    """The best row of one baseline (any of its modes) for key: the highest
    msgs/s or GB/s, the lowest CPU s/GB or p50."""
    rows = [r for r in records if r["transport"] == transport and r["size"] == size
            and r["producers"] == producers]
    return best(rows, key, lower=key in ("cpu_s_per_gb", "p50_us"))


def ratio(a, b, key):
    if a is None or b is None or not b.get(key) or a.get(key) is None:
        return None
    return a[key] / b[key]


BIG = 8_294_400


def targets(records, checks, more=()):
    """The project's speed targets (docs/benchmarks.md), each measured
    against the strongest row of its baseline in this run, with verdicts;
    more: rows of the same shape from elsewhere (aio.target_rows())."""
    def rec(t, m, s=None, p=1):
        return find(records, t, m, s, p)

    rows = []                           # (target, value, op, bound, baseline row)

    def against(name, ours, transport, key, op, bound, size=64, producers=1):
        base = strongest(records, transport, key, size, producers)
        rows.append((name, ratio(ours, base, key), op, bound, base))

    for mode in ("send", "send-nt"):    # the same copy, with plain and with streaming stores
        r = rec("shmring", mode, BIG)
        against(f"8.3 MB {mode} CPU/GB vs websockets", r, "websockets", "cpu_s_per_gb", "<=", 0.1, BIG)
        against(f"8.3 MB {mode} CPU/GB vs socketpair", r, "socketpair", "cpu_s_per_gb", "<=", 0.5, BIG)
        against(f"8.3 MB {mode} GB/s vs np.copyto", r, "np.copyto", "gb_per_s", ">=", 0.5, BIG)
    send = rec("shmring", "send", BIG)
    rows.append(("8.3 MB reserve CPU/GB vs send",
                 ratio(rec("shmring", "reserve", BIG), send, "cpu_s_per_gb"), "<=", 1.0, send))
    for mode, size, bound in (("send", 64, 1.5), ("recv_bytes", 64, 2.5),
                              ("batch", 64, 10), ("nogil", 64, 20),
                              ("send", 4096, 2), ("recv_bytes", 4096, 2)):
        against(f"{size_name(size)} {mode} msgs/s vs os.pipe", rec("shmring", mode, size),
                "os.pipe", "msgs_per_s", ">=", bound, size)
    for mode in ("send", "batch", "nogil"):
        one = rec("shmring", mode, 64)
        rows.append((f"64 B {mode}, 4 producers vs 1", ratio(rec("shmring", mode, 64, 4), one,
                                                            "msgs_per_s"), ">=", 0.7, one))
    for mode, bound in (("send blocking", 0.8), ("send spin", 0.5),
                        ("nogil blocking", 1.0), ("nogil spin", 0.5)):
        against(f"ping-pong p50, {mode} vs os.pipe", rec("shmring", f"ping-pong {mode}"),
                "os.pipe", "p50_us", "<=", bound)
    for size, name in ((1 << 20, "1 MiB"), (BIG, "8.3 MB")):
        sweep = [r for r in records if r["transport"] == "shmring" and r["size"] == size
                 and r["producers"] == 1 and r["mode"].startswith("send, ")]
        burst = next((r for r in sweep if r["capacity"] == 128 << 20), None)
        small = min(sweep, key=lambda r: r["capacity"], default=None)
        rows.append((f"{name} send GB/s, 128 MiB ring vs the smallest for 3 frames",
                     ratio(burst, small, "gb_per_s"), ">=", 0.9, small))
        for n in (1, 4):
            burst = rec("shmring", "send, 128 MiB ring", size, n)
            against(f"{name} send GB/s, 128 MiB ring, {n} prod. vs iceoryx2", burst,
                    "iceoryx2", "gb_per_s", ">=", 1.0, size, n)
            against(f"{name} send CPU/GB, 128 MiB ring, {n} prod. vs iceoryx2", burst,
                    "iceoryx2", "cpu_s_per_gb", "<=", 1.0, size, n)
    many = [r for r in records if r["transport"] == "shmring" and r["size"] == 64
            and r["producers"] == 15 and r.get("msgs_per_s")]
    if many:                            # the many-core target
        top = best(many, "msgs_per_s")
        rows.append((f"64 B, 15 producers, msgs/s ({top['mode']})", top["msgs_per_s"], ">=",
                     2e6, None))
        rows.append((f"64 B, 15 producers, shares max/min ({top['mode']})",
                     top["share_max_min"], "<=", 1.5, None))
    for size, name in ((BIG, "8.3 MB"), (4096, "4 KiB")):
        bridged = rec("shmring", "bridge", size)
        against(f"{name} bridge GB/s vs pyzmq tcp", bridged, "pyzmq tcp",
                "gb_per_s", ">=", 0.8, size)
        against(f"{name} bridge CPU/GB vs pyzmq tcp", bridged, "pyzmq tcp",
                "cpu_s_per_gb", "<=", 1.25, size)
    idle = checks.get("idle")
    if idle:
        for key in ("consumer_spin0_cpu_s", "consumer_spin200000_cpu_s", "producer_full_cpu_s"):
            rows.append((f"idle CPU s over {idle['idle_seconds']:.0f} s, {key[:-6]}",
                         idle[key], "<=", 0.01, None))
    rss = checks.get("rss")
    if rss:
        rows.append((f"RSS growth kB over {rss['frames']:,} zero-copy frames",
                     rss["growth_kb"], "<=", 1024, None))
    rows += more
    out = ["", "Targets (for shmring's developers):", "",
           "| target | measured | bound | verdict | against |", "|---|---|---|---|---|"]
    for name, value, op, bound, base in rows:
        if value is None:
            verdict = "not measured"
        else:
            verdict = "PASS" if (value <= bound if op == "<=" else value >= bound) else "FAIL"
        where = "-" if base is None else peer_name(base)
        out.append(f"| {name} | {fmt(value, '.3g')} | {op} {bound:g} | {verdict} | {where} |")
    return "\n".join(out)


def plot(records, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install 'shmring[bench]')"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    series: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["msgs_per_s"] is not None and r["producers"] == 1 and not r["mode"].endswith(" ring"):
            series.setdefault(f"{r['transport']} {r['mode']}", []).append(r)
    colors = plt.cm.tab20.colors
    for i, (label, rs) in enumerate(series.items()):
        rs.sort(key=lambda r: r["size"])
        sizes = [r["size"] for r in rs]
        ours = label.startswith("shmring")
        style = {"label": label, "marker": "o" if ours else ".", "lw": 2.2 if ours else 1,
                 "ls": "-" if ours else ":" if label.startswith("np.") else "--",
                 "color": "black" if label.startswith("np.") else colors[i % len(colors)]}
        ax1.plot(sizes, [r["gb_per_s"] for r in rs], **style)
        ax2.plot(sizes, [r["cpu_s_per_gb"] for r in rs], **style)
    for ax, title in ((ax1, "throughput, GB/s (1 producer)"),
                      (ax2, "CPU seconds per GB, all processes (1 producer)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("frame size, bytes")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return f"plot written to {path}"
