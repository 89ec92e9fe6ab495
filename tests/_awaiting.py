"""Child scripts the awaiting tests share (shmring.testing.processes.Child)."""

# A consumer (and a producer with a doorbell) that awaits a frame that never
# comes; it says "armed" once its doorbell is armed.  NAME: the ring's name.
AWAIT_A_FRAME = """
import asyncio
ring = shmring.Ring.attach(NAME)
c = ring.consumer(stall_timeout=60)
p = ring.producer()
p.fileno()
async def main():
    task = asyncio.ensure_future(c.arecv())
    while ring.stats()["consumer_waits"] == 0:
        await asyncio.sleep(0.001)
    say("armed")
    await task
asyncio.run(main())
"""
