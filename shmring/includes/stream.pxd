# Non-temporal ("streaming") 16-byte stores, for large copies into the ring.
# SSE2 is part of x86-64, so no runtime dispatch is needed.  Elsewhere
# HAVE_STREAM is 0 and the same names become plain loads and stores, so the
# code that uses them still compiles (and would still copy correctly).
cdef extern from * nogil:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #define SHMRING_HAVE_STREAM 1
    typedef __m128i shmring_v128;
    #define shmring_load128(p) _mm_loadu_si128((const __m128i *)(p))
    #define shmring_stream128(p, v) _mm_stream_si128((__m128i *)(p), (v))
    #define shmring_stream_fence() _mm_sfence()
    #else
    #define SHMRING_HAVE_STREAM 0
    typedef struct { unsigned char b[16]; } shmring_v128;
    #define shmring_load128(p) (*(const shmring_v128 *)(p))
    #define shmring_stream128(p, v) (*(shmring_v128 *)(p) = (v))
    /* never reached (callers check HAVE_STREAM); like _mm_sfence, it orders
       the stores above before publish's release store of the commit word */
    #define shmring_stream_fence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
    #endif
    """
    enum: HAVE_STREAM "SHMRING_HAVE_STREAM"
    ctypedef struct v128 "shmring_v128":
        pass
    v128 load128 "shmring_load128"(const void *p)
    void stream128 "shmring_stream128"(void *p, v128 v)
# shmring_stream_fence() orders every streaming store before later stores;
# _core calls it through mutants.pxd (stream_fence), which can break it.
