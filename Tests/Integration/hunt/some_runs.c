/* A bug that shows only on some runs: argv[1] names a counter file, read and
 * incremented by each run; argv[2] lists the runs (1-based, comma-separated) on
 * which a stale write happens.  So a hunt can be made to miss on some replays and
 * hit on others, deterministically. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct job { long state; long owner; char tag[16]; };

struct job *new_job(void) { struct job *j = malloc(sizeof *j); memset(j, 0, sizeof *j); return j; }

void finish_late(struct job *j) {
    j->owner = 7;                                 /* SOMETIMES WRITE */
}

static int run_number(const char *path) {
    int n = 0;
    FILE *f = fopen(path, "r");
    if (f) { if (fscanf(f, "%d", &n) != 1) n = 0; fclose(f); }
    n += 1;
    f = fopen(path, "w");
    if (f) { fprintf(f, "%d\n", n); fclose(f); }
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int run = run_number(argv[1]);
    int buggy = 0;
    char *list = strdup(argv[2]);
    for (char *w = strtok(list, ","); w; w = strtok(NULL, ",")) if (atoi(w) == run) buggy = 1;
    free(list);
    struct job *j = new_job();
    free(j);
    if (buggy) finish_late(j);
    printf("run %d\n", run);
    fflush(stdout);
    return 0;
}
