/* Storage for sg_shim.h: thread-local magazine slots and the heap's static state. */
#define _GNU_SOURCE
#include <errno.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include "sg_shim.h"

const char *sg_program_name(void) { return program_invocation_short_name; }

int sg_secure_execution(void) { return getauxval(AT_SECURE) != 0; }

/* An anonymous shared file (the live recorder of a run without log=), its descriptor
 * moved up to `floor` or above so the program's low numbers stay as they were; -1 on
 * failure (an old kernel, a seccomp filter, a descriptor limit below the floor). */
int sg_memory_file(const char *name, int floor) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, floor);
    close(fd);
    return high;
}

/* Puts descriptor `fd` at number `target` (a forked child's own live recorder, at the
 * number its parent's had) and closes `fd`; false on failure. */
int sg_move_descriptor(int fd, int target) {
    if (dup3(fd, target, O_CLOEXEC) < 0) return 0;
    close(fd);
    return 1;
}

__thread sg_magazine_slot sg_tls_slots[SG_MAX_CACHES] __attribute__((tls_model("initial-exec"), aligned(64)));
__thread uint32_t sg_tls_thread_state __attribute__((tls_model("initial-exec")));
__thread void *sg_tls_thread_record __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_reentry __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_debug_depth __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_thread_id __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_tag_slot __attribute__((tls_model("initial-exec")));
__thread int64_t sg_tls_sample_countdown __attribute__((tls_model("initial-exec")));
__thread void *sg_tls_quarantine[2 * SG_QUARANTINE_BATCH] __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_quarantine_count __attribute__((tls_model("initial-exec")));
__thread uint64_t sg_tls_log_next __attribute__((tls_model("initial-exec")));
__thread uint64_t sg_tls_log_end __attribute__((tls_model("initial-exec")));
__thread uintptr_t sg_tls_stack_scratch[SG_STACK_SCRATCH_FRAMES] __attribute__((tls_model("initial-exec")));
__thread sg_site_delta sg_tls_site_deltas[SG_SITE_DELTAS] __attribute__((tls_model("initial-exec")));

sg_state_layout sg_state;
sg_mode_words sg_mode __attribute__((aligned(8)));

/* The size-class table: the class of 8·i bytes at [i], computed by the preprocessor
 * from SizeClasses.index's formula (classes 8, 16…128 by 16, then 8 per doubling up
 * to 32768); TrustTests checks it against SizeClasses.index for every size. */
#define SG_LOG2(s) ((s) >= 16384 ? 14 : (s) >= 8192 ? 13 : (s) >= 4096 ? 12 : (s) >= 2048 ? 11 : \
                    (s) >= 1024 ? 10 : (s) >= 512 ? 9 : (s) >= 256 ? 8 : 7)
#define SG_CLASS_OF(size) ((size) <= 8 ? 0 : (size) <= 128 ? ((size) + 15) >> 4 : \
                           1 + (SG_LOG2((size) - 1) - 7) * 8 + (((size) - 1) >> (SG_LOG2((size) - 1) - 3)))
#define SG_C1(i) (uint8_t)(SG_CLASS_OF((i) * 8))
#define SG_C4(i) SG_C1(i), SG_C1((i) + 1), SG_C1((i) + 2), SG_C1((i) + 3)
#define SG_C16(i) SG_C4(i), SG_C4((i) + 4), SG_C4((i) + 8), SG_C4((i) + 12)
#define SG_C64(i) SG_C16(i), SG_C16((i) + 16), SG_C16((i) + 32), SG_C16((i) + 48)
#define SG_C256(i) SG_C64(i), SG_C64((i) + 64), SG_C64((i) + 128), SG_C64((i) + 192)
#define SG_C1024(i) SG_C256(i), SG_C256((i) + 256), SG_C256((i) + 512), SG_C256((i) + 768)
const uint8_t sg_size_class_table[SG_SMALL_MAX / 8 + 1] = {
    SG_C1024(0), SG_C1024(1024), SG_C1024(2048), SG_C1024(3072), SG_C1(4096)
};

/* Where glibc keeps the thread's kernel id in its thread descriptor (struct pthread's
 * tid: 0x2d0 on x86-64 from glibc 2.34 on), taken only when the main thread's value
 * there is its id; 0 means sg_gettid asks the kernel. */
int sg_tid_offset;

__attribute__((constructor)) static void sg_find_tid_field(void) {
#if defined(__x86_64__)
    static const int candidates[] = {0x2d0};
    int tid = (int)syscall(SYS_gettid);
    const char *self = (const char *)pthread_self();
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        if (*(const int *)(self + candidates[i]) == tid) { sg_tid_offset = candidates[i]; return; }
    }
#endif
}

/* Whether a seccomp filter may stand between slabguard and the kernel (the program
 * sandboxed itself): /proc/self/status says "Seccomp: 2", or cannot be opened at all
 * (an allow-list that refuses open, as OpenSSH's pre-auth sandbox does).  Work at
 * exit that needs system calls no allocator makes (a signal handler's removal, a
 * world stop) is then skipped: an unlisted call would kill the process with SIGSYS. */
int sg_system_calls_filtered(void) {
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == EACCES || errno == EPERM || errno == ENOSYS;   /* refused; not EMFILE */
    char text[4096];
    long n = syscall(SYS_read, fd, text, sizeof text - 1);
    syscall(SYS_close, fd);
    if (n <= 0) return 1;
    text[n] = 0;
    for (long i = 0; i + 10 < n; i++) {
        if ((i == 0 || text[i - 1] == '\n') && memcmp(text + i, "Seccomp:\t", 9) == 0) return text[i + 9] != '0';
    }
    return 0;
}

/* A pointer from glibc's own heap: the program (or a library) got it from glibc's malloc
 * without slabguard (through dlsym(RTLD_NEXT, "malloc"), say).  Where that can be known —
 * between the program break at load and the current one, with glibc's main arena in use
 * (mallinfo2) — free hands it to glibc's free instead of aborting on a buffer it does not
 * know.  Both found at load: nothing on the free path but sbrk(0), which glibc answers from
 * memory. */
static uintptr_t sg_initial_break;
static void (*sg_glibc_free)(void *);

__attribute__((constructor)) static void sg_find_glibc_heap(void) {
    sg_initial_break = (uintptr_t)sbrk(0);
    sg_glibc_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
}

int sg_free_foreign(void *p) {
    uintptr_t a = (uintptr_t)p;
    if (sg_glibc_free == NULL || sg_initial_break == 0 || a < sg_initial_break || a >= (uintptr_t)sbrk(0)) return 0;
    if (mallinfo2().arena == 0) return 0;
    sg_glibc_free(p);
    return 1;
}
