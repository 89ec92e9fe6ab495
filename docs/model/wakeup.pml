/* The futex waiter handshake, with store buffers (docs/lab.md).
 *
 * The consumer announces itself (data_waiting = 1), re-checks for a commit,
 * and sleeps on data_seq only if the word has not moved; the producer
 * commits, and wakes only when it sees a waiter.  Stores go to a per-process
 * store buffer that drains at any time, as on x86 (TSO); a fence waits for
 * the buffer to drain.  Without the fences both sides read stale values and
 * the wakeup is lost: spin reports an invalid end state (the consumer asleep
 * for ever).  The space direction (producer waits, consumer wakes) is the
 * same code with the roles swapped.  -DNOFENCE must fail.
 *
 * -DDOORBELL models an awaiting consumer instead: `waiting` is its doorbell
 * flag, and the wake is a datagram that stays queued until the consumer
 * reads it, so a ring sent between the re-check and the await still wakes
 * it (the futex gets the same from comparing data_seq).  -DDOORBELL
 * -DNOFENCE and -DDOORBELL -DNORECHECK (arm, then await without looking
 * again: the no_recheck mutant) must fail.
 */
bit committed = 0, waiting = 0;         /* memory */
byte data_seq = 0;
bool asleep = false;
bit rung = 0;                           /* DOORBELL: a datagram is queued */
bit pbuf_full = 0, cbuf_full = 0;       /* one-entry store buffers */

#ifdef NOFENCE
#define FENCE(buf) skip
#else
#define FENCE(buf) (buf == 0)
#endif

proctype producer() {
    pbuf_full = 1;                      /* store commit (into the buffer) */
    FENCE(pbuf_full);
    if
    :: waiting == 1 ->                  /* exchange(waiting, 0) is locked: it drains the buffer */
#ifdef DOORBELL
        atomic { (pbuf_full == 0); waiting = 0 };
        rung = 1                        /* sendto: one byte to the doorbell */
#else
        atomic { (pbuf_full == 0); waiting = 0; data_seq++; asleep = false }
#endif
    :: else
    fi
}

proctype producer_buffer() {
end: do :: atomic { pbuf_full == 1 -> committed = 1; pbuf_full = 0 } od
}

proctype consumer() {
    byte seq = data_seq;
    cbuf_full = 1;                      /* store waiting = 1 (into the buffer) */
    FENCE(cbuf_full);
#ifdef NORECHECK
    (rung == 1);                        /* awaits the doorbell without looking again */
#else
    if
    :: committed == 1 -> skip           /* re-check: a frame is there */
    :: else ->
#ifdef DOORBELL
        (rung == 1)                     /* await the doorbell: a byte sent before now counts */
#else
        atomic { if :: data_seq == seq -> asleep = true :: else fi };    /* FUTEX_WAIT */
        (asleep == false)
#endif
    fi;
#endif
    (committed == 1 || pbuf_full == 1)  /* woken: the frame is there (or draining) */
}

proctype consumer_buffer() {
end: do :: atomic { cbuf_full == 1 -> waiting = 1; cbuf_full = 0 } od
}

init {
    atomic {
        run producer(); run producer_buffer(); run consumer(); run consumer_buffer()
    }
}
