/* A stale write from another thread: main frees a session object while a worker still
 * holds it and, 60 ms later, bumps its reference count (the seed's kbad story).
 * argv[1]: "before" — the worker exists before the free; "after" — it is created after.
 * With watch, the write is reported at the instruction, in the worker. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct session { long refs; char name[40]; };
static struct session *current;

static void *bump_later(void *arg) {
    (void)arg;
    usleep(60000);
    current->refs += 1;           /* the write into freed memory */
    return NULL;
}

int main(int argc, char **argv) {
    int after = argc > 1 && strcmp(argv[1], "after") == 0;
    current = malloc(sizeof *current);
    current->refs = 1;
    strcpy(current->name, "session");
    pthread_t t;
    if (!after) pthread_create(&t, NULL, bump_later, NULL);
    usleep(20000);                /* past watch's 10 ms: this free gets a register */
    free(current);
    if (after) pthread_create(&t, NULL, bump_later, NULL);
    pthread_join(t, NULL);
    puts("done");
    return 0;
}
