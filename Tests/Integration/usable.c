/* Prints what tells slabguard's malloc from glibc's: the usable size of a
 * 100-byte request (slabguard: its 112-byte size class; glibc: 104), where
 * malloc comes from, and sg_stats_print found through dlsym.  With the
 * argument "stats" it keeps 1000 such buffers and calls sg_stats_print(1). */
#include "sgcheck.h"
#include <malloc.h>

int main(int argc, char **argv) {
    void *p = malloc(100);
    CHECK(p != NULL);
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    const char *from = "?";
    if (dladdr((void *)m, &info) && info.dli_fname) {
        from = strstr(info.dli_fname, "libslabguard_rt") ? "libslabguard_rt" : "other";
    }
    printf("usable=%zu malloc=%s sg_stats_print=%s\n", malloc_usable_size(p), from,
           dlsym(RTLD_DEFAULT, "sg_stats_print") ? "yes" : "no");
    free(p);
    void (*stats)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "sg_stats_print");
    if (argc > 1 && strcmp(argv[1], "stats") == 0 && stats != NULL) {
        void *keep[1000];
        for (int i = 0; i < 1000; i++) keep[i] = malloc(100);
        fflush(stdout);
        stats(1);
        for (int i = 0; i < 1000; i++) free(keep[i]);
    }
    return 0;
}
