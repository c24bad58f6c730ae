/* A program that sandboxes itself (seccomp, as OpenSSH's pre-auth child does) with an
 * allow-list covering what glibc's malloc needs, every thread at once (TSYNC), then
 * allocates in a thread that had not allocated before, and exits.  Neither gettid nor
 * rt_sigaction is on the list: a system call the allocator makes that glibc's would
 * not kills the process with SIGSYS. */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DENY_ERRNO(nr, e) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (e))
#define ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

static pthread_barrier_t sandboxed;

static void *worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&sandboxed);
    for (int i = 0; i < 20000; i++) {
        char *p = malloc((size_t)(i % 900) + 16);
        p[0] = 1;
        free(p);
    }
    return NULL;
}

int main(void) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        DENY_ERRNO(SYS_open, 13), DENY_ERRNO(SYS_openat, 13), DENY_ERRNO(SYS_stat, 13), DENY_ERRNO(SYS_newfstatat, 13),
        ALLOW(SYS_brk), ALLOW(SYS_mmap), ALLOW(SYS_munmap), ALLOW(SYS_mremap), ALLOW(SYS_madvise), ALLOW(SYS_mprotect),
        ALLOW(SYS_futex), ALLOW(SYS_read), ALLOW(SYS_write), ALLOW(SYS_close), ALLOW(SYS_exit), ALLOW(SYS_exit_group),
        ALLOW(SYS_clock_gettime), ALLOW(SYS_gettimeofday), ALLOW(SYS_getpid), ALLOW(SYS_rt_sigprocmask),
        ALLOW(SYS_set_robust_list), ALLOW(SYS_rseq), ALLOW(SYS_nanosleep),
        ALLOW(SYS_clock_nanosleep), ALLOW(SYS_getrandom), ALLOW(SYS_sched_yield), ALLOW(SYS_fstat),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof filter / sizeof filter[0]), filter};
    char *before = malloc(64);
    strcpy(before, "allocated before the sandbox");
    pthread_barrier_init(&sandboxed, NULL, 2);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) return 3;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) {
        perror("seccomp");
        return 2;
    }
    pthread_barrier_wait(&sandboxed);
    pthread_join(t, NULL);
    free(before);
    const char done[] = "sandboxed work done\n";
    (void)!write(1, done, sizeof done - 1);
    return 0;
}
