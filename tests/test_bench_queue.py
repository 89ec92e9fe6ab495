"""The queue benchmark's plumbing (not its speed): records, targets, RSS."""
import argparse
import json

from shmring import bench
from shmring.bench import queue


def test_tiny_queue_run_writes_records_and_targets(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "queue.json"
    args = parser.parse_args(["--queue", "--producers", "1", "--reps", "2", "--seconds", "0.01",
                              "--no-checks", "--only", "shmring,mp.Queue", "--json", str(out)])
    assert bench.run(args) == 0
    printed = capsys.readouterr().out
    records = json.loads(out.read_text())["records"]
    got = {(r["transport"], r["mode"], r["payload"]) for r in records}
    assert got == {("mp.Queue", "get", "video"), ("mp.Queue", "get", "small"),
                   ("shmring.Queue", "get", "video"), ("shmring.Queue", "get", "small"),
                   ("shmring.Queue", "get zero_copy", "video"),
                   ("shmring frames", "send_array/recv", "video")}
    for r in records:
        assert r["objects_per_s_min"] <= r["objects_per_s"] <= r["objects_per_s_max"]
        assert r["cpu"] > 0 and r["reps"] == 2
    assert "| video, 1 prod.: zero_copy objects/s vs send_array/recv |" in printed
    assert "| small, 1 prod.: objects/s vs faster-fifo | - | >= 2 | not measured |" in printed


def test_rss_check_reports_both_sides():
    rss = queue.rss_flat(5000)
    assert rss["objects"] == 5000
    assert all(kb > 0 for kb in rss["consumer_rss_kb"] + rss["producer_rss_kb"])
    assert rss["growth_kb"] == max(rss["consumer_rss_kb"][1] - rss["consumer_rss_kb"][0],
                                   rss["producer_rss_kb"][1] - rss["producer_rss_kb"][0])
