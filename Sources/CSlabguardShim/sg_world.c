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
 * The signal is SIGPWR, or SIGXCPU when the program handles SIGPWR itself.
 * The handler stays installed once installed: a signal of ours that arrives
 * late (its thread had it blocked) is recognised (SI_TKILL from this process)
 * and dropped; any other is passed to the program's previous action (the
 * default one re-raised).  Threads created while stopping are found by listing
 * the tasks again until the list is stable.  A thread that exits before it
 * acknowledges counts as stopped.
 *
 * Threads that block the signal (libdispatch's and other runtimes' worker
 * threads block every signal) cannot be stopped this way.  One found asleep in
 * the kernel (state S or D) is left parked there: it holds no allocator lock
 * the scan needs (the scan holds them), and a buffer it frees meanwhile is
 * checked again before any report.  Its callee-saved registers are out of the
 * scan's sight, the one known gap (ptrace, as LeakSanitizer does, would close
 * it).  One that blocks the signal and keeps running fails the stop; one that
 * does not acknowledge in time is parked if it is asleep then, else fails it.
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
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "sg_shim.h"

#define SG_WORLD_MAX_THREADS 8192

static int world_tids[SG_WORLD_MAX_THREADS];
/* Per signalled thread: where it stands in the stop. */
enum { WORLD_SIGNALLED = 0, WORLD_STOPPED = 1 /* acknowledged, or gone */, WORLD_PARKED = 2 /* asleep, left there */,
       WORLD_BLOCKING = 3 /* running with the signal blocked: waited for until it sleeps */ };
static volatile int world_acked[SG_WORLD_MAX_THREADS];
static int world_count;
static int world_signal;
static struct sigaction world_previous;
static int world_stopping;          /* futex word: 1 while the world is stopped */
static int world_unstopped;         /* the thread that did not stop */
static int world_inside;            /* threads in the handler's stopped branch */
static uintptr_t world_sp[SG_WORLD_MAX_THREADS];   /* a stopped thread's stack pointer in the handler */
static uintptr_t world_exit_mark;   /* the exit handler's stack pointer on entry (sg_marked_exit_handler) */
static int world_installed;         /* our handler is on world_signal */
static int world_unstopped_state;   /* its state letter ('b': running with the signal blocked) */

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
                if (world_tids[i] == self) {
                    /* Below the signal frame (the interrupted registers) and the red zone: what
                     * lies above it on this stack is live. */
                    world_sp[i] = (uintptr_t)&self;
                    __atomic_store_n(&world_acked[i], WORLD_STOPPED, __ATOMIC_RELEASE);
                    break;
                }
            }
            world_futex(&world_stopping, FUTEX_WAIT_PRIVATE, 1);
        }
        __atomic_sub_fetch(&world_inside, 1, __ATOMIC_ACQ_REL);
    } else if (info != NULL && info->si_code == SI_TKILL && info->si_pid == getpid()) {
        /* one of ours, delivered late: nothing to do */
    } else if (world_previous.sa_flags & SA_SIGINFO) {
        if (world_previous.sa_sigaction != NULL) world_previous.sa_sigaction(sig, info, context);
    } else if (world_previous.sa_handler == SIG_DFL) {
        signal(sig, SIG_DFL);   /* the default action, as if we were not there */
        world_installed = 0;
        raise(sig);
    } else if (world_previous.sa_handler != SIG_IGN) {
        world_previous.sa_handler(sig);
    }
    errno = saved;
}

/* A task's scheduler state letter from /proc/self/task/TID/status ('S', 'R', ...),
 * 'B' when it blocks world_signal, 0 when it is gone. */
static int world_task_state(int tid) {
    char path[48] = "/proc/self/task/";
    int n = 16;
    char digits[12];
    int d = 0;
    do { digits[d++] = (char)('0' + tid % 10); tid /= 10; } while (tid != 0);
    while (d > 0) path[n++] = digits[--d];
    memcpy(path + n, "/status", 8);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char b[2048];
    long len = read(fd, b, sizeof b - 1);
    close(fd);
    if (len <= 0) return 0;
    b[len] = 0;
    int state = 0;
    for (char *line = b; line != NULL && *line != 0;) {
        if (strncmp(line, "State:\t", 7) == 0) state = line[7];
        if (strncmp(line, "SigBlk:\t", 8) == 0) {
            /* 16 hex digits, signal 1 the lowest bit */
            unsigned long long mask = strtoull(line + 8, NULL, 16);
            if (mask & (1ull << (world_signal - 1))) return state == 'S' || state == 'D' ? 'B' : 'b';
        }
        char *next = strchr(line, '\n');
        line = next != NULL ? next + 1 : NULL;
    }
    return state;
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
            world_acked[world_count] = WORLD_SIGNALLED;
            world_sp[world_count] = 0;
            world_tids[world_count++] = tid;
            added++;
            int state = world_task_state(tid);
            if (state == 0) { world_acked[world_count - 1] = WORLD_STOPPED; continue; }   /* gone */
            if (state == 'B') { world_acked[world_count - 1] = WORLD_PARKED; continue; }   /* asleep, signal blocked: parked */
            if (state == 'b') { world_acked[world_count - 1] = WORLD_BLOCKING; continue; }   /* running with it blocked: waited for */
            if (syscall(SYS_tgkill, pid, tid, world_signal) != 0) world_acked[world_count - 1] = WORLD_STOPPED;   /* gone */
        }
    }
    close(fd);
    return added;
}

