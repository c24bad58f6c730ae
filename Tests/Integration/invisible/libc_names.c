/* glibc's own allocator names mixed with the standard ones, both ways: with the
 * drop-in they must be one allocator (glibc aborts on nothing here either). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

int main(void) {
    char *a = __libc_malloc(100);
    strcpy(a, "from __libc_malloc");
    a = realloc(a, 4000);
    free(a);
    char *b = malloc(50);
    b = __libc_realloc(b, 70);
    __libc_free(b);
    char *c = __libc_calloc(10, 10);
    for (int i = 0; i < 100; i++) if (c[i] != 0) return 1;
    free(c);
    void *d = __libc_memalign(256, 100);
    if (((unsigned long)d & 255) != 0) return 2;
    free(d);
    void *e;
    int r = posix_memalign(&e, (size_t)1 << 63, 16);
    printf("posix_memalign(2^63): %s\n", r == 12 ? "ENOMEM" : r == 22 ? "EINVAL" : "other");
    puts("ok");
    return 0;
}
