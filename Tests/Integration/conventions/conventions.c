/* conventions.c — one small program per run convention of design §10, chosen by argv[1].
 * Compiled at -O0 so the deliberate bugs stay in.
 *   leak            one 77-byte buffer dropped, exit 0
 *   leak-exit3      the same, exit 3
 *   double-free N   N identical double frees (run with noabort), exit 0
 *   fork-double     parent and forked child each double-free once (noabort)
 *   overrun         writes one byte past a 13-byte buffer, frees it
 *   modified        writes into a freed 64-byte buffer, then allocates the size again
 *   use-after-free  writes into a freed buffer (run with guards)
 *   clean           allocates and frees, exit 0
 *   fd2             prints where fd 2 points (readlink /proc/self/fd/2) on stdout
 *   big-stderr      40 MB to stderr in one line, no newline
 *   background      forks a child that writes "late line" to stderr 1 s after the parent exits
 *   fake-report     writes lines that look like a slabguard report to stderr
 *   order           "a" to stdout, "b" to stderr, "c" to stdout, unbuffered
 *   marker PATH     creates PATH (to show whether the program started at all) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static void *volatile sink;

static void drop_leak(void) {
    void *volatile p = malloc(77);
    memset(p, 1, 77);
    sink = (void *)((size_t)p ^ 0x5555);   /* no pointer to it left */
    p = NULL;
}

/* Clears the dead stack below main's frame, where drop_leak's and memset's copies of
 * the pointer would otherwise stay (the leak scan reads the whole stack, as a
 * conservative scan must). */
static void scrub_stack(void) {
    volatile char area[16384];
    for (size_t i = 0; i < sizeof area; i++) area[i] = 0;
}

static void twice(void) {
    void *p = malloc(32);
    free(p);
    free(p);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "clean";
    if (strcmp(mode, "leak") == 0) { drop_leak(); scrub_stack(); return 0; }
    if (strcmp(mode, "leak-exit3") == 0) { drop_leak(); scrub_stack(); return 3; }
    if (strcmp(mode, "double-free") == 0) {
        int n = argc > 2 ? atoi(argv[2]) : 1;
        for (int i = 0; i < n; i++) twice();
        return 0;
    }
    if (strcmp(mode, "timed-double-free") == 0) {
        /* allocated at t, freed at t + 0.2 s, freed again at t + 0.5 s: the report's times */
        struct timespec first = { 0, 200 * 1000 * 1000 }, second = { 0, 300 * 1000 * 1000 };
        char *p = malloc(40);
        nanosleep(&first, NULL);
        free(p);
        nanosleep(&second, NULL);
        free(p);
        return 0;
    }
    if (strcmp(mode, "fork-double") == 0) {
        pid_t child = fork();
        twice();
        if (child == 0) exit(0);   /* its exit handlers run: its own summary */
        int status;
        waitpid(child, &status, 0);
        printf("parent %d child %d\n", (int)getpid(), (int)child);
        return 0;
    }
    if (strcmp(mode, "overrun") == 0) {
        char *p = malloc(13);
        memset(p, 'x', 14);
        free(p);
        return 0;
    }
    if (strcmp(mode, "modified") == 0) {
        char *p = malloc(64);
        free(p);
        p[8] = 'x';
        sink = malloc(64);
        return 0;
    }
    if (strcmp(mode, "use-after-free") == 0) {
        char *p = malloc(64);
        free(p);
        p[8] = 'x';
        return 0;
    }
    if (strcmp(mode, "clean") == 0) {
        for (int i = 0; i < 100; i++) free(malloc(16 + i));
        return 0;
    }
    if (strcmp(mode, "fd2") == 0) {
        char target[4096];
        ssize_t n = readlink("/proc/self/fd/2", target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        printf("%s isatty=%d\n", target, isatty(2));
        return 0;
    }
    if (strcmp(mode, "big-stderr") == 0) {
        size_t size = 40u << 20;
        char *block = malloc(size);
        memset(block, 'z', size);
        for (size_t done = 0; done < size;) {
            ssize_t n = write(2, block + done, size - done);
            if (n <= 0) return 1;
            done += (size_t)n;
        }
        free(block);
        return 0;
    }
    if (strcmp(mode, "background") == 0) {
        if (fork() == 0) {
            sleep(1);
            const char line[] = "late line\n";
            if (write(2, line, sizeof line - 1) != (ssize_t)(sizeof line - 1)) _exit(1);
            _exit(0);
        }
        return 0;
    }
    if (strcmp(mode, "fake-report") == 0) {
        const char text[] = "slabguard: buffer modified after being freed\n    #0 0x1234 main+0x1 (/bin/true+0x10)\n\tend\x01\n";
        return write(2, text, sizeof text - 1) == (ssize_t)(sizeof text - 1) ? 0 : 1;
    }
    if (strcmp(mode, "order") == 0) {
        if (write(1, "a", 1) != 1 || write(2, "b", 1) != 1 || write(1, "c", 1) != 1) return 1;
        return 0;
    }
    if (strcmp(mode, "marker") == 0 && argc > 2) {
        int fd = open(argv[2], O_WRONLY | O_CREAT, 0600);
        if (fd >= 0) close(fd);
        return 0;
    }
    fprintf(stderr, "conventions: unknown mode %s\n", mode);
    return 64;
}
