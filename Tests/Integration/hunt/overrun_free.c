/* A one-byte overrun found at free: a 13-byte name buffer gets 14 bytes (the
 * terminating zero of a 13-character name).  The hunt must name copy_name's line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *new_name(void) { return malloc(13); }

void copy_name(char *to, const char *from) {
    size_t n = strlen(from);
    memcpy(to, from, n);
    to[n] = 0;                                    /* OVERRUN: one past the end */
}

int main(void) {
    char *name = new_name();
    copy_name(name, "thirteen-char");
    printf("%s\n", name);
    free(name);
    return 0;
}
