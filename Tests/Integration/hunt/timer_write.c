/* The seed's kbad story: main allocates a 64-byte session, starts a timer thread that
 * writes into it 50 ms later, and frees it before the timer fires; the write lands in
 * freed memory and is found at exit (heap verification).  The hunt must name the
 * timer's function (timer_fires) and its line. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct session { long refs; long expires; char name[48]; };

static void *timer_fires(void *arg) {
    struct session *s = arg;
    usleep(50000);
    s->expires = 0;                               /* TIMER WRITE */
    return NULL;
}

int main(void) {
    struct session *s = malloc(sizeof *s);
    memset(s, 0, sizeof *s);
    s->expires = 100;
    pthread_t timer;
    pthread_create(&timer, NULL, timer_fires, s);
    free(s);                                      /* before the timer fires */
    pthread_join(timer, NULL);
    puts("done");
    return 0;
}
