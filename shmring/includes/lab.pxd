# Pause points for the stress lab.  A lab build (SHMRING_LAB=1 when building)
# defines SHMRING_LAB, and each point calls the hook that the lab installs;
# the release build compiles every pause point to nothing.
#
# The lab's hook (shmring_lab_turn) parks the process at each point until a
# coordinator grants it a turn through a small shared control segment:
#
#   offset 0           uint32 free       1: every point passes straight through
#   offset 64 * (i+1)  LabCell of participant i
#       uint32 arrivals  bumped on reaching a point (the coordinator waits on it)
#       uint32 point     which point it is parked at
#       uint32 grants    bumped by the coordinator to let it run to the next one
#
# Lab builds also keep notes on the futex handshakes in a second shared area
# that the lab attaches (SHMRING_LAB_NOTES; stress/control.py owns it, and
# attaches it in the soak too, where no pause point is installed).  Each waker
# marks its wake decision when it is made, and each waiter judges from those
# marks, before it sleeps and (the consumer) after a sleep that ran to its
# timeout, whether its wake was due (_core.pyx: data_answered,
# space_answered): such a sleep is a lost wakeup, counted in `lost`.
#
#   uint64 lost[2]         waits that slept through a wake that was due: data, space
#   uint64 lost_at[2]      the first one's cursor (data) or the head it saw (space)
#   uint64 space_mark      head | DONE (| TOOK | RANG): advance_head's last wake decision
#   uint64 seal_mark       DECIDING, then DONE, around ring_seal's wakes and rings
#   uint64 data_mark[256]  per producer slot (mod 256): pos | DECIDING, then
#                          pos | DONE (| TOOK | RANG), around publish's wake decision
#   TOOK: the waker took the futex waiting flag (and so owes the sequence bump);
#   RANG: it won the doorbell flag (and rang, before it marked DONE).
# Awaiting participants are judged the same way after an await on their
# doorbell that heard no ring (_core.pyx: consumer_awaited, producer_awaited).
from libc.stdint cimport uint32_t, uint64_t

