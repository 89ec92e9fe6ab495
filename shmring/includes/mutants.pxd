# Deliberately broken variants of the core, for the lab's mutation proof
# (python -m stress.mutants, docs/lab.md).  setup.py turns SHMRING_MUTANT=name
# into -DSHMRING_MUTANT_NAME; without one every macro below is the correct code.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from * nogil:
    """
    #ifdef SHMRING_MUTANT_RELAXED_COMMIT        /* commit is a relaxed store */
    #define SHMRING_COMMIT_ORDER __ATOMIC_RELAXED
    #else
    #define SHMRING_COMMIT_ORDER __ATOMIC_RELEASE
    #endif

    #ifdef SHMRING_MUTANT_COMMIT_EARLY          /* committed at claim, before the payload */
    #define SHMRING_CLAIM_STATE 2
    #else
    #define SHMRING_CLAIM_STATE 1
    #endif

    #ifdef SHMRING_MUTANT_PAD_SHORT             /* wrap padding one 64-byte unit short */
    #define SHMRING_PAD_SHORT 64
    #else
    #define SHMRING_PAD_SHORT 0
    #endif

    #ifdef SHMRING_MUTANT_NO_TAG_CHECK          /* stale headers are not told from fresh ones */
    #define SHMRING_TAG_MISMATCH(word, tag) 0
    #elif defined(SHMRING_MUTANT_TAG_48)        /* tags compared on 48 bits: "positions are small" */
    #define SHMRING_TAG_MISMATCH(word, tag) ((((word) ^ (tag)) & 0x0000ffffffffffc0ULL) != 0)
    #else
    #define SHMRING_TAG_MISMATCH(word, tag) (((word) & ~(uint64_t)63) != (tag))
    #endif

    #ifdef SHMRING_MUTANT_LT_COMPARE            /* positions compared with <, not by difference */
    #define SHMRING_NO_ROOM(tail, head, total, cap) ((tail) + (total) > (head) + (cap))
    #else
    #define SHMRING_NO_ROOM(tail, head, total, cap) ((tail) - (head) + (total) > (cap))
    #endif

    #ifdef SHMRING_MUTANT_NO_FENCE              /* the futex handshakes lose their fences */
    #define SHMRING_HANDSHAKE_FENCE() __asm__ __volatile__("" ::: "memory")
    #else
    #define SHMRING_HANDSHAKE_FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)
    #endif

    #ifdef SHMRING_MUTANT_NO_STREAM_FENCE       /* streaming stores not fenced before commit */
    #define SHMRING_STREAM_FENCE() __asm__ __volatile__("" ::: "memory")
    #else
    #define SHMRING_STREAM_FENCE() shmring_stream_fence()
    #endif

    #ifdef SHMRING_MUTANT_NO_RECHECK            /* an awaiting consumer arms without looking again */
    #define SHMRING_BELL_RECHECK(looked) 2      /* PENDING: trusts the try before arming */
    #else
    #define SHMRING_BELL_RECHECK(looked) (looked)
    #endif

    #ifdef SHMRING_MUTANT_SEAL_STORE            /* the seal stores the tail it loaded, so a */
    #define SHMRING_SEAL_CAS(p, expected, desired) \\
        (__atomic_store_n((p), (desired), __ATOMIC_RELEASE), 1)  /* claim in between is lost */
    #else
    #define SHMRING_SEAL_CAS(p, expected, desired) \\
        __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)
    #endif

    #ifdef SHMRING_MUTANT_SEAL_SILENT           /* the seal wakes sleepers, rings no doorbell */
    #define SHMRING_SEAL_RINGS 0
    #else
    #define SHMRING_SEAL_RINGS 1
    #endif

    #ifdef SHMRING_MUTANT_REWIND_OVERRUN        /* a rewind checks room for the record only, */
    #define SHMRING_REWIND_SPAN(pad, need) (need)   /* not for the padding in front of it */
    #else
    #define SHMRING_REWIND_SPAN(pad, need) ((pad) + (need))
    #endif

    #ifdef SHMRING_MUTANT_REWIND_UNWATCHED      /* a rewind ignores whether the consumer */
    #define SHMRING_REWIND_WATCHED(waiting_at) 1    /* is inside a receive to pass it */
    #else
    #define SHMRING_REWIND_WATCHED(waiting_at) ((waiting_at) != 0)
    #endif

    #ifdef SHMRING_MUTANT_NO_RECOVERY           /* dead producers are never skipped */
    #define SHMRING_RECOVERY 0
    #else
    #define SHMRING_RECOVERY 1
    #endif

    #ifdef SHMRING_MUTANT_SLEEP_REREAD          /* the consumer sleeps on data_seq re-read */
    #define SHMRING_SLEEP_SEQ(seq, word) __atomic_load_n(word, __ATOMIC_ACQUIRE)
    #else                                       /* ... not on the value read before its flag */
    #define SHMRING_SLEEP_SEQ(seq, word) (seq)
    #endif

    #ifdef SHMRING_MUTANT_RELEASE_PASSES_HELD   /* head walks over all but BUSY records */
    #define SHMRING_FREED(state) ((state) != 1)
    #else                                       /* ... not only over PAD (3) and RELEASED (4) */
    #define SHMRING_FREED(state) ((state) == 3 || (state) == 4)
    #endif

    #ifdef SHMRING_MUTANT_PAD_EXACT             /* a record that fits exactly is padded anyway */
    #define SHMRING_PAD_NEEDED(room, need) ((room) <= (need))
    #else
    #define SHMRING_PAD_NEEDED(room, need) ((room) < (need))
    #endif

    /* Two that only the aarch64 audit sees: x86 emits the same code, and
       TSan's run never recovers a claim or hands a slot on. */
    #ifdef SHMRING_MUTANT_RELAXED_RECOVER       /* recover_busy's acquire load is relaxed */
    #define SHMRING_RECOVER_ORDER __ATOMIC_RELAXED
    #else
    #define SHMRING_RECOVER_ORDER __ATOMIC_ACQUIRE
    #endif

    #ifdef SHMRING_MUTANT_RELAXED_OWNER         /* producer_close's release store is relaxed */
    #define SHMRING_OWNER_ORDER __ATOMIC_RELAXED
    #else
    #define SHMRING_OWNER_ORDER __ATOMIC_RELEASE
    #endif
    """
    enum:
        COMMIT_ORDER "SHMRING_COMMIT_ORDER"
        CLAIM_STATE "SHMRING_CLAIM_STATE"
        PAD_SHORT "SHMRING_PAD_SHORT"
        RECOVERY "SHMRING_RECOVERY"
        SEAL_RINGS "SHMRING_SEAL_RINGS"
        RECOVER_ORDER "SHMRING_RECOVER_ORDER"
        OWNER_ORDER "SHMRING_OWNER_ORDER"
    bint tag_mismatch "SHMRING_TAG_MISMATCH"(uint64_t word, uint64_t tag)
    bint no_room "SHMRING_NO_ROOM"(uint64_t tail, uint64_t head, uint64_t total, uint64_t cap)
    void handshake_fence "SHMRING_HANDSHAKE_FENCE"()
    void stream_fence "SHMRING_STREAM_FENCE"()     # includes/stream.pxd's sfence
    bint seal_cas "SHMRING_SEAL_CAS"(uint64_t *p, uint64_t *expected, uint64_t desired)
    int bell_recheck "SHMRING_BELL_RECHECK"(int looked)
    uint64_t REWIND_SPAN "SHMRING_REWIND_SPAN"(uint64_t pad, uint64_t need)
    uint32_t sleep_seq "SHMRING_SLEEP_SEQ"(uint32_t seq, uint32_t *word)
    bint freed "SHMRING_FREED"(uint64_t state)
    bint pad_needed "SHMRING_PAD_NEEDED"(uint64_t room, uint64_t need)
    bint rewind_watched "SHMRING_REWIND_WATCHED"(uint64_t waiting_at)
