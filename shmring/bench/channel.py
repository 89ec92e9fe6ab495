"""The shape every transport takes in the benchmark.

A Channel is made in the parent before fork.  Its consumer and producer
sides are set up in the child that uses them (connect, open); drain() and
fill() are the timed parts.  Most transports only define send() and recv();
ping-pong latency then runs over two one-way channels."""
import time

from shmring.bench.harness import touch


def producer_of(frame):
    """The index a producer wrote into the first byte of its frames."""
    with memoryview(frame) as mv, mv.cast("B") as b:
        return b[0]


class Channel:
    def consumer(self):
        """Set up the receiving side (in the consumer's process)."""
        raise NotImplementedError

    def producer(self, index):
        """Set up sending side number index (in that producer's process)."""
        raise NotImplementedError

    def send(self, state, buf):
        raise NotImplementedError

    def recv(self, state):
        """The next frame, as any buffer."""
        raise NotImplementedError

    def drain(self, state, total):
        recv = self.recv
        acc = 0
        for _ in range(total):
            acc += touch(recv(state))
        return acc

    counts_shares = True                # see tally()

    def tally(self, state, quotas):
        """Receive every frame and count each producer's (the first byte of
        producer i's frames is i) until one producer has had all its frames
        taken: how the frames were shared while every producer was sending.
        Channels that cannot count set counts_shares = False."""
        counts = [0] * len(quotas)
        shares = None
        recv = self.recv
        for _ in range(sum(quotas)):
            i = producer_of(recv(state))
            counts[i] += 1
            if shares is None and counts[i] == quotas[i]:
                shares = list(counts)
        return shares

    def fill(self, state, job):
        count, payload = job
        send = self.send
        for _ in range(count):
            send(state, payload)

    def helpers(self, total):
        """Processes that carry frames between the producers and the
        consumer (a bridge's two ends), as (setup, work, arg) like a
        producer's: timed and counted with them."""
        return []

    def close(self):
        """Free what the parent made (in the parent, after the run)."""


class Duplex:
    """Ping-pong over two one-way channels: the pinger sends on fwd and
    waits on back; the echoer returns each frame."""

    def __init__(self, fwd, back):
        self.fwd, self.back = fwd, back

    def echo_setup(self):
        return self.fwd.consumer(), self.back.producer(0)

    def echo(self, state, n):
        rx, tx = state
        for _ in range(n):
            buf = self.fwd.recv(rx)
            self.back.send(tx, buf)
            del buf                     # a shmring frame must go before the next

    def ping_setup(self):
        return self.fwd.producer(0), self.back.consumer()

    def ping(self, state, job):
        tx, rx = state
        n, payload = job
        times = []
        clock = time.perf_counter_ns
        for _ in range(n):
            t = clock()
            self.fwd.send(tx, payload)
            buf = self.back.recv(rx)
            times.append(clock() - t)
            del buf
        return times

    def close(self):
        self.fwd.close()
        self.back.close()