cdef extern from * nogil:
    """
    #ifdef SHMRING_LAB
    #include <linux/futex.h>
    #include <sys/syscall.h>
    #include <time.h>
    #include <unistd.h>
    #define SHMRING_LAB_BUILD 1
    typedef struct { uint32_t arrivals, point, grants; } shmring_lab_cell;
    /* set by SHMRING_LAB_ATTACH */
    static void (*shmring_lab_hook)(int point) __attribute__((unused)) = 0;
    static uint32_t *shmring_lab_free = 0;
    static shmring_lab_cell *shmring_lab_cell_p = 0;
    static uint32_t shmring_lab_used = 0;      /* grants consumed so far */

    static __attribute__((unused)) void shmring_lab_turn(int point) {
        shmring_lab_cell *c = shmring_lab_cell_p;
        struct timespec slice = {0, 20000000};
        long waited = 0;
        /* pairs with the coordinator's store of free */
        if (__atomic_load_n(shmring_lab_free, __ATOMIC_ACQUIRE))
            return;
        __atomic_store_n(&c->point, (uint32_t)point, __ATOMIC_RELAXED);
        /* pairs with the coordinator's read of arrivals: point is visible first */
        __atomic_fetch_add(&c->arrivals, 1, __ATOMIC_RELEASE);
        syscall(SYS_futex, &c->arrivals, FUTEX_WAKE, 1, NULL, NULL, 0);
        /* pairs with the coordinator's bump of grants, and its store of free */
        while (__atomic_load_n(&c->grants, __ATOMIC_ACQUIRE) == shmring_lab_used
               && !__atomic_load_n(shmring_lab_free, __ATOMIC_ACQUIRE)) {
            syscall(SYS_futex, &c->grants, FUTEX_WAIT, shmring_lab_used, &slice, NULL, 0);
            if (++waited > 50 * 120)             /* no turn for two minutes: the lab is gone */
                _exit(97);
        }
        shmring_lab_used += 1;
    }
    #define SHMRING_PAUSE(point) do { if (shmring_lab_hook) shmring_lab_hook(point); } while (0)
    #define SHMRING_LAB_ATTACH(free_word, cell) \\
        (shmring_lab_free = (uint32_t *)(free_word), \\
         shmring_lab_cell_p = (shmring_lab_cell *)(cell), \\
         shmring_lab_used = 0, shmring_lab_hook = shmring_lab_turn, 1)

    #define SHMRING_LAB_SLOTS 256
    typedef struct {
        uint64_t lost[2], lost_at[2], space_mark, seal_mark, spare[2];
        uint64_t data_mark[SHMRING_LAB_SLOTS];
    } shmring_lab_notes;
    static shmring_lab_notes *shmring_lab_notes_p = 0;
    /* Every access is seq_cst: the judge's reasoning (docs/lab.md) is about
       one total order of marks, flags and sequence words. */
    static __attribute__((unused)) uint64_t shmring_lab_load(uint64_t *word) {
        return word ? __atomic_load_n(word, __ATOMIC_SEQ_CST) : 0;
    }
    static __attribute__((unused)) void shmring_lab_store(uint64_t *word, uint64_t v) {
        if (word) __atomic_store_n(word, v, __ATOMIC_SEQ_CST);
    }
    static __attribute__((unused)) uint64_t *shmring_lab_data_mark(uint32_t slot) {
        return shmring_lab_notes_p ? &shmring_lab_notes_p->data_mark[slot % SHMRING_LAB_SLOTS] : 0;
    }
    static __attribute__((unused)) uint64_t *shmring_lab_space_mark(void) {
        return shmring_lab_notes_p ? &shmring_lab_notes_p->space_mark : 0;
    }
    static __attribute__((unused)) uint64_t *shmring_lab_seal_mark(void) {
        return shmring_lab_notes_p ? &shmring_lab_notes_p->seal_mark : 0;
    }
    static __attribute__((unused)) int shmring_lab_sealing(void) {
        /* a sealer is between its mark DECIDING and its mark DONE */
        return (shmring_lab_load(shmring_lab_seal_mark()) & 3) == 1;
    }
    static __attribute__((unused)) int shmring_lab_deciding(void) {
        /* some publisher, or the sealer, is between its mark DECIDING and its mark DONE */
        int i;
        if (shmring_lab_sealing())
            return 1;
        for (i = 0; shmring_lab_notes_p && i < SHMRING_LAB_SLOTS; i++)
            if ((shmring_lab_load(&shmring_lab_notes_p->data_mark[i]) & 3) == 1)
                return 1;
        return 0;
    }
    static __attribute__((unused)) void shmring_lab_lost(int which, uint64_t where) {
        if (!shmring_lab_notes_p) return;
        if (__atomic_fetch_add(&shmring_lab_notes_p->lost[which], 1, __ATOMIC_SEQ_CST) == 0)
            shmring_lab_store(&shmring_lab_notes_p->lost_at[which], where);
    }
    #define SHMRING_LAB_NOTES(notes) (shmring_lab_notes_p = (shmring_lab_notes *)(notes), 1)
    #else
    #define SHMRING_LAB_BUILD 0
    #define SHMRING_PAUSE(point) ((void)0)
    #define SHMRING_LAB_ATTACH(free_word, cell) ((void)(free_word), (void)(cell), 0)
    #define SHMRING_LAB_NOTES(notes) ((void)(notes), 0)
    #define shmring_lab_load(word) ((void)(word), (uint64_t)0)
    #define shmring_lab_store(word, v) ((void)(word), (void)(v))
    #define shmring_lab_data_mark(slot) ((void)(slot), (uint64_t *)0)
    #define shmring_lab_space_mark() ((uint64_t *)0)
    #define shmring_lab_seal_mark() ((uint64_t *)0)
    #define shmring_lab_sealing() 0
    #define shmring_lab_deciding() 0
    #define shmring_lab_lost(which, where) ((void)(which), (void)(where))
    #endif
    """
    enum: LAB_BUILD "SHMRING_LAB_BUILD"
    void pause_point "SHMRING_PAUSE"(int point)
    bint lab_attach "SHMRING_LAB_ATTACH"(void *free_word, void *cell)
    # The handshake notes (above); each is a no-op, or 0, in a release build.
    bint lab_notes_attach "SHMRING_LAB_NOTES"(void *notes)
    uint64_t lab_load "shmring_lab_load"(uint64_t *word)
    void lab_store "shmring_lab_store"(uint64_t *word, uint64_t v)
    uint64_t *lab_data_mark "shmring_lab_data_mark"(uint32_t slot)
    uint64_t *lab_space_mark "shmring_lab_space_mark"()
    uint64_t *lab_seal_mark "shmring_lab_seal_mark"()
    bint lab_sealing "shmring_lab_sealing"()
    bint lab_deciding "shmring_lab_deciding"()
    void lab_lost "shmring_lab_lost"(int which, uint64_t where)
