/* Threads blocked in poll, select, nanosleep and epoll_wait (2 s each) while the
 * process scans for leaks — at exit (`blocked_calls exit`) or at a dlclose
 * (`blocked_calls dlclose LIB`).  A correct program: every call returns 0 at its
 * timeout (nanosleep: sleeps its whole time); an EINTR is a failure.  Prints
 * "ok blocked_calls" and exits 0.  In exit mode the results are checked at the last
 * step of exit, after the exit handlers (and slabguard's scan). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

enum { POLL, SELECT, SLEEP, EPOLL, CALLS };
static const char *names[CALLS] = {"poll", "select", "nanosleep", "epoll_wait"};
static int results[CALLS], errors[CALLS];
static long elapsed_ms[CALLS];
static pthread_t threads[CALLS];
static int fds[2];

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void *blocked(void *argument) {
    int call = (int)(long)argument;
    long start = now_ms();
    int r = 0;
    errno = 0;
    if (call == POLL) {
        struct pollfd p = {fds[0], POLLIN, 0};
        r = poll(&p, 1, 2000);
    } else if (call == SELECT) {
        fd_set set;
        FD_ZERO(&set);
        FD_SET(fds[0], &set);
        struct timeval t = {2, 0};
        r = select(fds[0] + 1, &set, NULL, NULL, &t);
    } else if (call == SLEEP) {
        struct timespec t = {2, 0};
        r = nanosleep(&t, NULL);
    } else {
        int e = epoll_create1(0);
        struct epoll_event event = {.events = EPOLLIN};
        epoll_ctl(e, EPOLL_CTL_ADD, fds[0], &event);
        r = epoll_wait(e, &event, 1, 2000);
        close(e);
    }
    results[call] = r;
    errors[call] = r < 0 ? errno : 0;
    elapsed_ms[call] = now_ms() - start;
    return NULL;
}

static void check(void) {
    int failed = 0;
    for (int i = 0; i < CALLS; i++) {
        pthread_join(threads[i], NULL);
        if (results[i] != 0 || elapsed_ms[i] < 1900) {
            printf("%s returned %d (%s) after %ld ms\n", names[i], results[i], strerror(errors[i]), elapsed_ms[i]);
            failed = 1;
        }
    }
    if (failed) { fflush(stdout); _exit(1); }
    printf("ok blocked_calls\n");
    fflush(stdout);
}

/* Runs after every exit handler, slabguard's (registered before main) included: stdio's
 * flush at the very end of exit writes this stream's pending byte. */
static ssize_t late_write(void *cookie, const char *data, size_t size) {
    (void)cookie; (void)data;
    check();
    return (ssize_t)size;
}

int main(int argc, char **argv) {
    if (argc < 2 || pipe(fds) != 0) return 2;
    sigset_t none;   /* a test runner's thread may have started us with signals blocked */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int i = 0; i < CALLS; i++) pthread_create(&threads[i], NULL, blocked, (void *)(long)i);
    struct timespec settle = {0, 300000000};
    nanosleep(&settle, NULL);   /* every thread asleep in its call */
    if (strcmp(argv[1], "dlclose") == 0 && argc > 2) {
        void *library = dlopen(argv[2], RTLD_NOW);
        if (library == NULL) { printf("dlopen: %s\n", dlerror()); return 1; }
        dlclose(library);
        check();
        return 0;
    }
    FILE *late = fopencookie(NULL, "w", (cookie_io_functions_t){.write = late_write});
    fputc('x', late);   /* left for exit to flush */
    return 0;
}
