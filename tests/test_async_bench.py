"""The awaiting benchmarks' plumbing (not their speed): shmring bench's
async-for and async ping-pong records and targets, and the doorbell
comparison of python -m shmring.bench.doorbells."""
import argparse
import json

import pytest

from shmring import bench
from shmring.bench import aio, doorbells, rings


def parse(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.timeout(300)
def test_bench_measures_awaiting_against_blocking_and_asyncio_streams(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setattr(bench, "lineup", lambda: [aio.AsyncioStreams(), rings.Shmring("send"),
                                                  aio.AsyncShmring()])
    out = tmp_path / "bench.json"
    args = parse("--quick", "--sizes", "64", "--producers", "1,2", "--reps", "1",
                 "--seconds", "0.02", "--no-checks", "--targets", "--json", str(out))
    assert bench.run(args) == 0
    printed = capsys.readouterr().out
    got = {(r["transport"], r["mode"], r["producers"]) for r in json.loads(out.read_text())}
    assert {("shmring-async", "asyncio", 1), ("shmring-async", "asyncio", 2),
            ("shmring-async", "ping-pong asyncio", 1), ("asyncio streams", "ping-pong copy", 1),
            ("asyncio streams", "copy", 1), ("shmring", "ping-pong send blocking", 1)} <= got
    assert ("asyncio streams", "copy", 2) not in got        # one producer per socketpair
    for target in ("async ping-pong p50 vs blocking", "async ping-pong p50 vs asyncio streams",
                   "64 B async-for msgs/s, 1 producer(s), vs blocking consumer",
                   "doorbell rings per 1,000 frames, async-for runs"):
        row = next(line for line in printed.splitlines() if line.startswith(f"| {target} |"))
        assert row.split(" | ")[1] != "-", row             # measured
    assert aio.RINGS == []                                  # target_rows() read the tally


@pytest.mark.timeout(300)
def test_doorbell_comparison_runs(capsys):
    assert doorbells.main(["--pings", "300"]) == 0
    printed = capsys.readouterr().out
    for row in ("unix datagram doorbell", "eventfd passed with SCM_RIGHTS",
                "awaited through doorbells", "helper thread per ring", "blocking"):
        assert any(line.startswith(f"| shmring 64 B frames, {row}") or
                   line.startswith(f"| {row}") for line in printed.splitlines()), row
    assert "One ring and its drain" in printed and "Idle consumer over 1 s" in printed
