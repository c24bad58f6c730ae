/* start_tracer(): a child process attaches to this process's main thread with ptrace
 * (as a debugger would) and passes every signal through, so that the thread has a
 * tracer (TracerPid) and slabguard cannot stop the world with ptrace: its signal
 * fallback is used.  0 once the tracer is attached. */
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int start_tracer(void) {
    int ready[2];
    if (pipe(ready) != 0) return -1;
    pid_t tracee = getpid();
    pid_t tracer = fork();
    if (tracer < 0) return -1;
    if (tracer == 0) {
        char ok = ptrace(PTRACE_SEIZE, tracee, 0, 0) == 0 ? 1 : 0;
        (void)!write(ready[1], &ok, 1);
        if (!ok) _exit(1);
        for (;;) {
            int status;
            if (waitpid(tracee, &status, __WALL) < 0 || WIFEXITED(status) || WIFSIGNALED(status)) _exit(0);
            int sig = WSTOPSIG(status);
            if ((status >> 16) == PTRACE_EVENT_STOP) sig = 0;   /* a group stop: not a signal to pass */
            ptrace(PTRACE_CONT, tracee, 0, (void *)(long)sig);
        }
    }
    char ok = 0;
    if (read(ready[0], &ok, 1) != 1 || !ok) return -1;
    close(ready[0]);
    close(ready[1]);
    return 0;
}
