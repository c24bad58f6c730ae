/* setuid_log.c — linked with -lslabguard_rt and installed setuid root by the
 * test, then run by an unprivileged user with SLABGUARD_DEBUG=...,log=FILE
 * naming a file that user cannot write.  In secure execution the environment
 * must not make slabguard write files: FILE stays untouched, one line says the
 * option was ignored, the checks still run.  Prints "ok setuid_log EUID".
 * With the argument "double-free" it frees a buffer twice (run with noabort): the
 * report must go to its standard error, not to a socket the environment names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char *p = malloc(100);
    if (p == NULL) return 1;
    strcpy(p, "checked");
    free(p);
    if (argc > 1 && strcmp(argv[1], "double-free") == 0) free(p);
    printf("ok setuid_log %d\n", (int)geteuid());
    return 0;
}
