/*
 * sg_world_ptrace.c — stopping the world with ptrace, as LeakSanitizer does.
 *
 * A helper task shares the address space (clone with CLONE_VM, not a thread of the
 * process: a thread cannot trace its own group), exit signal 0 so that the program's
 * wait() never sees it.  It seizes every thread listed in /proc/PID/task but the
 * scanning one, interrupts it, waits for the stop, and copies its registers into
 * sg_world_regs (a root of the scan) and rsp less the red zone into sg_world_sp; it
 * lists the tasks again until no new one appears, says so through a futex word, waits
 * until the scan is done and detaches them all.  Detaching re-injects a signal that
 * arrived during the stop; a helper that dies detaches them too (the kernel does), so
 * the caller can always end it with SIGKILL.
 *
 * What a stopped thread observes: nothing for poll, select, nanosleep, futex waits and
 * every restartable call (the kernel restarts them after a ptrace stop; timeouts keep
 * their absolute end).  epoll_wait and the other calls signal(7) lists as failing with
 * EINTR after any stop are never interrupted: a thread asleep in one is parked (its
 * stack read whole, the scan run twice); one that enters one at the instant of the
 * stop has the call restarted by the helper (its EINTR is ours when no signal is
 * pending).  Known gap: accept/recv/send on a socket with SO_RCVTIMEO/SO_SNDTIMEO.
 *
 * The helper runs on a stack of its own (mapped once) with the caller's TLS pointer:
 * it makes raw system calls only (no errno, no allocation, no lock).  It is created
 * with every signal blocked (a terminal's SIGINT to the process group must not run the
 * program's handler in it) and dies with its creator (PR_SET_PDEATHSIG).  The caller
 * waits for it with a deadline, never forever.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "sg_shim.h"
#include "sg_world.h"

#if defined(__x86_64__)

#define WORLD_HELPER_STACK (64 << 10)

/* The helper's progress, a futex word shared by the caller and the helper. */
enum { HELPER_WAIT = 1, HELPER_GO, HELPER_STOPPED, HELPER_UNSTOPPED, HELPER_UNAVAILABLE, HELPER_RESUME };

static char *world_helper_stack;         /* mapped once, a guard page below */
static int world_helper_phase;
static int world_helper_pid;
static int world_pid;                    /* the process being stopped */
static int world_self;                   /* the scanning thread */
static int world_deadline_ms;
static int world_ptrace_off;             /* ptrace refused once (EPERM, ENOSYS): signals from then on */
static unsigned char world_seized[SG_WORLD_MAX_THREADS];
static unsigned char world_inject[SG_WORLD_MAX_THREADS];   /* a signal to deliver at detach */
static struct user_regs_struct world_scratch_regs;

