/* A bug that depends on the input: reads all of standard input, prints how many
 * bytes it read, and when the input starts with "stale", writes through a freed
 * buffer (apply_command).  The replay must get the same bytes to do it again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct command { long kind; long argument; char text[24]; };

struct command *parse_command(const char *input) {
    struct command *c = malloc(sizeof *c);
    memset(c, 0, sizeof *c);
    strncpy(c->text, input, sizeof c->text - 1);
    return c;
}

void apply_command(struct command *c) {
    c->argument = 42;                             /* INPUT WRITE */
}

int main(void) {
    static char head[64];
    size_t total = 0, n;
    char chunk[65536];
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        if (total < sizeof head - 1) memcpy(head + total, chunk, n < sizeof head - 1 - total ? n : sizeof head - 1 - total);
        total += n;
    }
    printf("read %zu bytes\n", total);
    fflush(stdout);
    struct command *c = parse_command(head);
    free(c);
    if (strncmp(head, "stale", 5) == 0) apply_command(c);
    return 0;
}
