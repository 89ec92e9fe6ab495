"""Throughput, latency and np.copyto measurements; each returns a record."""
import statistics
import time

import numpy as np

from shmring.bench.harness import cpu_now, run_processes

GB = 1e9


def payload_of(size):
    return np.random.default_rng(size).integers(1, 256, size, dtype=np.uint8).tobytes()


def split(total, producers):
    return [total // producers + (i < total % producers) for i in range(producers)]


def tagged(payload, producers):
    """One payload per producer, its first byte the producer's index."""
    return [bytes([i]) + payload[1:] for i in range(producers)]


def throughput_once(peer, size, producers, total, tally=False):
    """(seconds, CPU seconds) to move total frames of size bytes; with tally,
    how many frames of each producer the consumer had taken when the first
    producer's were all taken (None where the channel cannot count)."""
    ch = peer.channel(producers, size)
    quotas = split(total, producers)
    try:
        if tally and not ch.counts_shares:
            return None
        consumer = (ch.consumer, ch.tally, quotas) if tally else (ch.consumer, ch.drain, total)
        makers = [(lambda i=i: ch.producer(i), ch.fill, (n, payload))
                  for i, (n, payload) in enumerate(zip(quotas, tagged(payload_of(size), producers)))] + \
                 ch.helpers(total)
        seconds, cpu, outs = run_processes(consumer, makers)
    finally:
        ch.close()
    return outs["consumer"] if tally else (seconds, cpu)


def copyto_once(size, total):
    """The physical limit: np.copyto of the same bytes inside one process."""
    src = np.frombuffer(payload_of(size), dtype=np.uint8)
    dst = np.empty_like(src)
    t0, c0 = time.perf_counter(), cpu_now()
    for _ in range(total):
        np.copyto(dst, src)
    return time.perf_counter() - t0, cpu_now() - c0


def throughput(peer, size, producers, reps, seconds):
    """Median, min and max over reps, after a warm-up run that also sizes the
    frame count so each repetition takes about `seconds`.  With several
    producers, one more run counts each producer's share of the frames."""
    def once(total):
        if peer is None:
            return copyto_once(size, total)
        return throughput_once(peer, size, producers, total)

    warm = max(producers * 4, min(20000, (32 << 20) // size))
    t, _ = once(warm)
    floor = max(producers * 8, peer.min_frames(size) if peer else 0)
    total = int(min(5_000_000, max(floor, warm * seconds / max(t, 1e-6))))
    runs = [once(total) for _ in range(reps)]
    rates = sorted(total / t for t, _ in runs)
    cpus = sorted(c / (total * size / GB) for _, c in runs)
    med = statistics.median(rates)
    shares = None
    if peer is not None and producers > 1:
        shares = throughput_once(peer, size, producers, total, tally=True)
    return {
        "msgs_per_s": med, "msgs_per_s_min": rates[0], "msgs_per_s_max": rates[-1],
        "gb_per_s": med * size / GB,
        "cpu_s_per_gb": statistics.median(cpus), "cpu_s_per_gb_min": cpus[0],
        "cpu_s_per_gb_max": cpus[-1], "frames": total, "reps": reps,
        "shares": shares, "share_max_min": share_ratio(shares),
    }


def share_ratio(shares):
    """The largest producer share over the smallest; None if one had none."""
    if not shares or not min(shares):
        return None
    return max(shares) / min(shares)


def latency(peer, size, pings):
    """Round-trip times of a ping-pong: percentiles in microseconds."""
    dx = peer.duplex(size)
    try:
        _, _, outs = run_processes((dx.echo_setup, dx.echo, pings),
                                   [(dx.ping_setup, dx.ping, (pings, payload_of(size)))])
    finally:
        dx.close()
    times = sorted(outs["producer"])

    def pct(q):
        return times[min(len(times) - 1, int(q * len(times)))] / 1000

    return {"p50_us": pct(0.5), "p99_us": pct(0.99), "p999_us": pct(0.999), "pings": pings}