static long world_now_ms(void) {
    struct timespec t;
    sg_world_sys(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&t, 0, 0, 0, 0);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void world_nap_us(long us) {
    struct timespec t = {0, us * 1000L};
    sg_world_sys(SYS_nanosleep, (long)&t, 0, 0, 0, 0, 0);
}

static void world_set_phase(int phase) {
    __atomic_store_n(&world_helper_phase, phase, __ATOMIC_RELEASE);
    sg_world_sys(SYS_futex, (long)&world_helper_phase, FUTEX_WAKE, INT32_MAX, 0, 0, 0);
}

/* Waits while the phase is `phase`, up to `ms`; the phase then. */
static int world_wait_phase(int phase, long ms) {
    long end = world_now_ms() + ms;
    for (;;) {
        int now = __atomic_load_n(&world_helper_phase, __ATOMIC_ACQUIRE);
        long left = end - world_now_ms();
        if (now != phase || left <= 0) return now;
        struct timespec t = {left / 1000, (left % 1000) * 1000000L};
        sg_world_sys(SYS_futex, (long)&world_helper_phase, FUTEX_WAIT, phase, (long)&t, 0, 0);
    }
}

/* Whether the thread sleeps in a call that fails with EINTR after any stop (signal(7)):
 * epoll_wait, epoll_pwait, epoll_pwait2, semop, semtimedop, rt_sigtimedwait,
 * io_getevents, io_pgetevents. */
static int world_stop_would_interrupt(long number) {
    return number == SYS_epoll_wait || number == SYS_epoll_pwait || number == 441 /* epoll_pwait2 */
        || number == SYS_semop || number == SYS_semtimedop || number == SYS_rt_sigtimedwait
        || number == SYS_io_getevents || number == SYS_io_pgetevents;
}

static long world_blocked_call(int tid) {
    char path[64], text[256];
    sg_world_path(path, world_pid, tid, "syscall");
    if (sg_world_read_file(path, text, sizeof text) <= 0 || text[0] < '0' || text[0] > '9') return -1;   /* running, or none */
    long n = 0;
    for (const char *c = text; *c >= '0' && *c <= '9'; c++) n = n * 10 + (*c - '0');
    return n;
}

/* Whether a signal is pending for the thread or its process (then an EINTR is not ours). */
static int world_signal_pending(int tid) {
    char path[64], b[2048];
    sg_world_path(path, world_pid, tid, "status");
    if (sg_world_read_file(path, b, sizeof b) <= 0) return 1;
    for (char *line = b; line != NULL && *line != 0;) {
        if (strncmp(line, "SigPnd:\t", 8) == 0 || strncmp(line, "ShdPnd:\t", 8) == 0) {
            for (const char *c = line + 8; *c != '\n' && *c != 0; c++) if (*c != '0') return 1;
        }
        char *next = strchr(line, '\n');
        line = next != NULL ? next + 1 : NULL;
    }
    return 0;
}

static int world_index(int tid) {
    for (int i = 0; i < sg_world_count; i++) if (sg_world_tids[i] == tid) return i;
    return -1;
}

/* A thread reported stopped: its registers kept; an EINTR the stop itself caused in an
 * epoll_wait-like call undone (the call made again, as the kernel does for poll). */
static void world_stopped(int i, int status) {
    int tid = sg_world_tids[i];
    world_inject[i] = (status >> 16) == PTRACE_EVENT_STOP ? 0 : (unsigned char)WSTOPSIG(status);
    struct user_regs_struct *r = &world_scratch_regs;
    if (sg_world_sys(SYS_ptrace, PTRACE_GETREGS, tid, 0, (long)r, 0, 0) == 0) {
        uintptr_t *words = &sg_world_regs[(size_t)i * SG_WORLD_REGISTER_WORDS];
        memcpy(words, r, 15 * sizeof(uintptr_t));   /* r15 .. rdi */
        words[15] = r->fs_base;
        sg_world_sp[i] = r->rsp - 128;
        if ((long)r->rax == -EINTR && world_stop_would_interrupt((long)r->orig_rax) && world_inject[i] == 0
            && !world_signal_pending(tid)) {
            r->rax = r->orig_rax;
            r->rip -= 2;   /* the syscall instruction */
            sg_world_sys(SYS_ptrace, PTRACE_SETREGS, tid, 0, (long)r, 0, 0);
        }
        memset(r, 0, sizeof *r);
    }
    __atomic_store_n(&sg_world_acked[i], SG_WORLD_STOPPED, __ATOMIC_RELEASE);
}

/* The ptrace method's visit: seize and interrupt the task, unless it is gone or asleep in a
 * call that any stop would interrupt (parked); -3 when ptrace is refused. */
static int world_seize_task(int i) {
    int tid = sg_world_tids[i];
    world_seized[i] = 0;
    world_inject[i] = 0;
    memset(&sg_world_regs[(size_t)i * SG_WORLD_REGISTER_WORDS], 0, SG_WORLD_REGISTER_WORDS * sizeof(uintptr_t));
    int state = sg_world_task_state(world_pid, tid, 0);
    if (state == 0 || state == 'Z' || state == 'X') { sg_world_acked[i] = SG_WORLD_STOPPED; return 0; }
    if (world_stop_would_interrupt(world_blocked_call(tid))) { sg_world_acked[i] = SG_WORLD_PARKED; return 0; }
    long r = sg_world_sys(SYS_ptrace, PTRACE_SEIZE, tid, 0, 0, 0, 0);
    if (r == -ESRCH) { sg_world_acked[i] = SG_WORLD_STOPPED; return 0; }
    if (r != 0) return -3;
    world_seized[i] = 1;
    if (sg_world_sys(SYS_ptrace, PTRACE_INTERRUPT, tid, 0, 0, 0, 0) != 0) sg_world_acked[i] = SG_WORLD_STOPPED;
    return 0;
}

/* Seizes and interrupts every task not in the table yet: how many were new, -1 when ptrace
 * is refused, -2 when the tasks cannot be listed or the table is full. */
static int world_seize_new_tasks(void) {
    int added = sg_world_add_new_tasks(world_pid, world_self, world_seize_task);
    if (added == -3) return -1;    /* refused */
    return added < 0 ? -2 : added; /* not listed, or the table full */
}

/* Waits for the stops until the deadline; threads that never stop are parked when
 * asleep, else the stop fails.  HELPER_STOPPED or HELPER_UNSTOPPED. */
static int world_collect_stops(long end) {
    for (int round = 0;; round++) {
        int status = 0;
        long tid = sg_world_sys(SYS_wait4, -1, (long)&status, __WALL | WNOHANG, 0, 0, 0);
        if (tid > 0) {
            int i = world_index((int)tid);
            if (i < 0) continue;
            if (WIFSTOPPED(status)) world_stopped(i, status);
            else { world_seized[i] = 0; sg_world_acked[i] = SG_WORLD_STOPPED; }   /* exited */
            continue;
        }
        int pending = 0;
        int late = world_now_ms() >= end;
        for (int i = 0; i < sg_world_count; i++) {
            if (sg_world_acked[i] != SG_WORLD_SIGNALLED) continue;
            if (late || round % 16 == 15) {   /* a zombie leader never stops: it counts as stopped */
                int state = sg_world_task_state(world_pid, sg_world_tids[i], 0);
                if (state == 0 || state == 'Z' || state == 'X') { sg_world_acked[i] = SG_WORLD_STOPPED; continue; }
                if (late && state == 't') { world_stopped(i, PTRACE_EVENT_STOP << 16); continue; }   /* stopped, unreported */
                if (late && (state == 'S' || state == 'D')) { sg_world_acked[i] = SG_WORLD_PARKED; continue; }
                if (late) {
                    sg_world_unstopped = sg_world_tids[i];
                    sg_world_unstopped_letter = state;
                    return HELPER_UNSTOPPED;
                }
            }
            pending++;
        }
        if (pending == 0) return HELPER_STOPPED;
        world_nap_us(round < 100 ? 50 : 500);
    }
}

static void world_detach_all(void) {
    for (int i = 0; i < sg_world_count; i++) {
        if (!world_seized[i]) continue;
        /* Fails for a parked thread that never stopped: the helper's exit detaches it. */
        sg_world_sys(SYS_ptrace, PTRACE_DETACH, sg_world_tids[i], 0, world_inject[i], 0, 0);
        world_seized[i] = 0;
    }
}

static int world_helper(void *unused) {
    (void)unused;
    sg_world_sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0);
    if (world_wait_phase(HELPER_WAIT, 10000) != HELPER_GO) return 1;
    long end = world_now_ms() + world_deadline_ms;
    int outcome = HELPER_STOPPED;
    for (;;) {
        int added = world_seize_new_tasks();
        if (added == -1) { outcome = HELPER_UNAVAILABLE; break; }
        if (added == -2) { outcome = HELPER_UNSTOPPED; break; }
        outcome = world_collect_stops(end);
        if (outcome != HELPER_STOPPED || added == 0) break;
    }
    if (outcome != HELPER_STOPPED) {
        world_detach_all();
        world_set_phase(outcome);
        return 0;
    }
    world_set_phase(HELPER_STOPPED);
    /* The scan runs; a caller that never comes back takes the helper with it (PDEATHSIG). */
    while (world_wait_phase(HELPER_STOPPED, 60000) == HELPER_STOPPED) {}
    world_detach_all();
    return 0;
}

