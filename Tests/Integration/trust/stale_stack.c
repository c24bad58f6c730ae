/* stale_stack.c — a leak whose only remaining copy is in a dead stack frame: a deep
 * call kept the buffer's address in a local 48 KiB below main's frame, returned, and
 * the program dropped every live reference before exit.  Valgrind and LeakSanitizer
 * read a stack from its stack pointer up and report the 40 bytes as lost; so must
 * slabguard (the dead frame lies below the leak scan's own).  With "near" the frame is
 * 6 KiB deep, where the exit handler's frames lie at exit: the scan reads the exiting
 * thread's stack from the handler's entry up, not through its own frames.  With the argument
 * "thread", another thread calls exit while main waits in pthread_join: the scan then
 * reads main's stack from where the stop signal found it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *volatile live;

__attribute__((noinline)) static void deep(void) {
    volatile void *frame[6144];   /* 48 KiB */
    frame[0] = live;              /* the lowest address of the frame */
    for (int i = 1; i < 6144; i++) frame[i] = 0;
}

/* 6 KiB deep: where, at exit, the exit handler's own frames lie (9 KiB of them). */
__attribute__((noinline)) static void near(void) {
    volatile void *frame[768];
    frame[0] = live;
    for (int i = 1; i < 768; i++) frame[i] = 0;
}

/* Whether the main thread sleeps with no signal blocked (in pthread_join, not still in
 * pthread_create, which blocks every signal: a thread asleep with the stop signal
 * blocked is left where it is and its whole stack read). */
static int main_waits(void) {
    char path[64], text[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)getpid());
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *state = strstr(text, "State:\t"), *blocked = strstr(text, "SigBlk:\t");
    return state != NULL && blocked != NULL && state[7] == 'S' && strncmp(blocked + 8, "0000000000000000", 16) == 0;
}

static void *exit_from_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 5000 && !main_waits(); i++) usleep(1000);
    printf("ok stale_stack\n");
    fflush(stdout);
    exit(0);
}

int main(int argc, char **argv) {
    live = malloc(40);
    memset((void *)live, 7, 40);
    if (argc > 1 && strcmp(argv[1], "near") == 0) near(); else deep();
    live = NULL;
    if (argc > 1 && strcmp(argv[1], "thread") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, exit_from_thread, NULL);
        pthread_join(t, NULL);
        return 1;   /* not reached: the thread exits the process */
    }
    printf("ok stale_stack\n");
    return 0;
}
