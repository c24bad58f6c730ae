/*
 * sg_world.h — what sg_world.c (the stop's interface, the signal method) and
 * sg_world_ptrace.c (the ptrace method) share: the thread table and raw system calls.
 * Private to the shim.
 */
#ifndef SG_WORLD_H
#define SG_WORLD_H
#include <stdint.h>

#define SG_WORLD_MAX_THREADS 8192
/* Registers kept per ptrace-stopped thread: r15 .. rdi (15) and fs_base. */
#define SG_WORLD_REGISTER_WORDS 16

/* Per thread of the table: where it stands in the stop. */
enum {
    SG_WORLD_SIGNALLED = 0,   /* asked to stop (signal sent, or ptrace interrupt), not stopped yet */
    SG_WORLD_STOPPED = 1,     /* stopped, or gone (exited, a zombie leader) */
    SG_WORLD_PARKED = 2,      /* asleep in the kernel, left there: its stack is read whole */
    SG_WORLD_BLOCKING = 3     /* signal method: running with the signal blocked, watched */
};

#define SG_HIDDEN __attribute__((visibility("hidden")))

SG_HIDDEN extern int sg_world_tids[SG_WORLD_MAX_THREADS];
SG_HIDDEN extern volatile int sg_world_acked[SG_WORLD_MAX_THREADS];
SG_HIDDEN extern uintptr_t sg_world_sp[SG_WORLD_MAX_THREADS];
SG_HIDDEN extern uintptr_t sg_world_regs[SG_WORLD_MAX_THREADS * SG_WORLD_REGISTER_WORDS];
SG_HIDDEN extern int sg_world_count;
SG_HIDDEN extern int sg_world_unstopped;
SG_HIDDEN extern int sg_world_unstopped_letter;

/* A system call that never touches errno or TLS (the ptrace helper shares the caller's
 * TLS pointer): the result, or -errno. */
SG_HIDDEN long sg_world_sys(long number, long a, long b, long c, long d, long e, long f);
/* "/proc/PID/task/TID/LEAF" (TID 0: "/proc/PID/task") into `path` (64 bytes). */
SG_HIDDEN void sg_world_path(char *path, int pid, int tid, const char *leaf);
/* Reads up to size-1 bytes of a file, NUL-terminated: the length, or -1. */
SG_HIDDEN long sg_world_read_file(const char *path, char *buffer, long size);
/* A task's state letter ('R', 'S', 'Z', ...; 0: gone); with `signal` non-zero, 'B' when
 * it blocks that signal asleep (S or D), 'b' when it blocks it running. */
SG_HIDDEN int sg_world_task_state(int pid, int tid, int signal);
/* Whether `tid` is in the table. */
SG_HIDDEN int sg_world_known(int tid);
/* Adds every task of /proc/PID/task not in the table yet (nor `self`) to it — its tid in
 * sg_world_tids[i], acked SG_WORLD_SIGNALLED, sg_world_sp 0 — and hands its index to
 * `visit`, which stops it (or marks it) and returns 0, or a negative value that ends the
 * walk.  How many were added; -1 when the directory cannot be read, -2 when the table is
 * full, or visit's negative value.  Raw system calls only (the ptrace helper runs it). */
SG_HIDDEN int sg_world_add_new_tasks(int pid, int self, int (*visit)(int index));

/* The ptrace method (sg_world_ptrace.c): the number of threads stopped or parked, -1 when
 * one did not stop in time (sg_world_unstopped names it), -2 when ptrace cannot be used
 * (the caller falls back to signals). */
SG_HIDDEN int sg_world_ptrace_stop(int timeout_ms);
SG_HIDDEN void sg_world_ptrace_resume(void);

#endif