/* Whether world_signal still runs our handler (the program may have replaced it). */
static int world_handler_current(void) {
    struct sigaction current;
    if (sigaction(world_signal, NULL, &current) != 0) return 0;
    return (current.sa_flags & SA_SIGINFO) && current.sa_sigaction == world_handler;
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
    if (!world_installed || !world_handler_current()) {
        world_signal = world_choose_signal();
        if (world_signal == 0) return -1;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = world_handler;
        action.sa_flags = SA_SIGINFO | SA_RESTART;
        sigfillset(&action.sa_mask);
        if (sigaction(world_signal, &action, &world_previous) != 0) return -1;
        world_installed = 1;
    }
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
                int acked = __atomic_load_n(&world_acked[i], __ATOMIC_ACQUIRE);
                if (acked == WORLD_BLOCKING) {   /* blocks the signal: wait until it sleeps (or is gone) */
                    int state = world_task_state(world_tids[i]);
                    if (state == 0) { world_acked[i] = WORLD_STOPPED; continue; }
                    if (state == 'B') { world_acked[i] = WORLD_PARKED; continue; }
                    pending = world_tids[i];
                    continue;
                }
                if (acked != WORLD_SIGNALLED) continue;
                if (syscall(SYS_tgkill, pid, world_tids[i], 0) != 0 && errno == ESRCH) { world_acked[i] = WORLD_STOPPED; continue; }
                pending = world_tids[i];
            }
            if (pending == 0) break;
            nanosleep(&pause, NULL);
        } while (++waited < timeout_ms);
        if (pending != 0) {
            /* Out of time: a thread still asleep in the kernel (the signal not delivered
             * yet: seen under heavy load) is left parked like one that blocks it; one
             * that is running fails the stop. */
            int running = 0;
            for (int i = 0; i < world_count; i++) {
                if (world_acked[i] == WORLD_STOPPED || world_acked[i] == WORLD_PARKED) continue;
                int state = world_task_state(world_tids[i]);
                if (state == 0) { world_acked[i] = WORLD_STOPPED; continue; }
                if (state == 'S' || state == 'D' || state == 'B') { world_acked[i] = WORLD_PARKED; continue; }
                running = world_tids[i];
            }
            if (running == 0) continue;   /* list the tasks again, then done */
            pending = running;
            world_unstopped = pending;
            world_unstopped_state = world_task_state(pending);
            break;
        }
        if (added == 0) return world_count;   /* a stable list, every thread stopped or parked */
    }
    /* Failed: resume whoever stopped (a late signal of ours is dropped by the handler). */
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
}

uintptr_t sg_world_stack_pointer_in(uintptr_t from, uintptr_t to) {
    if (!__atomic_load_n(&world_stopping, __ATOMIC_ACQUIRE)) return 0;
    uintptr_t lowest = 0;
    for (int i = 0; i < world_count; i++) {
        uintptr_t sp = world_sp[i];
        if (__atomic_load_n(&world_acked[i], __ATOMIC_ACQUIRE) == WORLD_STOPPED && sp >= from && sp < to
            && (lowest == 0 || sp < lowest)) lowest = sp;
    }
    return lowest;
}

/* The exit handler, through a frame of its own: every callee-saved register (values of
 * its callers, the program's among them) is spilled here, above the mark, before the
 * checks' large frames begin below it.  Those frames are slabguard's; what the program
 * left in that part of the stack earlier is dead, and a stale pointer there hid leaks
 * that Valgrind reports (gcc's temp-file records: the exit path's frames are 9 KiB). */
__attribute__((noinline)) void sg_marked_exit_handler(int status, void *handler) {
    __builtin_unwind_init();
    uintptr_t sp;
#if defined(__x86_64__)
    __asm__ volatile("movq %%rsp, %0" : "=r"(sp));
#else
    sp = (uintptr_t)__builtin_frame_address(0);
#endif
    __atomic_store_n(&world_exit_mark, sp, __ATOMIC_RELEASE);
    ((void (*)(int))handler)(status);
    __atomic_store_n(&world_exit_mark, 0, __ATOMIC_RELEASE);
}

uintptr_t sg_exit_stack_mark(void) { return __atomic_load_n(&world_exit_mark, __ATOMIC_ACQUIRE); }

int sg_world_unstopped_thread(void) { return world_unstopped; }
int sg_world_unstopped_state(void) { return world_unstopped_state; }

int sg_world_parked_count(void) {
    int n = 0;
    for (int i = 0; i < world_count; i++) if (world_acked[i] == WORLD_PARKED) n++;
    return n;
}

void sg_world_pause_ms(int ms) {
    struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {}
}
