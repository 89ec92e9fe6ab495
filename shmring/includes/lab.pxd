# Pause points for the stress lab.  A lab build (SHMRING_LAB=1 when building)
# defines SHMRING_LAB, and each point calls the hook that the lab installs;
# the release build compiles every pause point to nothing.
cdef extern from * nogil:
    """
    #ifdef SHMRING_LAB
    static void (*shmring_lab_hook)(int point) = 0;
    #define SHMRING_PAUSE(point) do { if (shmring_lab_hook) shmring_lab_hook(point); } while (0)
    #define SHMRING_SET_LAB_HOOK(fn) (shmring_lab_hook = (fn), 1)
    #else
    #define SHMRING_PAUSE(point) ((void)0)
    #define SHMRING_SET_LAB_HOOK(fn) ((void)(fn), 0)
    #endif
    """
    ctypedef void (*lab_hook_t)(int) noexcept nogil
    void pause_point "SHMRING_PAUSE"(int point)
    bint set_lab_hook "SHMRING_SET_LAB_HOOK"(lab_hook_t fn)