/* clone(2) by hand: the child starts on `top` and calls fn(arg), then exits; the
 * parent gets the child's id or -errno. */
static long world_clone(unsigned long flags, char *top, int (*fn)(void *), void *arg) {
    uintptr_t *sp = (uintptr_t *)top;
    *--sp = (uintptr_t)arg;
    *--sp = (uintptr_t)fn;
    register long r10 __asm__("r10") = 0;
    register long r8 __asm__("r8") = 0;
    long result;
    __asm__ volatile(
        "syscall\n\t"
        "testq %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xorl %%ebp, %%ebp\n\t"
        "popq %%rax\n\t"
        "popq %%rdi\n\t"
        "call *%%rax\n\t"
        "movq %%rax, %%rdi\n\t"
        "movl %[exit], %%eax\n\t"
        "syscall\n\t"
        "hlt\n"
        "1:"
        : "=a"(result)
        : "a"((long)SYS_clone), "D"(flags), "S"(sp), "d"(0L), "r"(r10), "r"(r8), [exit] "i"(SYS_exit)
        : "rcx", "r11", "memory");
    return result;
}

/* Whether a tracer (a debugger, strace) is attached: it would refuse ours. */
static int world_traced(void) {
    char b[2048];
    if (sg_world_read_file("/proc/self/status", b, sizeof b) <= 0) return 1;
    const char *t = strstr(b, "TracerPid:\t");
    return t == NULL || t[11] != '0';
}

