/* A process that forks: the parent allocates in parent_work, the child in child_work
 * (then leaves with _exit, running no exit handlers).  With log=DIR/f.%p.log each
 * writes a log of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
__attribute__((noinline)) static void *parent_work(void) { return malloc(100); }
__attribute__((noinline)) static void *child_work(void) { return malloc(200); }
int main(void) {
    void *p = parent_work();
    pid_t c = fork();
    if (c == 0) { void *q = child_work(); free(q); free(p); _exit(0); }
    waitpid(c, NULL, 0);
    free(p);
    printf("child %d\n", (int)c);
    return 0;
}
