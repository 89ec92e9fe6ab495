"""The terminal table, the issue's targets as measured ratios, and the plot."""
from typing import Any


def size_name(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n:,} B"


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def table(records):
    rows = ["| transport | mode | size | prod. | msgs/s (min-max) | GB/s | CPU s/GB (min-max) |",
            "|---|---|---|---|---|---|---|"]
    for r in records:
        if r["msgs_per_s"] is None:
            continue
        rows.append(
            f"| {r['transport']} | {r['mode']} | {size_name(r['size'])} | {r['producers']} | "
            f"{r['msgs_per_s']:,.0f} ({r['msgs_per_s_min']:,.0f}-{r['msgs_per_s_max']:,.0f}) | "
            f"{r['gb_per_s']:.3f} | {r['cpu_s_per_gb']:.3g} "
            f"({r['cpu_s_per_gb_min']:.3g}-{r['cpu_s_per_gb_max']:.3g}) |")
    rows += ["", "64-byte ping-pong, round trip:", "",
             "| transport | mode | p50 us | p99 us | p99.9 us |", "|---|---|---|---|---|"]
    for r in records:
        if r["p50_us"] is not None:
            rows.append(f"| {r['transport']} | {r['mode']} | {r['p50_us']:.1f} | "
                        f"{r['p99_us']:.1f} | {r['p999_us']:.1f} |")
    return "\n".join(rows)


def find(records, transport, mode, size=None, producers=1):
    for r in records:
        if r["transport"] == transport and r["mode"] == mode and r["producers"] == producers \
                and (size is None or r["size"] == size):
            return r
    return None


def ratio(a, b, key):
    if a is None or b is None or not b.get(key) or a.get(key) is None:
        return None
    return a[key] / b[key]


def targets(records, checks):
    """Each target of issue 4: the measured ratio, the bound, and the verdict."""
    big = 8_294_400
    def rec(t, m, s=None, p=1):
        return find(records, t, m, s, p)
    send = rec("shmring", "send", big)
    rows = []
    for mode in ("send", "send-nt"):    # the same copy, with plain and with streaming stores
        r = rec("shmring", mode, big)
        rows += [
            (f"8.3 MB {mode} CPU/GB vs websockets", ratio(r, rec("websockets", "copy", big),
                                                          "cpu_s_per_gb"), "<=", 0.1),
            (f"8.3 MB {mode} CPU/GB vs socketpair", ratio(r, rec("socketpair", "copy", big),
                                                          "cpu_s_per_gb"), "<=", 0.5),
            (f"8.3 MB {mode} GB/s vs np.copyto", ratio(r, rec("np.copyto", "limit", big),
                                                       "gb_per_s"), ">=", 0.5),
        ]
    rows.append(("8.3 MB reserve CPU/GB vs send", ratio(rec("shmring", "reserve", big), send,
                                                        "cpu_s_per_gb"), "<=", 1.0))
    pipe = rec("os.pipe", "copy", 64)
    for mode, least in (("send", 2), ("batch", 10), ("nogil", 20)):
        rows.append((f"64 B {mode} msgs/s vs os.pipe",
                     ratio(rec("shmring", mode, 64), pipe, "msgs_per_s"), ">=", least))
    for mode in ("send", "batch", "nogil"):
        rows.append((f"64 B {mode}, 4 producers vs 1",
                     ratio(rec("shmring", mode, 64, 4), rec("shmring", mode, 64),
                           "msgs_per_s"), ">=", 0.7))
    pipe_lat = rec("os.pipe", "ping-pong")
    for api in ("send", "nogil"):
        rows.append((f"ping-pong p50, {api} blocking vs os.pipe",
                     ratio(rec("shmring", f"ping-pong {api} blocking"), pipe_lat, "p50_us"),
                     "<=", 1.0))
        rows.append((f"ping-pong p50, {api} spin vs os.pipe",
                     ratio(rec("shmring", f"ping-pong {api} spin"), pipe_lat, "p50_us"),
                     "<=", 0.5))
    idle = checks.get("idle")
    if idle:
        for key in ("consumer_spin0_cpu_s", "consumer_spin200000_cpu_s", "producer_full_cpu_s"):
            rows.append((f"idle CPU s over {idle['idle_seconds']:.0f} s, {key[:-6]}",
                         idle[key], "<=", 0.01))
    rss = checks.get("rss")
    if rss:
        rows.append((f"RSS growth kB over {rss['frames']:,} zero-copy frames",
                     rss["growth_kb"], "<=", 1024))
    return verdicts(rows)


def verdicts(rows):
    """The targets table: rows of (name, measured value or None, "<=" or ">=", bound)."""
    out = ["| target | measured | bound | verdict |", "|---|---|---|---|"]
    for name, value, op, bound in rows:
        if value is None:
            verdict = "not measured"
        else:
            verdict = "PASS" if (value <= bound if op == "<=" else value >= bound) else "FAIL"
        out.append(f"| {name} | {fmt(value, '.3g')} | {op} {bound:g} | {verdict} |")
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
        if r["msgs_per_s"] is not None and r["producers"] == 1:
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