static int world_only_thread(void) {
    char path[64], buffer[1024];
    sg_world_path(path, world_pid, 0, NULL);
    long fd = sg_world_sys(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0) return 0;
    int tasks = 0;
    long n;
    while ((n = sg_world_sys(SYS_getdents64, fd, (long)buffer, sizeof buffer, 0, 0, 0)) > 0) {
        for (long off = 0; off < n; off += *(unsigned short *)(buffer + off + 16))
            if (buffer[off + 19] >= '0' && buffer[off + 19] <= '9') tasks++;
    }
    sg_world_sys(SYS_close, fd, 0, 0, 0, 0, 0);
    return tasks == 1;
}

/* Reaps the helper, killing it when it does not end in 2 s (its tracees are then
 * detached by the kernel). */
static void world_reap_helper(void) {
    int status;
    for (int i = 0; i < 2000; i++) {
        if (sg_world_sys(SYS_wait4, world_helper_pid, (long)&status, __WALL | WNOHANG, 0, 0, 0) != 0) goto done;
        world_nap_us(1000);
    }
    sg_world_sys(SYS_kill, world_helper_pid, SIGKILL, 0, 0, 0, 0);
    sg_world_sys(SYS_wait4, world_helper_pid, (long)&status, __WALL, 0, 0, 0);
done:
    world_helper_pid = 0;
}

int sg_world_ptrace_stop(int timeout_ms) {
    if (__atomic_load_n(&world_ptrace_off, __ATOMIC_ACQUIRE) || world_traced()) return -2;
    world_pid = (int)sg_world_sys(SYS_getpid, 0, 0, 0, 0, 0, 0);
    world_self = (int)sg_world_sys(SYS_gettid, 0, 0, 0, 0, 0, 0);
    if (world_only_thread()) return 0;   /* nothing to stop: no helper */
    if (world_helper_stack == NULL) {
        long p = sg_world_sys(SYS_mmap, 0, WORLD_HELPER_STACK + 4096, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p < 0 && p > -4096) return -2;
        sg_world_sys(SYS_mprotect, p, 4096, PROT_NONE, 0, 0, 0);
        world_helper_stack = (char *)p;
    }
    world_deadline_ms = timeout_ms;
    __atomic_store_n(&world_helper_phase, HELPER_WAIT, __ATOMIC_RELEASE);
    sigset_t all, old;
    sigfillset(&all);
    sg_world_sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, 8, 0, 0);
    long pid = world_clone(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_UNTRACED,
                           world_helper_stack + WORLD_HELPER_STACK + 4096, world_helper, NULL);
    sg_world_sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, 8, 0, 0);
    if (pid < 0) {
        __atomic_store_n(&world_ptrace_off, 1, __ATOMIC_RELEASE);
        return -2;
    }
    world_helper_pid = (int)pid;
    /* Where Yama allows only ancestors to trace, name the helper (as LeakSanitizer does). */
    sg_world_sys(SYS_prctl, PR_SET_PTRACER, pid, 0, 0, 0, 0);
    world_set_phase(HELPER_GO);
    int phase = world_wait_phase(HELPER_GO, timeout_ms + 2000L);
    if (phase == HELPER_STOPPED) return sg_world_count;
    world_reap_helper();
    if (phase == HELPER_UNAVAILABLE) {
        __atomic_store_n(&world_ptrace_off, 1, __ATOMIC_RELEASE);
        return -2;
    }
    if (sg_world_unstopped == 0) sg_world_unstopped = world_self;   /* the helper itself did not answer */
    return -1;
}

void sg_world_ptrace_resume(void) {
    if (world_helper_pid != 0) {
        world_set_phase(HELPER_RESUME);
        world_reap_helper();
    }
    memset(sg_world_regs, 0, (size_t)sg_world_count * SG_WORLD_REGISTER_WORDS * sizeof(uintptr_t));
}

#else

int sg_world_ptrace_stop(int timeout_ms) { (void)timeout_ms; return -2; }
void sg_world_ptrace_resume(void) {}

#endif
