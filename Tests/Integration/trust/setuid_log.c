/* setuid_log.c — linked with -lslabguard_rt and installed setuid root by the
 * test, then run by an unprivileged user with SLABGUARD_DEBUG=...,log=FILE
 * naming a file that user cannot write.  In secure execution the environment
 * must not make slabguard write files: FILE stays untouched, one line says the
 * option was ignored, the checks still run.  Prints "ok setuid_log EUID". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    char *p = malloc(100);
    if (p == NULL) return 1;
    strcpy(p, "checked");
    free(p);
    printf("ok setuid_log %d\n", (int)geteuid());
    return 0;
}
