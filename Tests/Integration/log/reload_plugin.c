/* A plugin whose start allocates its state and forgets to initialise the counter in it
 * (the "second load" story: fresh pages read 0 the first time, recycled memory reads
 * whatever was there later).  plugin_stop frees the state. */
#include <stdio.h>
#include <stdlib.h>

struct state { unsigned counter; unsigned flags; };
static struct state *st;

void plugin_start(void) {
    st = malloc(sizeof *st);
    st->flags = 1;                      /* BUG: st->counter never set */
    printf("counter 0x%x\n", st->counter);
    fflush(stdout);
}

void plugin_stop(void) { free(st); st = NULL; }
