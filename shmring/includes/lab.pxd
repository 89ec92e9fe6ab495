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
    #else
    #define SHMRING_LAB_BUILD 0
    #define SHMRING_PAUSE(point) ((void)0)
    #define SHMRING_LAB_ATTACH(free_word, cell) ((void)(free_word), (void)(cell), 0)
    #endif
    """
    enum: LAB_BUILD "SHMRING_LAB_BUILD"
    void pause_point "SHMRING_PAUSE"(int point)
    bint lab_attach "SHMRING_LAB_ATTACH"(void *free_word, void *cell)
