/* A plain dlopen/dlclose of system libraries, five times each (a plugin host's
 * life): correct, so no report.  ld.so keeps a dead pointer to the ld.so.cache
 * mapping it unmapped in its own data; when the next library lands on that range,
 * that word is not the program's stale pointer. */
#include <dlfcn.h>
#include <stdio.h>

int main(void) {
    static const char *const names[] = {"libbz2.so.1.0", "libz.so.1"};
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 2; i++) {
            void *h = dlopen(names[i], RTLD_NOW);
            if (h == NULL) { fprintf(stderr, "%s\n", dlerror()); return 2; }
            if (dlsym(h, i == 0 ? "BZ2_bzlibVersion" : "zlibVersion") == NULL) return 3;
            dlclose(h);
        }
    }
    puts("reloaded");
    return 0;
}
