/* What a wake-up costs here, without Python or shmring: a 64-byte ping-pong
 * between two processes over a futex in shared memory, a pair of pipes, and
 * a unix datagram socketpair.  Round-trip p50/p99 in microseconds.
 *
 *   gcc -O2 -o /tmp/wake_cost tools/wake_cost.c && /tmp/wake_cost
 *   taskset -c 0 /tmp/wake_cost      # both processes on one CPU
 *
 * docs/benchmarks.md ("Wake latency") has this machine's figures. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 20000

enum { FUTEX, PIPE, SOCKET };

static long now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The futex side: wait until *word == want, sleeping on the futex. */
static void await_value(uint32_t *word, uint32_t want) {
    uint32_t seen;
    while ((seen = __atomic_load_n(word, __ATOMIC_ACQUIRE)) != want)
        syscall(SYS_futex, word, FUTEX_WAIT, seen, NULL, NULL, 0);
}

static void post(uint32_t *word, uint32_t value) {
    __atomic_store_n(word, value, __ATOMIC_RELEASE);
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void run(int kind, const char *name) {
    static long times[N];
    uint32_t *word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int there[2], back[2];
    char buf[64] = {0};
    if (kind == PIPE && (pipe(there) || pipe(back)))
        exit(1);
    if (kind == SOCKET) {
        if (socketpair(AF_UNIX, SOCK_DGRAM, 0, there))
            exit(1);
        back[0] = there[0];             /* the pinger reads and writes its end */
        back[1] = there[1];             /* the echo reads and writes the other */
    }
    if (fork() == 0) {
        for (uint32_t i = 0; i < N; i++) {
            if (kind == FUTEX) {
                await_value(word, 2 * i + 1);
                post(word, 2 * i + 2);
            } else if (kind == PIPE) {
                if (read(there[0], buf, 64) != 64 || write(back[1], buf, 64) != 64)
                    _exit(1);
            } else if (read(back[1], buf, 64) != 64 || write(back[1], buf, 64) != 64) {
                _exit(1);
            }
        }
        _exit(0);
    }
    for (uint32_t i = 0; i < N; i++) {
        long t = now();
        if (kind == FUTEX) {
            post(word, 2 * i + 1);
            await_value(word, 2 * i + 2);
        } else if (kind == PIPE) {
            if (write(there[1], buf, 64) != 64 || read(back[0], buf, 64) != 64)
                exit(1);
        } else if (write(back[0], buf, 64) != 64 || read(back[0], buf, 64) != 64) {
            exit(1);
        }
        times[i] = now() - t;
    }
    wait(NULL);
    qsort(times, N, sizeof times[0], by_value);
    printf("%-22s p50 %6.1f us   p99 %6.1f us\n", name, times[N / 2] / 1e3, times[N * 99 / 100] / 1e3);
}

int main(void) {
    run(FUTEX, "futex in shared memory");
    run(PIPE, "two pipes");
    run(SOCKET, "unix datagram pair");
    return 0;
}
