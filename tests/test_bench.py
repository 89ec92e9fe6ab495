"""The benchmark's plumbing (not its speed): records, skips, baselines,
shares, targets and what a user sees."""
import argparse
import json
import os
import re
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import shmring
from shmring import bench
from shmring.bench import channel, checks, measure, peers, report, rings, streams


def parse(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


class Absent(peers.Peer):
    name = "absent"
    needs = ("no_such_module_for_shmring_bench",)


def tiny_run(tmp_path, monkeypatch, capsys, *extra):
    """A run of os.pipe both ways and shmring send, 1 and 2 producers, on a
    machine said to have 2 CPUs; returns (printed, records)."""
    monkeypatch.setattr(bench, "lineup", lambda: [
        Absent(), streams.Pipe(), streams.Pipe(buffered=False), rings.Shmring("send")])
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    out = tmp_path / "bench.json"
    args = parse("--sizes", "64", "--producers", "1,2", "--reps", "2", "--seconds", "0.02",
                 "--no-checks", "--json", str(out), *extra)
    assert bench.run(args) == 0
    return capsys.readouterr().out, json.loads(out.read_text())


def test_tiny_run_writes_records_and_shows_comparisons_not_verdicts(tmp_path, monkeypatch, capsys):
    printed, records = tiny_run(tmp_path, monkeypatch, capsys)
    assert printed.count("no_such_module_for_shmring_bench not importable") == 1
    assert printed.count("run more processes than this machine's 2 CPUs") == 1
    got = {(r["transport"], r["mode"], r["producers"]) for r in records}
    assert {("os.pipe", "copy, buffered", 2), ("os.pipe", "copy, 2 syscalls", 2),
            ("shmring", "send", 2), ("np.copyto", "limit", 1),
            ("os.pipe", "ping-pong copy, buffered", 1), ("os.pipe", "ping-pong copy, 2 syscalls", 1),
            ("shmring", "ping-pong send spin", 1)} <= got
    for r in records:
        assert set(r) >= {"transport", "mode", "size", "producers", "msgs_per_s", "gb_per_s",
                          "cpu_s_per_gb", "p50_us", "p99_us"}
        if r["msgs_per_s"] is not None:
            assert r["msgs_per_s_min"] <= r["msgs_per_s"] <= r["msgs_per_s_max"]
            assert r["cpu_s_per_gb"] > 0
        else:
            assert 0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"]
        if r["transport"] == "shmring" and r["msgs_per_s"] is not None:
            assert r["capacity"] == rings.capacity_for(64)
        if r["producers"] == 2 and r["transport"] != "np.copyto":
            # each producer sent its half; the count stops when one had all of its frames taken
            quotas = measure.split(r["frames"], 2)
            assert len(r["shares"]) == 2 and sum(r["shares"]) <= r["frames"]
            assert r["shares"][0] == quotas[0] or r["shares"][1] == quotas[1]
            if min(r["shares"]):
                assert r["share_max_min"] == max(r["shares"]) / min(r["shares"])
    assert "| shmring | send | 64 B | 2 |" in printed
    # the user's output: ratios naming the strongest other transport, no verdicts
    fastest = max((r for r in records if r["transport"] == "os.pipe" and r["size"] == 64
                   and r["producers"] == 1 and r["msgs_per_s"]), key=lambda r: r["msgs_per_s"])
    send = next(r for r in records if (r["transport"], r["mode"], r["producers"], r["size"])
                == ("shmring", "send", 1, 64))
    assert (f"| 64 B | 1 | send | {send['msgs_per_s'] / fastest['msgs_per_s']:.2f}x "
            f"{report.peer_name(fastest)} |") in printed
    for word in ("PASS", "FAIL", "verdict", "target", "issue"):
        assert word not in printed


def test_targets_flag_adds_verdicts(tmp_path, monkeypatch, capsys):
    printed, _ = tiny_run(tmp_path, monkeypatch, capsys, "--targets")
    assert "| target | measured | bound | verdict | against |" in printed
    assert "| 64 B send msgs/s vs os.pipe |" in printed
    assert "PASS" in printed or "FAIL" in printed


def rec(transport, mode, size=64, producers=1, **figures):
    return {"transport": transport, "mode": mode, "size": size, "producers": producers,
            "msgs_per_s": None, "cpu_s_per_gb": None, "gb_per_s": None, "p50_us": None,
            **figures}


def target_row(text, name):
    rows = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 1, (name, rows)
    return rows[0]


def test_targets_take_the_strongest_row_of_each_baseline():
    big = 8_294_400
    recs = [
        rec("os.pipe", "copy, buffered", msgs_per_s=300),
        rec("os.pipe", "copy, 2 syscalls", msgs_per_s=100),
        rec("shmring", "send", msgs_per_s=500),
        rec("shmring", "recv_bytes", msgs_per_s=600),
        rec("socketpair", "copy, buffered", big, cpu_s_per_gb=2.0),
        rec("socketpair", "copy, 2 syscalls", big, cpu_s_per_gb=1.0),
        rec("shmring", "send-nt", big, cpu_s_per_gb=0.4),
        rec("os.pipe", "ping-pong copy, buffered", p50_us=20.0),
        rec("os.pipe", "ping-pong copy, 2 syscalls", p50_us=10.0),
        rec("shmring", "ping-pong send blocking", p50_us=9.0),
    ]
    text = report.targets(recs, {})
    # faster pipe row (300, not 100); cheaper socketpair row (1.0, not 2.0); quicker pipe p50
    assert target_row(text, "64 B send msgs/s vs os.pipe").endswith(
        "| 1.67 | >= 1.5 | PASS | os.pipe (copy, buffered) |")
    assert target_row(text, "64 B recv_bytes msgs/s vs os.pipe").endswith(
        "| 2 | >= 2.5 | FAIL | os.pipe (copy, buffered) |")
    assert target_row(text, "8.3 MB send-nt CPU/GB vs socketpair").endswith(
        "| 0.4 | <= 0.5 | PASS | socketpair (copy, 2 syscalls) |")
    assert "| 8.3 MB send CPU/GB vs socketpair | - | <= 0.5 | not measured |" in text
    assert "| 64 B nogil msgs/s vs os.pipe | - | >= 20 | not measured |" in text
    assert "| ping-pong p50, send blocking vs os.pipe | 0.9 | <= 0.8 | FAIL | os.pipe (copy, 2 syscalls) |" \
        in text


def test_capacity_targets_compare_the_sweep_and_iceoryx2():
    mib = 1 << 20
    recs = [rec("shmring", f"send, {c} MiB ring", mib, gb_per_s=g, capacity=c * mib)
            for c, g in ((4, 10.0), (8, 9.5), (128, 8.0))]
    recs += [rec("shmring", "send, 128 MiB ring", mib, 4, gb_per_s=9.0, cpu_s_per_gb=0.1),
             rec("iceoryx2", "copy", mib, 4, gb_per_s=12.0, cpu_s_per_gb=0.08)]
    text = report.targets(recs, {})
    assert target_row(text, "1 MiB send GB/s, 128 MiB ring vs the smallest for 3 frames").endswith(
        "| 0.8 | >= 0.9 | FAIL | shmring (send, 4 MiB ring) |")
    assert target_row(text, "1 MiB send GB/s, 128 MiB ring, 4 prod. vs iceoryx2").endswith(
        "| 0.75 | >= 1 | FAIL | iceoryx2 |")
    assert target_row(text, "1 MiB send CPU/GB, 128 MiB ring, 4 prod. vs iceoryx2").endswith(
        "| 1.25 | <= 1 | FAIL | iceoryx2 |")


def test_comparisons_name_the_strongest_other_transport():
    recs = [rec("os.pipe", "copy, buffered", msgs_per_s=300, cpu_s_per_gb=30.0),
            rec("pyzmq ipc", "copy", msgs_per_s=500, cpu_s_per_gb=50.0),
            rec("np.copyto", "limit", msgs_per_s=9000, cpu_s_per_gb=1.0),
            rec("shmring", "send", msgs_per_s=1000, cpu_s_per_gb=15.0)]
    text = report.comparisons(recs)
    assert "| 64 B | 1 | send | 2.00x pyzmq ipc | 0.50x os.pipe (copy, buffered) |" in text


class Frames(channel.Channel):
    """A channel that hands out prepared frames."""

    def __init__(self, frames):
        self.frames = iter(frames)

    def recv(self, state):
        return next(self.frames)


def test_tally_counts_shares_until_the_first_producer_is_done():
    order = [0, 1, 0, 0, 2, 0, 1, 2, 1, 2, 1, 2]      # producer 0 finishes at the sixth frame
    frames = [bytes([p, 9]) for p in order]
    assert Frames(frames).tally(None, [4, 4, 4]) == [4, 1, 1]
    assert measure.share_ratio([4, 1, 1]) == 4
    assert measure.share_ratio([4, 0, 1]) is None        # one starved: no finite ratio
    assert measure.tagged(b"\x07abc", 3) == [b"\x00abc", b"\x01abc", b"\x02abc"]


def test_shmring_shares_with_two_producers():
    for mode, size in (("send", 64), ("reserve", 4096)):
        out = measure.throughput(rings.Shmring(mode), size, 2, 1, 0.02)
        quotas = measure.split(out["frames"], 2)
        assert len(out["shares"]) == 2 and sum(out["shares"]) <= out["frames"]
        assert out["shares"][0] == quotas[0] or out["shares"][1] == quotas[1]


class Chunks:
    """A byte source read in pieces of at most `limit` bytes, as a stream may
    deliver them: a prefix or a payload split anywhere."""

    def __init__(self, data, limit):
        self.data, self.pos, self.limit = data, 0, limit

    def read(self, end, n):
        piece = self.data[self.pos:self.pos + min(n, self.limit)]
        self.pos += len(piece)
        return piece

    def read_into(self, end, view):
        piece = self.read(end, len(view))
        view[:len(piece)] = piece
        return len(piece)


def message(i, n):
    return bytes((i + k) % 251 for k in range(n))


SIZES = st.one_of(st.integers(0, 300), st.integers(streams.CHUNK - 24, streams.CHUNK + 8),
                  st.integers(100_000, 200_000))


@given(sizes=st.lists(SIZES, min_size=1, max_size=12),
       limit=st.one_of(st.integers(1, 40), st.just(streams.CHUNK), st.integers(1000, 70_000)))
def test_splitter_parses_messages_across_read_boundaries(sizes, limit):
    msgs = [message(i, n) for i, n in enumerate(sizes)]
    wire = b"".join(streams.PREFIX.pack(len(m)) + m for m in msgs)
    splitter = streams.Splitter(Chunks(wire, limit), None)
    got = []
    while len(got) < len(msgs):
        batch = []
        splitter.read_messages(batch)
        got += [bytes(m) for m in batch]    # a large one is a view, valid until the next read
    assert got == msgs
    with pytest.raises(EOFError):
        splitter.read_messages([])


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("peer", [streams.Pipe, streams.SocketPair])
def test_streams_carry_every_message_in_order(peer, buffered):
    """Both ways of using os.pipe and socketpair, two producers, sizes on
    both sides of the 64 KiB chunk."""
    sizes = [0, 1, 64, 4096, streams.CHUNK - 8, streams.CHUNK, 300_000, 64] * 3
    ch = peer(buffered=buffered).channel(2, 0)
    writers = [ch.ends[i][1] for i in range(2)]

    def produce(i):
        for k, n in enumerate(sizes):
            ch.send(writers[i], bytes([i]) + message(k, n + 1)[1:])

    threads = [threading.Thread(target=produce, args=(i,), daemon=True) for i in range(2)]
    try:
        state = ch.reading([r for r, _ in ch.ends])
        for t in threads:
            t.start()
        seen = {0: 0, 1: 0}
        for _ in range(2 * len(sizes)):
            buf = bytes(ch.recv(state))
            i = buf[0]
            k = seen[i]
            assert buf == bytes([i]) + message(k, sizes[k] + 1)[1:]
            seen[i] += 1
        assert seen == {0: len(sizes), 1: len(sizes)}
    finally:
        ch.close()                      # a writer blocked on a full stream gets EPIPE
        for t in threads:
            t.join(10)


def test_buffered_pipe_batches_small_messages():
    """One read brings in many small messages: the drain loop hands them out
    without a system call each."""
    ch = streams.Pipe().channel(1, 64)
    try:
        for i in range(100):
            ch.send(ch.ends[0][1], message(i, 64))
        splitter = streams.Splitter(streams.PipeEnds, ch.ends[0][0])
        batch = []
        splitter.read_messages(batch)
        assert batch == [message(i, 64) for i in range(100)]
    finally:
        ch.close()


def frames_that_fit(name, capacity, frame):
    """How many frames a fresh ring of this capacity takes before it is full."""
    ring = shmring.Ring.create(name, capacity)
    try:
        with ring.producer() as p:
            for sent in range(8):
                try:
                    p.send(frame, timeout=0)
                except (shmring.Full, shmring.FrameTooLarge):
                    return sent
    finally:
        ring.close()
        ring.unlink()
    return 8


def test_smallest_ring_holds_three_frames_and_half_of_it_does_not(name):
    size = 1 << 20
    assert rings.sweep(size) == [c << 20 for c in (4, 8, 16, 32, 64, 128)]
    assert rings.sweep(8_294_400) == [c << 20 for c in (32, 64, 128)]
    assert rings.capacity_for(size) == 8 << 20 and rings.capacity_for(64) == 1 << 20
    smallest = rings.smallest_ring(size, 3)
    assert frames_that_fit(name, smallest, b"x" * size) == 3
    assert frames_that_fit(name, smallest // 2, b"x" * size) < 3


def test_the_bridge_runs_only_at_the_sizes_its_targets_name():
    from shmring.bench import bridge
    args = parse("--sizes", "64,4096,8294400", "--producers", "1,4")
    points = bench.plan(args, [bridge.Bridge(), bridge.ZmqTcp()])
    assert {(size, n) for peer, size, n in points if peer is not None} == {
        (4096, 1), (4096, 4), (8294400, 1), (8294400, 4)}


def test_capacities_add_labelled_ring_sweep_points():
    args = parse("--sizes", "64,1048576", "--producers", "1", "--capacities")
    points = bench.plan(args, [rings.Shmring("send"), rings.Shmring("recv_bytes")])
    labels = [(peer.label, size) for peer, size, _ in points if peer is not None]
    assert labels == [("send", 64), ("send", 1 << 20), ("recv_bytes", 64)] + [
        (f"send, {c} MiB ring", 1 << 20) for c in (4, 8, 16, 32, 64, 128)]
    assert [p.capacity for p, _, _ in points[-6:]] == [c << 20 for c in (4, 8, 16, 32, 64, 128)]


def test_idle_consumer_and_full_producer_use_no_cpu():
    idle = checks.idle_cpu(0.3)
    assert idle["consumer_default_cpu_s"] < 0.05
    assert idle["producer_full_cpu_s"] < 0.05


def test_streaming_comparison_prints_both_consumers_per_ring(capsys):
    from shmring.bench import streaming
    assert streaming.main(["--size", str(1 << 20), "--capacities", "1,4",
                           "--gigabytes", "0.01", "--reps", "1"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert rows[0].startswith("| 1 MiB | - | too small")
    assert [r.split(" | ")[1] for r in rows[1:]] == ["touches", "reads all"]
    for row in rows[1:]:
        ratio = float(row.rstrip(" |").rsplit("| ", 1)[1])
        assert ratio > 0


def test_bridge_rows_and_their_targets(tmp_path, monkeypatch, capsys):
    from shmring.bench import bridge
    monkeypatch.setattr(bench, "lineup", lambda: [bridge.ZmqTcp(), bridge.Bridge()])
    out = tmp_path / "bench.json"
    args = parse("--only", "bridge", "--sizes", "4096", "--producers", "1", "--reps", "1",
                 "--seconds", "0.02", "--no-checks", "--targets", "--json", str(out))
    assert bench.run(args) == 0
    records = {(r["transport"], r["mode"]): r for r in json.loads(out.read_text())}
    for key in (("shmring", "bridge"), ("pyzmq tcp", "bridge baseline")):
        assert records[key]["msgs_per_s"] > 0 and records[key]["cpu_s_per_gb"] > 0
    printed = capsys.readouterr().out
    assert re.search(r"\| 4 KiB bridge GB/s vs pyzmq tcp \| [\d.]+ \| >= 0.8 \| (PASS|FAIL) \| "
                     r"pyzmq tcp", printed)
    assert "| 8.3 MB bridge CPU/GB vs pyzmq tcp | - | <= 1.25 | not measured |" in printed
