/*
 * sg_world.c — stopping the process's other threads for the leak scan.
 *
 * The exit leak scan (and the scan at an unmapping dlclose) reads every root and
 * every live buffer; threads still running would free buffers under it, allocate
 * new ones it never saw, or move the only pointer to a buffer from a range not yet
 * scanned into one already scanned — false reports all.  So the scan stops them.
 *
 * First choice, ptrace (sg_world_ptrace.c), as LeakSanitizer does: a helper task
 * attaches to each thread and interrupts it.  A ptrace stop is invisible to poll,
 * select, nanosleep, futex waits and restartable calls (the kernel resumes them), it
 * stops threads that block every signal and reads every thread's registers into a
 * table the scan reads as a root.  Threads asleep in a call that fails with EINTR
 * after any stop (epoll_wait, semop, sigtimedwait, io_getevents) are parked instead.
 *
 * Fallback, when ptrace cannot be used (a debugger traces the process, ptrace or
 * clone refused): the signal method here.  Each other thread gets a signal (SIGPWR,
 * or SIGXCPU when the program handles SIGPWR) whose handler acknowledges and waits
 * on a futex until the scan resumes the world; its registers are then in the signal
 * frame on its own stack, a root.  The handler is installed for the stop only and
 * the program's action put back after it (through SIG_IGN, which discards a signal
 * of ours still pending anywhere: a late one must not meet SIGPWR's default action,
 * which terminates).  This method interrupts poll, select and nanosleep with EINTR.
 *
 * Threads that block the signal cannot be stopped this way.  One found asleep in
 * the kernel (state S or D) is left parked: it holds no allocator lock the scan
 * needs (the scan holds them), a buffer it frees meanwhile is checked again before
 * any report, its registers are out of sight (the scan runs twice).  One that keeps
 * running with it blocked is watched: signalled once it unblocks it (a thread is
 * born with every signal blocked), parked once it sleeps, else it fails the stop.
 *
 * In both methods threads created while stopping are found by listing the tasks
 * again until the list is stable, and a thread that exits, or a zombie leader (main
 * called pthread_exit: its stack is gone), counts as stopped.
 *
 * Nothing here allocates: files are read into stack buffers, tables are static.
 * Only async-signal-safe calls run in the handler.
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
#include "sg_world.h"

int sg_world_tids[SG_WORLD_MAX_THREADS];
volatile int sg_world_acked[SG_WORLD_MAX_THREADS];
uintptr_t sg_world_sp[SG_WORLD_MAX_THREADS];       /* a stopped thread's lowest live stack address */
uintptr_t sg_world_regs[SG_WORLD_MAX_THREADS * SG_WORLD_REGISTER_WORDS];   /* ptrace: registers, a root */
int sg_world_count;
int sg_world_unstopped;             /* the thread that did not stop */
int sg_world_unstopped_letter;      /* its state letter ('b': running with the signal blocked) */

enum { WORLD_IDLE = 0, WORLD_BY_SIGNAL = 1, WORLD_BY_PTRACE = 2 };
static int world_method;            /* how the world is stopped now */
static int world_signal;
static int world_pid_signalled;   /* the process whose tasks world_signal_task signals */
static struct sigaction world_previous;
static int world_installed;         /* our handler is on world_signal, world_previous to put back */
static int world_stopping;          /* futex word: 1 while the world is stopped by signal */
static int world_inside;            /* threads in the handler's stopped branch */
static uintptr_t world_exit_mark;   /* the exit handler's stack pointer on entry (sg_marked_exit_handler) */

