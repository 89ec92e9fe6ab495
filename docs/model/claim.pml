/* shmring claim, BUSY header, wrap padding, commit and seal (docs/lab.md).
 *
 * Units are 64-byte lines; the ring holds CAP of them.  Positions only grow
 * (no overflow here: the lab's start positions near 2^32 and 2^64 cover
 * that).  A record of `need` units is a header line plus payload lines.
 * Each line keeps what was last written there: tag (the position it was
 * written for) and state (one 64-bit commit word in the ring), length, and the id of the frame whose payload it
 * holds.  Stale lines from the previous lap stay, as in the real ring.
 *
 * The model is sequentially consistent: the release/acquire pairs are what
 * make the real code behave so (TSan checks those).  It checks that no torn,
 * stale, reordered or lost frame is delivered, that padding plus a record
 * never overruns head, and that nobody gets stuck (an invalid end state).
 *
 * A sealer seals the ring at any moment.  The seal is a bit of tail, so the
 * claim (room check and CAS) and the seal are single steps on one word: a
 * claim is either before the seal and delivered, or after it and refused.
 * The consumer ends when it reaches a sealed tail, and must have delivered
 * every frame whose claim succeeded.
 *
 * Run by `python -m stress` (errors: 0 expected).  -DPAD_SHORT makes the
 * padding a line short, -DSEAL_STORE makes the seal a load and a later
 * store of tail (not a CAS): each must fail.
 */
#define CAP 4           /* lines */
#define MAXN 2          /* largest record: 2*MAXN - 1 <= CAP (design.md) */
#define FRAMES 3        /* per producer */
#define BUSY 1
#define COMMITTED 2
#define PAD 3
#define NONE 255

#ifdef PAD_SHORT
#define SHORT 1
#else
#define SHORT 0
#endif

byte tail = 0, head = 0;
bool sealed = false;                    /* tail's seal bit: one word with tail */
byte tagw[CAP], state[CAP], rlen[CAP];   /* the record header fields */
byte payload[CAP];                      /* frame id, 0 = never written */
byte delivered[3];                      /* next expected seq per producer */
byte claimed[3];                        /* claims that succeeded, per producer */

inline claim(need, pos) {
    /* the CAS on tail, with the room check against head; a sealed tail
       fails the CAS (or is seen first), and wakes a producer waiting for room */
    atomic {
        room = CAP - (tail % CAP);
        total = (room < need -> need + room : need);
        (sealed || tail - head + total <= CAP);
        if
        :: sealed -> refused = true
        :: else -> pos = tail; tail = tail + total; claimed[id]++
        fi
    }
}

proctype producer(byte id) {
    byte seq = 0, need, pos, room, total, i;
    bool refused = false;
    do
    :: seq < FRAMES ->
        if :: need = 1 :: need = MAXN fi;
        claim(need, pos);
        if
        :: refused -> break             /* Sealed: nothing claimed */
        :: else
        fi;
        if
        :: total != need ->             /* wrap padding up to the end */
            rlen[pos % CAP] = room - SHORT;
            atomic { tagw[pos % CAP] = pos; state[pos % CAP] = PAD };    /* one 64-bit word */
            pos = pos + room
        :: else
        fi;
        rlen[pos % CAP] = need;
        atomic { tagw[pos % CAP] = pos; state[pos % CAP] = BUSY };
        i = 0;
        do                              /* the payload, line by line */
        :: i < need -> payload[(pos + i) % CAP] = id * 16 + seq + 1; i++
        :: else -> break
        od;
        state[pos % CAP] = COMMITTED;   /* release store */
        seq++
    :: else -> break
    od
}

proctype sealer() {
#ifdef SEAL_STORE
    byte t;
    t = tail;                           /* a claim may move tail here... */
    atomic { tail = t; sealed = true }  /* ...and this store takes it back */
#else
    sealed = true                       /* the CAS on tail: one step */
#endif
}

proctype consumer() {
    byte cursor = 0, at, i, id;
    do
    :: cursor != tail ->
        at = cursor % CAP;
        if
        :: tagw[at] == cursor && state[at] == PAD ->
            assert(rlen[at] > 0);       /* the core's checked_size() rejects less */
            cursor = cursor + rlen[at]; head = cursor
        :: tagw[at] == cursor && state[at] == COMMITTED ->
            id = payload[at] / 16;
            assert(id == 1 || id == 2);
            assert(payload[at] % 16 == delivered[id] + 1);      /* FIFO, exactly once */
            i = 0;
            do
            :: i < rlen[at] -> assert(payload[(cursor + i) % CAP] == payload[at]); i++  /* not torn */
            :: else -> break
            od;
            delivered[id]++;
            cursor = cursor + rlen[at]; head = cursor
        :: else ->                      /* stale tag or BUSY: wait until it is written */
            (tagw[at] == cursor && state[at] != BUSY)
        fi
    :: cursor == tail && sealed -> break       /* sealed and drained: the end */
    od;
    assert(delivered[1] == claimed[1] && delivered[2] == claimed[2])
}

init {
    atomic {
        run producer(1); run producer(2); run consumer(); run sealer()
    }
}
