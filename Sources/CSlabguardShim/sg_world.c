/*
 * sg_world.c — stopping the process's other threads for the leak scan.
 *
 * The exit leak scan reads every root and every live buffer; threads that are
 * still running (main returned, exit() runs its handlers, workers go on) would
 * free buffers under it, allocate new ones it never saw, or move the only
 * pointer to a buffer from a range not yet scanned into one already scanned —
 * false reports all.  So the scan stops them, as conservative collectors do:
 * each other thread of the process (listed from /proc/self/task) gets a signal
 * whose handler acknowledges and waits on a futex until the scan resumes the
 * world.  Its registers are then saved in the signal frame on its own stack,
 * which the scan reads as a root.
 *
 * The signal is SIGPWR, or SIGXCPU when the program handles SIGPWR itself; the
 * previous action is put back after the scan.  Threads created while stopping
 * are found by listing the tasks again until the list is stable.  A thread
 * that exits before it acknowledges counts as stopped.  A thread that does not
 * acknowledge in time (it blocks the signal) fails the stop: the world is
 * resumed, and the handler stays installed for good, so that the signal still
 * pending there is harmless when it is finally delivered (it is passed on to
 * the program's own handler, if it had one).
 *
 * Nothing here allocates: the task list is read with getdents64 into a stack
 * buffer, the thread table is static.  Only async-signal-safe calls run in the
 * handler.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "sg_shim.h"

#define SG_WORLD_MAX_THREADS 8192

static int world_tids[SG_WORLD_MAX_THREADS];
static volatile int world_acked[SG_WORLD_MAX_THREADS];
static int world_count;
static int world_signal;
static struct sigaction world_previous;
static int world_stopping;          /* futex word: 1 while the world is stopped */
static int world_broken;            /* a stop failed: the handler stays installed */
static int world_unstopped;         /* the thread that did not stop */
static int world_inside;            /* threads in the handler's stopped branch */

static void world_wake_and_wait(void);

static long world_futex(int *word, int op, int value) {
    return syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

static void world_handler(int sig, siginfo_t *info, void *context) {
    int saved = errno;
    if (__atomic_load_n(&world_stopping, __ATOMIC_ACQUIRE)) {
        __atomic_add_fetch(&world_inside, 1, __ATOMIC_ACQ_REL);
        int self = (int)syscall(SYS_gettid);
        while (__atomic_load_n(&world_stopping, __ATOMIC_ACQUIRE)) {
            for (int i = 0; i < world_count; i++) {
                if (world_tids[i] == self) { __atomic_store_n(&world_acked[i], 1, __ATOMIC_RELEASE); break; }
            }
            world_futex(&world_stopping, FUTEX_WAIT_PRIVATE, 1);
        }
        __atomic_sub_fetch(&world_inside, 1, __ATOMIC_ACQ_REL);
    } else if (world_previous.sa_flags & SA_SIGINFO) {
        if (world_previous.sa_sigaction != NULL) world_previous.sa_sigaction(sig, info, context);
    } else if (world_previous.sa_handler != SIG_DFL && world_previous.sa_handler != SIG_IGN) {
        world_previous.sa_handler(sig);
    }
    errno = saved;
}

static int world_known(int tid) {
    for (int i = 0; i < world_count; i++) if (world_tids[i] == tid) return 1;
    return 0;
}

/* Signals every task not signalled yet; returns how many were new, or -1 when the table is full. */
static int world_signal_new_tasks(int self, int pid) {
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buffer[4096];
    int added = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buffer, sizeof buffer);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            unsigned short length = *(unsigned short *)(buffer + off + 16);
            const char *name = buffer + off + 19;
            off += length;
            if (name[0] < '0' || name[0] > '9') continue;
            int tid = 0;
            for (const char *c = name; *c >= '0' && *c <= '9'; c++) tid = tid * 10 + (*c - '0');
            if (tid == self || world_known(tid)) continue;
            if (world_count == SG_WORLD_MAX_THREADS) { close(fd); return -1; }
            world_acked[world_count] = 0;
            world_tids[world_count++] = tid;
            if (syscall(SYS_tgkill, pid, tid, world_signal) != 0) world_acked[world_count - 1] = 1;   /* gone */
            added++;
        }
    }
    close(fd);
    return added;
}

static int world_choose_signal(void) {
    static const int candidates[] = {SIGPWR, SIGXCPU};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        struct sigaction current;
        if (sigaction(candidates[i], NULL, &current) != 0) continue;
        void *handler = (current.sa_flags & SA_SIGINFO) ? (void *)current.sa_sigaction : (void *)current.sa_handler;
        if (handler == (void *)SIG_DFL || handler == (void *)SIG_IGN) return candidates[i];
    }
    return 0;
}

int sg_world_stop(int timeout_ms) {
    if (world_broken) return -1;
    world_signal = world_choose_signal();
    if (world_signal == 0) return -1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = world_handler;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&action.sa_mask);
    if (sigaction(world_signal, &action, &world_previous) != 0) return -1;
    world_count = 0;
    world_unstopped = 0;
    __atomic_store_n(&world_stopping, 1, __ATOMIC_RELEASE);
    int self = (int)syscall(SYS_gettid), pid = getpid();
    struct timespec pause = {0, 1000000};   /* 1 ms */
    int waited = 0;
    for (;;) {
        int added = world_signal_new_tasks(self, pid);
        if (added < 0) break;
        /* Wait for every signalled thread to acknowledge (or to be gone). */
        int pending;
        do {
            pending = 0;
            for (int i = 0; i < world_count; i++) {
                if (__atomic_load_n(&world_acked[i], __ATOMIC_ACQUIRE)) continue;
                if (syscall(SYS_tgkill, pid, world_tids[i], 0) != 0 && errno == ESRCH) { world_acked[i] = 1; continue; }
                pending = world_tids[i];
            }
            if (pending == 0) break;
            nanosleep(&pause, NULL);
        } while (++waited < timeout_ms);
        if (pending != 0) { world_unstopped = pending; break; }
        if (added == 0) return world_count;   /* a stable list, every thread stopped */
    }
    /* Failed: resume whoever stopped; the handler stays for signals still pending. */
    world_broken = 1;
    world_wake_and_wait();
    return -1;
}

static void world_wake_and_wait(void) {
    __atomic_store_n(&world_stopping, 0, __ATOMIC_RELEASE);
    world_futex(&world_stopping, FUTEX_WAKE_PRIVATE, INT32_MAX);
    /* Every stopped thread leaves the handler before the next stop can begin. */
    struct timespec pause = {0, 100000};
    for (int i = 0; i < 100000 && __atomic_load_n(&world_inside, __ATOMIC_ACQUIRE) != 0; i++) nanosleep(&pause, NULL);
}

void sg_world_resume(void) {
    world_wake_and_wait();
    /* Every signal sent was delivered (acknowledged) or its thread is gone: nothing is
     * pending, so the program's action can come back now. */
    sigaction(world_signal, &world_previous, NULL);
}

int sg_world_unstopped_thread(void) { return world_unstopped; }
