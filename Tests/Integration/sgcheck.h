/* Shared by the integration programs: fail loudly unless malloc really is
 * slabguard's (the test runs them with LD_PRELOAD=libslabguard_rt.so). */
#ifndef SGCHECK_H
#define SGCHECK_H
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* Sizes the compiler cannot see, so it neither warns nor folds the calls away. */
static inline size_t opaque(size_t v) {
    volatile size_t hidden = v;
    return hidden;
}

/* SGCHECK_ON_LIBC=1 runs a libc-contract program on the C library itself, so the
 * test shows its expectations are glibc's behaviour, not slabguard's idea of it. */
static inline void require_slabguard(void) {
    if (getenv("SGCHECK_ON_LIBC") != NULL) return;
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    CHECK(dladdr((void *)m, &info) != 0 && info.dli_fname != NULL);
    if (strstr(info.dli_fname, "libslabguard_rt") == NULL) {
        fprintf(stderr, "malloc comes from %s, not slabguard\n", info.dli_fname);
        exit(1);
    }
    CHECK(dlsym(RTLD_DEFAULT, "sg_stats_print") != NULL);
}
#endif
