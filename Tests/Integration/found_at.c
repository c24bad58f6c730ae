/* A write into a freed buffer, found after the fact: `reuse` — the next malloc of that
 * size hands the buffer out again (run without a quarantine); `verify` — sg_verify() finds
 * it; `exit` — the heap verification at exit finds it.  The write comes from a worker
 * thread; the report must say where and by which thread the damage was found. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "slabguard.h"

static char *victim;

static void *late_writer(void *unused) {
    (void)unused;
    victim[8] = 0x42;
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "exit";
    victim = malloc(64);
    memset(victim, 1, 64);
    free(victim);
    pthread_t t;
    pthread_create(&t, NULL, late_writer, NULL);
    pthread_join(t, NULL);
    if (strcmp(mode, "reuse") == 0) free(malloc(64));
    if (strcmp(mode, "verify") == 0) sg_verify();
    return 0;
}
