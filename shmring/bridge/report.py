"""What the bridge tells its operator: a --stats line each period, and
warnings that a peer could otherwise repeat at line rate."""
import time

GB = 1e9


class Meter:
    """Logs line(stats, gb_per_s) every `every` seconds, from the byte
    count in stats()['bytes']."""

    def __init__(self, every, stats, line, log):
        if every is not None and not every > 0:
            raise ValueError(f"the stats period must be > 0 seconds, not {every!r}")
        self.every, self.stats, self.line, self.log = every, stats, line, log
        self.last = time.monotonic()
        self.last_bytes = 0

    def tick(self, now):
        if self.every is None or now - self.last < self.every:
            return
        s = self.stats()
        rate = (s["bytes"] - self.last_bytes) / (now - self.last) / GB
        self.last, self.last_bytes = now, s["bytes"]
        self.log.info(self.line(s, rate))


class Limited:
    """A log line at most once per `every` seconds for each key (a kind of
    event); the lines held back are counted in the next one."""

    def __init__(self, logger, every=10.0):
        self.logger, self.every = logger, every
        self.seen = {}                  # key: (time logged, lines held back)

    def log(self, level, key, text, *args):
        now = time.monotonic()
        last, held = self.seen.get(key, (None, 0))
        if last is not None and now - last < self.every:
            self.seen[key] = (last, held + 1)
            return
        if held:
            text += f" ({held} more like it in the last {now - last:.0f} s)"
        self.seen[key] = (now, 0)
        self.logger.log(level, text, *args)