long sg_world_sys(long number, long a, long b, long c, long d, long e, long f) {
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long result;
    __asm__ volatile("syscall" : "=a"(result) : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
#else
    int saved = errno;
    long result = syscall(number, a, b, c, d, e, f);
    if (result == -1) result = -errno;
    errno = saved;
    return result;
#endif
}

static char *world_decimal(char *out, int value) {
    char digits[12];
    int d = 0;
    do { digits[d++] = (char)('0' + value % 10); value /= 10; } while (value != 0);
    while (d > 0) *out++ = digits[--d];
    return out;
}

void sg_world_path(char *path, int pid, int tid, const char *leaf) {
    char *p = path;
    memcpy(p, "/proc/", 6);
    p = world_decimal(p + 6, pid);
    memcpy(p, "/task", 5);
    p += 5;
    if (tid != 0) {
        *p++ = '/';
        p = world_decimal(p, tid);
        *p++ = '/';
        size_t n = strlen(leaf);
        memcpy(p, leaf, n);
        p += n;
    }
    *p = 0;
}

long sg_world_read_file(const char *path, char *buffer, long size) {
    long fd = sg_world_sys(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0) return -1;
    long len = sg_world_sys(SYS_read, fd, (long)buffer, size - 1, 0, 0, 0);
    sg_world_sys(SYS_close, fd, 0, 0, 0, 0, 0);
    if (len < 0) return -1;
    buffer[len] = 0;
    return len;
}

int sg_world_task_state(int pid, int tid, int signal) {
    char path[64];
    sg_world_path(path, pid, tid, "status");
    char b[2048];
    if (sg_world_read_file(path, b, sizeof b) <= 0) return 0;
    int state = 0;
    for (char *line = b; line != NULL && *line != 0;) {
        if (strncmp(line, "State:\t", 7) == 0) state = line[7];
        if (signal != 0 && strncmp(line, "SigBlk:\t", 8) == 0) {
            unsigned long long mask = 0;   /* 16 hex digits, signal 1 the lowest bit */
            for (const char *c = line + 8; (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'); c++)
                mask = mask << 4 | (unsigned)(*c <= '9' ? *c - '0' : *c - 'a' + 10);
            if (mask & (1ull << (signal - 1))) return state == 'S' || state == 'D' ? 'B' : 'b';
        }
        char *next = strchr(line, '\n');
        line = next != NULL ? next + 1 : NULL;
    }
    return state;
}

int sg_world_known(int tid) {
    for (int i = 0; i < sg_world_count; i++) if (sg_world_tids[i] == tid) return 1;
    return 0;
}

static long world_futex(int *word, int op, int value) {
    return sg_world_sys(SYS_futex, (long)word, op, value, 0, 0, 0);
}

/* ---- The signal method (the fallback) ---- */

static void world_handler(int sig, siginfo_t *info, void *context) {
    int saved = errno;
    if (__atomic_load_n(&world_stopping, __ATOMIC_ACQUIRE)) {
        __atomic_add_fetch(&world_inside, 1, __ATOMIC_ACQ_REL);
        int self = (int)syscall(SYS_gettid);
        while (__atomic_load_n(&world_stopping, __ATOMIC_ACQUIRE)) {
            for (int i = 0; i < sg_world_count; i++) {
                if (sg_world_tids[i] == self) {
                    /* Below the signal frame (the interrupted registers) and the red zone: what
                     * lies above it on this stack is live. */
                    sg_world_sp[i] = (uintptr_t)&self;
                    __atomic_store_n(&sg_world_acked[i], SG_WORLD_STOPPED, __ATOMIC_RELEASE);
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

static int world_install(void) {
    world_signal = world_choose_signal();
    if (world_signal == 0) return -1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = world_handler;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&action.sa_mask);
    if (sigaction(world_signal, &action, &world_previous) != 0) return -1;
    world_installed = 1;
    return 0;
}

/* The program's action back.  Through SIG_IGN first: it discards the signal pending in
 * every thread, so one of ours not delivered yet (its thread blocked it meanwhile, or
 * it was out of time) cannot meet SIGPWR's default action, which terminates. */
static void world_uninstall(void) {
    if (!world_installed) return;
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigaction(world_signal, &ignore, NULL);
    sigaction(world_signal, &world_previous, NULL);
    world_installed = 0;
}

int sg_world_add_new_tasks(int pid, int self, int (*visit)(int index)) {
    char path[64];
    sg_world_path(path, pid, 0, NULL);
    long fd = sg_world_sys(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0) return -1;
    char buffer[4096];
    int added = 0;
    for (;;) {
        long n = sg_world_sys(SYS_getdents64, fd, (long)buffer, sizeof buffer, 0, 0, 0);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            unsigned short length = *(unsigned short *)(buffer + off + 16);
            const char *name = buffer + off + 19;
            off += length;
            if (name[0] < '0' || name[0] > '9') continue;
            int tid = 0;
            for (const char *c = name; *c >= '0' && *c <= '9'; c++) tid = tid * 10 + (*c - '0');
            if (tid == self || sg_world_known(tid)) continue;
            if (sg_world_count == SG_WORLD_MAX_THREADS) { added = -2; goto done; }
            int i = sg_world_count;
            sg_world_tids[i] = tid;
            sg_world_sp[i] = 0;
            sg_world_acked[i] = SG_WORLD_SIGNALLED;
            sg_world_count++;
            added++;
            int r = visit(i);
            if (r < 0) { added = r; goto done; }
        }
    }
done:
    sg_world_sys(SYS_close, fd, 0, 0, 0, 0, 0);
    return added;
}

/* The signal method's visit: the stop signal, unless the task is gone, asleep with the
 * signal blocked (parked) or running with it blocked (watched until it unblocks it). */
static int world_signal_task(int i) {
    int tid = sg_world_tids[i];
    int state = sg_world_task_state(world_pid_signalled, tid, world_signal);
    if (state == 0 || state == 'Z' || state == 'X') sg_world_acked[i] = SG_WORLD_STOPPED;   /* gone */
    else if (state == 'B') sg_world_acked[i] = SG_WORLD_PARKED;      /* asleep, signal blocked */
    else if (state == 'b') sg_world_acked[i] = SG_WORLD_BLOCKING;    /* running with it blocked */
    else if (syscall(SYS_tgkill, world_pid_signalled, tid, world_signal) != 0) sg_world_acked[i] = SG_WORLD_STOPPED;
    return 0;
}

static void world_wake_and_wait(void) {
    __atomic_store_n(&world_stopping, 0, __ATOMIC_RELEASE);
    world_futex(&world_stopping, FUTEX_WAKE_PRIVATE, INT32_MAX);
    /* Every stopped thread leaves the handler before the next stop can begin. */
    struct timespec pause = {0, 100000};
    for (int i = 0; i < 100000 && __atomic_load_n(&world_inside, __ATOMIC_ACQUIRE) != 0; i++) nanosleep(&pause, NULL);
}

static int world_signal_stop(int timeout_ms) {
    if (world_install() != 0) return -1;
    __atomic_store_n(&world_stopping, 1, __ATOMIC_RELEASE);
    int self = (int)syscall(SYS_gettid), pid = getpid();
    struct timespec pause = {0, 1000000};   /* 1 ms */
    int waited = 0;
    for (;;) {
        world_pid_signalled = pid;
        int added = sg_world_add_new_tasks(pid, self, world_signal_task);
        if (added < 0) break;
        /* Wait for every signalled thread to acknowledge (or to be gone). */
        int pending;
        do {
            pending = 0;
            for (int i = 0; i < sg_world_count; i++) {
                int acked = __atomic_load_n(&sg_world_acked[i], __ATOMIC_ACQUIRE);
                if (acked == SG_WORLD_BLOCKING) {
                    int state = sg_world_task_state(pid, sg_world_tids[i], world_signal);
                    if (state == 0 || state == 'Z' || state == 'X') { sg_world_acked[i] = SG_WORLD_STOPPED; continue; }
                    if (state == 'B') { sg_world_acked[i] = SG_WORLD_PARKED; continue; }
                    if (state != 'b') {   /* unblocked it (a new thread does, once set up): signal it now */
                        sg_world_acked[i] = SG_WORLD_SIGNALLED;
                        if (syscall(SYS_tgkill, pid, sg_world_tids[i], world_signal) != 0) sg_world_acked[i] = SG_WORLD_STOPPED;
                    }
                    pending = sg_world_tids[i];
                    continue;
                }
                if (acked != SG_WORLD_SIGNALLED) continue;
                int state = sg_world_task_state(pid, sg_world_tids[i], 0);
                if (state == 0 || state == 'Z' || state == 'X') { sg_world_acked[i] = SG_WORLD_STOPPED; continue; }
                pending = sg_world_tids[i];
            }
            if (pending == 0) break;
            nanosleep(&pause, NULL);
        } while (++waited < timeout_ms);
        if (pending != 0) {
            /* Out of time: a thread still asleep in the kernel (the signal not delivered
             * yet: seen under heavy load) is left parked like one that blocks it; one
             * that is running fails the stop. */
            int running = 0;
            for (int i = 0; i < sg_world_count; i++) {
                if (sg_world_acked[i] == SG_WORLD_STOPPED || sg_world_acked[i] == SG_WORLD_PARKED) continue;
                int state = sg_world_task_state(pid, sg_world_tids[i], world_signal);
                if (state == 0 || state == 'Z' || state == 'X') { sg_world_acked[i] = SG_WORLD_STOPPED; continue; }
                if (state == 'S' || state == 'D' || state == 'B') { sg_world_acked[i] = SG_WORLD_PARKED; continue; }
                running = sg_world_tids[i];
            }
            if (running == 0) continue;   /* list the tasks again, then done */
            sg_world_unstopped = running;
            sg_world_unstopped_letter = sg_world_task_state(pid, running, world_signal);
            break;
        }
        if (added == 0) return sg_world_count;   /* a stable list, every thread stopped or parked */
    }
    /* Failed: resume whoever stopped (a late signal of ours is dropped by the handler,
     * or discarded when the program's action is put back). */
    world_wake_and_wait();
    world_uninstall();
    return -1;
}

/* ---- The interface (sg_shim.h) ---- */

int sg_world_stop(int timeout_ms) {
    int saved = errno;
    world_method = WORLD_IDLE;
    sg_world_count = 0;
    sg_world_unstopped = 0;
    sg_world_unstopped_letter = 0;
    int n = sg_world_ptrace_stop(timeout_ms);
    if (n >= 0) world_method = WORLD_BY_PTRACE;
    if (n == -2) {
        sg_world_count = 0;
        n = world_signal_stop(timeout_ms);
        if (n >= 0) world_method = WORLD_BY_SIGNAL;
    }
    errno = saved;
    return n;
}

void sg_world_resume(void) {
    int saved = errno;
    if (world_method == WORLD_BY_PTRACE) sg_world_ptrace_resume();
    if (world_method == WORLD_BY_SIGNAL) { world_wake_and_wait(); world_uninstall(); }
    world_method = WORLD_IDLE;
    errno = saved;
}

uintptr_t sg_world_stack_pointer_in(uintptr_t from, uintptr_t to) {
    if (world_method == WORLD_IDLE) return 0;
    uintptr_t lowest = 0;
    for (int i = 0; i < sg_world_count; i++) {
        uintptr_t sp = sg_world_sp[i];
        if (__atomic_load_n(&sg_world_acked[i], __ATOMIC_ACQUIRE) == SG_WORLD_STOPPED && sp >= from && sp < to
            && (lowest == 0 || sp < lowest)) lowest = sp;
    }
    return lowest;
}

void sg_world_registers(const uintptr_t **words, size_t *count) {
    *words = sg_world_regs;
    *count = world_method == WORLD_BY_PTRACE ? (size_t)sg_world_count * SG_WORLD_REGISTER_WORDS : 0;
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

int sg_world_unstopped_thread(void) { return sg_world_unstopped; }
int sg_world_unstopped_state(void) { return sg_world_unstopped_letter; }

int sg_world_parked_count(void) {
    int n = 0;
    for (int i = 0; i < sg_world_count; i++) if (sg_world_acked[i] == SG_WORLD_PARKED) n++;
    return n;
}

void sg_world_pause_ms(int ms) {
    struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {}
}
