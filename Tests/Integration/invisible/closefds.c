/* A daemon's start: close every descriptor past the standard three, then open its
 * data file (fd 3) and write it; leak one buffer (so there is something to report at
 * exit) and exit with the file still open.  The data file must hold exactly what the
 * program wrote, whatever slabguard writes at exit.  argv[1]: the data file; argv[2]
 * "limit": first lower the descriptor limit to 4, so that only fd 3 is free. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (argc > 2 && strcmp(argv[2], "limit") == 0) {
        struct rlimit limit = {4, 4};
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) { perror("setrlimit"); return 2; }
    }
    close_range(3, ~0U, 0);
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror("open"); return 3; }
    char line[64];
    for (int i = 0; i < 20; i++) {
        int n = snprintf(line, sizeof line, "record %02d of the program's own data\n", i);
        if (write(fd, line, (size_t)n) != n) return 4;
    }
    char *leaked = malloc(77);
    memset(leaked, 'L', 77);
    leaked = NULL;
    printf("data file on fd %d\n", fd);
    return 0;
}
