/* A buffer from glibc's own malloc (reached past the drop-in through libc.so.6's handle), freed
 * with the standard free: it goes back to glibc's heap, as it would without slabguard,
 * instead of an `invalid free` abort.  A pointer slabguard cannot place still is one. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void *(*glibc_malloc)(size_t) = libc != NULL ? (void *(*)(size_t))dlsym(libc, "malloc") : NULL;
    if (glibc_malloc == NULL) return 2;
    for (int i = 0; i < 1000; i++) {
        char *p = glibc_malloc(100 + i);
        memset(p, 'g', 100);
        free(p);
    }
    puts("freed 1000 of glibc's buffers");
    if (argc > 1) {   /* "bad": a pointer into the middle of the stack, freed */
        char local[16];
        free(local + 8);
    }
    return 0;
}
