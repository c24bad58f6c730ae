/* A thread whose first allocator call comes after its key destructors are done — as
 * glibc's own clean-up frees a thread's state after them (__libc_thread_freeres).  Here
 * a key destructor keeps its value set for glibc's four rounds and frees a buffer of
 * main's in the last one.  The thread runs on a stack the program maps and unmaps
 * itself; then the program forks, and the child allocates.  A thread that ended must
 * not be remembered: the child once faulted reading its unmapped slots. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_key_t key;
static void *freed_late;
static int rounds;

static void destructor(void *value) {
    (void)value;
    if (++rounds < 4) { pthread_setspecific(key, (void *)1); return; }   /* again next round */
    free(freed_late);   /* the thread's first allocator call, in glibc's last round */
}

static void *thread(void *unused) {
    (void)unused;
    pthread_setspecific(key, (void *)1);
    return NULL;
}

int main(void) {
    pthread_key_create(&key, destructor);
    freed_late = malloc(40);
    size_t size = 256 << 10;
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, stack, size);
    pthread_t t;
    if (pthread_create(&t, &attr, thread, NULL) != 0) return 2;
    pthread_join(t, NULL);
    munmap(stack, size);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < 100; i++) free(malloc(64 + i));
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    printf("rounds %d, child %s\n", rounds, WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "died");
    return 0;
}
