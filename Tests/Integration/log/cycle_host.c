/* Loads, uses and unloads the plugin named by argv[1] N times (argv[2], default 2000),
 * with 1,000 buffers of its own live; prints its peak RSS (VmHWM, KiB) after the first
 * tenth of the cycles and at the end: "hwm A B". */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long hwm(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f)) if (strncmp(line, "VmHWM:", 6) == 0) kib = atol(line + 6);
    if (f) fclose(f);
    return kib;
}

int main(int argc, char **argv) {
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    static void *keep[1000];
    for (int i = 0; i < 1000; i++) keep[i] = malloc(64);
    long early = 0;
    for (int i = 0; i < n; i++) {
        void *h = dlopen(argv[1], RTLD_NOW);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 3; }
        void *(*give)(void) = (void *(*)(void))dlsym(h, "plugin_give");
        free(give());
        dlclose(h);
        if (i == n / 10) early = hwm();
    }
    printf("hwm %ld %ld\n", early, hwm());
    for (int i = 0; i < 1000; i++) free(keep[i]);
    return 0;
}
