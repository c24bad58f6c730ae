/* The seed-style hunt (README): sessions are opened and closed by the main loop, 60,000
 * times, so each buffer serves several sessions.  Once, a timer thread expires a
 * session early — frees it — while the main loop still holds it and writes its counter
 * a moment later: a write after free, found when the buffer is next handed out.  The
 * buffer's history in the log has one rare call site, the timer's free. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct session { long id; long counter; char name[48]; };

static struct session *volatile expiring;
static volatile int expired;

__attribute__((noinline)) static struct session *open_session(long id) {
    struct session *s = malloc(sizeof *s);
    s->id = id; s->counter = 0;
    snprintf(s->name, sizeof s->name, "session-%ld", id);
    return s;
}

__attribute__((noinline)) static void close_session(struct session *s) { free(s); }

__attribute__((noinline)) static void expire_session(struct session *s) { free(s); }   /* BUG: the owner still uses it */

static void *timer(void *arg) {
    (void)arg;
    while (expiring == NULL) usleep(100);
    expire_session(expiring);
    expired = 1;
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, timer, NULL);
    for (long i = 0; i < 60000; i++) {
        struct session *s = open_session(i);
        if (i == 30000) {
            expiring = s;                     /* the timer fires on this one */
            while (!expired) usleep(100);
            s->counter++;                     /* the write after free */
            continue;                         /* (never closed: the timer freed it) */
        }
        s->counter++;
        close_session(s);
    }
    pthread_join(t, NULL);
    puts("done");
    return 0;
}
