/* A double free in a program that runs on the allocator with no checks (fast mode,
 * sample=): glibc aborts ("free(): double free detected in tcache 2"); so must we,
 * rather than hand the same buffer to the next two mallocs. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    char *p = malloc(48);
    p[0] = 'x';
    free(p);
    free(p);
    char *a = malloc(48), *b = malloc(48);
    printf("%s\n", a == b ? "same buffer twice" : "two buffers");
    return 0;
}
