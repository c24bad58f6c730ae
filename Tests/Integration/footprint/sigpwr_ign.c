/* A program that ignores SIGPWR: after a leak scan at dlclose (a thread asleep
 * meanwhile, so the scan has a thread to stop), it still reads SIG_IGN, and a child it
 * execs inherits SIG_IGN.  `sigpwr_ign LIB [traced]` (traced: a tracer attached, so
 * the signal fallback stops the world; see traced.h); `sigpwr_ign child` prints the disposition it inherited.  Prints
 * "ok sigpwr_ign" and exits 0. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "traced.h"

static const char *disposition(void) {
    struct sigaction a;
    sigaction(SIGPWR, NULL, &a);
    if (a.sa_flags & SA_SIGINFO) return "handled";
    return a.sa_handler == SIG_IGN ? "ignored" : a.sa_handler == SIG_DFL ? "default" : "handled";
}

static void *sleeper(void *unused) {
    (void)unused;
    struct timespec t = {1, 0};
    while (nanosleep(&t, &t) != 0) {}
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (strcmp(argv[1], "child") == 0) { printf("child: SIGPWR %s\n", disposition()); return 0; }
    if (argc > 2 && strcmp(argv[2], "traced") == 0 && start_tracer() != 0) { printf("no tracer\n"); return 1; }
    signal(SIGPWR, SIG_IGN);
    pthread_t thread;
    pthread_create(&thread, NULL, sleeper, NULL);
    struct timespec settle = {0, 200000000};
    nanosleep(&settle, NULL);
    void *library = dlopen(argv[1], RTLD_NOW);
    if (library == NULL) { printf("dlopen: %s\n", dlerror()); return 1; }
    dlclose(library);
    printf("after dlclose: SIGPWR %s\n", disposition());
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        execl("/proc/self/exe", argv[0], "child", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    pthread_join(thread, NULL);
    printf("ok sigpwr_ign\n");
    return 0;
}
