"""The benchmark's plumbing (not its speed): records, skips and checks."""
import argparse
import json
import re

from shmring import bench
from shmring.bench import checks, peers, report


def parse(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


class Absent(peers.Peer):
    name = "absent"
    needs = ("no_such_module_for_shmring_bench",)


def test_tiny_run_writes_records_and_skips_a_missing_peer(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "lineup", lambda: [Absent(), peers.Pipe(),
                                                  bench.rings.Shmring("send")])
    out = tmp_path / "bench.json"
    args = parse("--sizes", "64", "--producers", "1,2", "--reps", "2", "--seconds", "0.02",
                 "--no-checks", "--json", str(out))
    assert bench.run(args) == 0
    printed = capsys.readouterr().out
    assert "skipped absent: no_such_module_for_shmring_bench not importable" in printed
    records = json.loads(out.read_text())
    got = {(r["transport"], r["mode"], r["producers"]) for r in records}
    assert ("os.pipe", "copy", 2) in got and ("shmring", "send", 2) in got
    assert ("np.copyto", "limit", 1) in got
    assert ("shmring", "ping-pong send spin", 1) in got
    for r in records:
        assert set(r) >= {"transport", "mode", "size", "producers", "msgs_per_s", "gb_per_s",
                          "cpu_s_per_gb", "p50_us", "p99_us"}
        if r["msgs_per_s"] is not None:
            assert r["msgs_per_s_min"] <= r["msgs_per_s"] <= r["msgs_per_s_max"]
            assert r["cpu_s_per_gb"] > 0
        else:
            assert 0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"]
    assert "| 64 B send msgs/s vs os.pipe |" in printed


def test_targets_verdicts():
    recs = [
        {"transport": "os.pipe", "mode": "copy", "size": 64, "producers": 1, "msgs_per_s": 100},
        {"transport": "shmring", "mode": "send", "size": 64, "producers": 1, "msgs_per_s": 150},
        {"transport": "shmring", "mode": "batch", "size": 64, "producers": 1, "msgs_per_s": 2000},
        {"transport": "socketpair", "mode": "copy", "size": 8_294_400, "producers": 1,
         "cpu_s_per_gb": 1.0},
        {"transport": "shmring", "mode": "send-nt", "size": 8_294_400, "producers": 1,
         "cpu_s_per_gb": 0.4},
    ]
    text = report.targets(recs, {})
    assert "| 8.3 MB send-nt CPU/GB vs socketpair | 0.4 | <= 0.5 | PASS |" in text
    assert "| 8.3 MB send CPU/GB vs socketpair | - | <= 0.5 | not measured |" in text
    assert "| 64 B send msgs/s vs os.pipe | 1.5 | >= 2 | FAIL |" in text
    assert "| 64 B batch msgs/s vs os.pipe | 20 | >= 10 | PASS |" in text
    assert "| 64 B nogil msgs/s vs os.pipe | - | >= 20 | not measured |" in text


def test_idle_consumer_and_full_producer_use_no_cpu():
    idle = checks.idle_cpu(0.3)
    assert idle["consumer_spin0_cpu_s"] < 0.05
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
                 "--seconds", "0.02", "--no-checks", "--json", str(out))
    assert bench.run(args) == 0
    records = {(r["transport"], r["mode"]): r for r in json.loads(out.read_text())}
    for key in (("shmring", "bridge"), ("pyzmq tcp", "bridge baseline")):
        assert records[key]["msgs_per_s"] > 0 and records[key]["cpu_s_per_gb"] > 0
    printed = capsys.readouterr().out
    assert re.search(r"\| 4 KiB bridge GB/s vs pyzmq tcp \| [\d.]+ \| >= 0.8 \| (PASS|FAIL) \|",
                     printed)
    assert "| 8.3 MB bridge CPU/GB vs pyzmq tcp | - | <= 1.25 | not measured |" in printed
