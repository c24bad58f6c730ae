/*
 * sg_locks.c — every allocator lock goes through here (sg_shim.h).
 *
 * The only rule: a lock already held by the calling thread is never waited on.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <unistd.h>
#include "sg_shim.h"

/* A lock already held by the calling thread is never waited on: that happens only
 * when a signal handler called the allocator while the thread was inside it, or
 * left it with siglongjmp, and waiting would hang forever.  Each thread lists the
 * locks it holds or is taking (recorded before the attempt, removed after the
 * release, so a signal arriving in between still sees it); glibc's owner field
 * cannot tell, since a signal can land between its lock and its owner store.
 * The list has SG_HELD_LOCKS slots, a free slot being NULL (locks are released in
 * any order, so holes are normal); the fork handlers take two locks per cache, far
 * more than that, and the locks that find no free slot are only counted
 * (held_overflow), checked through glibc's owner field while any are.  A lock
 * released that is not listed is one of the counted ones. */
#define SG_HELD_LOCKS 16
static __thread pthread_mutex_t *held_locks[SG_HELD_LOCKS] __attribute__((tls_model("initial-exec")));
static __thread uint32_t held_count __attribute__((tls_model("initial-exec")));      /* listed + overflow */
static __thread uint32_t held_overflow __attribute__((tls_model("initial-exec")));   /* held, not listed */

static int mutex_held_by_caller(pthread_mutex_t *m) {
    for (uint32_t i = 0; i < SG_HELD_LOCKS; i++) if (held_locks[i] == m) return 1;
    if (held_overflow != 0) return __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) == (int)sg_gettid();
    return 0;
}

/* Takes m off the list; returns whether it was listed. */
static int unlist_lock(pthread_mutex_t *m) {
    for (uint32_t i = 0; i < SG_HELD_LOCKS; i++) {
        if (held_locks[i] == m) {
            held_locks[i] = NULL;
            __atomic_signal_fence(__ATOMIC_SEQ_CST);
            held_count--;
            return 1;
        }
    }
    return 0;
}

static void forget_lock(pthread_mutex_t *m) {
    if (unlist_lock(m)) return;
    if (held_overflow != 0) {
        held_overflow--;
        held_count--;
    }
}

static void note_lock(pthread_mutex_t *m) {
    uint32_t i = 0;
    while (i < SG_HELD_LOCKS && held_locks[i] != NULL) i++;
    if (i < SG_HELD_LOCKS) held_locks[i] = m; else held_overflow++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);   /* listed before the attempt, as a handler sees it */
    held_count++;
}

uint32_t sg_held_lock_count(void) { return held_count; }
int sg_holds_lock(pthread_mutex_t *m) { return mutex_held_by_caller(m); }

static void write_text(const char *text) {
    size_t n = 0;
    while (text[n] != 0) n++;
    while (n > 0) {
        ssize_t w = write(2, text, n);
        if (w <= 0) return;
        text += w;
        n -= (size_t)w;
    }
}

static void write_number(unsigned long v) {
    char digits[24];
    int i = sizeof digits;
    digits[--i] = 0;
    do { digits[--i] = (char)('0' + v % 10); v /= 10; } while (v != 0 && i > 0);
    write_text(digits + i);
}

static void reentry_headline(void) {
    write_text("slabguard: malloc re-entered from a signal handler\n  thread ");
    write_number((unsigned long)sg_gettid());
    write_text(" of process ");
    write_number((unsigned long)getpid());
    write_text(" called the allocator while it was already inside it: a signal handler interrupted\n"
               "  malloc or free and called it, or left it with siglongjmp.  ");
}

__attribute__((noreturn)) static void reentered(void) {
    reentry_headline();
    write_text("The lock it needs is held\n"
               "  by this same thread, so waiting would hang forever; malloc and free are not\n"
               "  async-signal-safe (signal-safety(7)).\n");
    abort();
}

__attribute__((noreturn)) void sg_report_debug_reentry(void) {
    reentry_headline();
    write_text("The checked path was\n"
               "  in the middle of changing this thread's magazine, quarantine batch or stack\n"
               "  scratch, so going on would corrupt the heap; malloc and free are not\n"
               "  async-signal-safe (signal-safety(7)).\n");
    abort();
}

/* The fork gate.  The fork handler takes every allocator lock in order; a thread
 * that takes one lock again and again (a heap verification or leak scan in a
 * loop holds the cache registry for milliseconds, then takes it back at once)
 * would win every race for it and starve the fork for seconds.  So while a fork
 * is gathering its locks, a thread about to take its first allocator lock waits
 * until the fork has them all.  Only threads that hold no allocator lock wait
 * here, and the forking thread takes nothing but allocator locks meanwhile, so
 * this wait always ends. */
static int fork_gate;   /* tid of the thread gathering its locks for fork, 0 when open */

static long gate_futex(int op, int value) {
    return syscall(SYS_futex, &fork_gate, op, value, NULL, NULL, 0);
}

static void wait_at_fork_gate(void) {
    if (held_count != 0) return;
    int closer = __atomic_load_n(&fork_gate, __ATOMIC_ACQUIRE);
    if (closer == 0) return;
    int self = (int)sg_gettid();
    while (closer != 0 && closer != self) {
        gate_futex(FUTEX_WAIT_PRIVATE, closer);
        closer = __atomic_load_n(&fork_gate, __ATOMIC_ACQUIRE);
    }
}

void sg_fork_gate_close(void) {
    int self = (int)sg_gettid();
    for (;;) {
        int expected = 0;
        if (__atomic_compare_exchange_n(&fork_gate, &expected, self, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return;
        if (expected == self) return;
        gate_futex(FUTEX_WAIT_PRIVATE, expected);   /* another thread's fork: after it */
    }
}

void sg_fork_gate_open(void) {
    __atomic_store_n(&fork_gate, 0, __ATOMIC_RELEASE);
    gate_futex(FUTEX_WAKE_PRIVATE, 0x7fffffff);
}

void sg_fork_gate_reset(void) { fork_gate = 0; }

void sg_mutex_lock(pthread_mutex_t *m) {
    if (mutex_held_by_caller(m)) reentered();
    wait_at_fork_gate();
    note_lock(m);
    pthread_mutex_lock(m);
}

int sg_mutex_lock_unless_held(pthread_mutex_t *m) {
    if (mutex_held_by_caller(m)) return 0;
    wait_at_fork_gate();
    note_lock(m);
    pthread_mutex_lock(m);
    return 1;
}

int sg_mutex_trylock(pthread_mutex_t *m) {
    if (mutex_held_by_caller(m)) return 0;
    note_lock(m);
    if (pthread_mutex_trylock(m) == 0) return 1;
    forget_lock(m);
    return 0;
}

void sg_mutex_unlock(pthread_mutex_t *m) {
    pthread_mutex_unlock(m);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    forget_lock(m);
}

/* In a forked child, on every lock the fork handler took (so each is held by this
 * thread, listed or counted): a fresh mutex, and the thread no longer holds it. */
void sg_mutex_reinit(pthread_mutex_t *m) {
    pthread_mutex_init(m, NULL);
    forget_lock(m);
}

/* The end of the fork child's handler: every allocator lock is fresh, so the
 * child's one thread holds none, whatever the counts say. */
void sg_held_locks_reset(void) {
    for (uint32_t i = 0; i < SG_HELD_LOCKS; i++) held_locks[i] = NULL;
    held_overflow = 0;
    held_count = 0;
}
