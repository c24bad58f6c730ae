/* guard_mappings.c — under `guards`, a guarded buffer's data pages are a kernel
 * mapping of their own (GuardedAllocator.swift): changing their protection then
 * splits and merges nothing.  Prints, for a live buffer and for the same pages
 * after free, the mapping (from /proc/self/maps) that holds the buffer's first
 * byte, relative to the buffer's page, and the VmFlags of the guard page after
 * it (smaps), one line each:
 *     live <start-offset> <end-offset> <perms>
 *     freed <start-offset> <end-offset> <perms>
 *     guard <has dd>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int find(unsigned long address, unsigned long *start, unsigned long *end, char *perms) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "%lx-%lx %4s", start, end, perms) == 3 && *start <= address && address < *end) { found = 1; break; }
    }
    if (f != NULL) fclose(f);
    return found;
}

static int guard_left_out_of_dumps(unsigned long guard) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0, result = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        unsigned long s, e;
        /* A mapping's header line starts with its address in lower-case hex; its fields
         * ("Size:", "VmFlags:") with a capital. */
        int header = (line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f');
        if (header && sscanf(line, "%lx-%lx ", &s, &e) == 2) {
            inside = s <= guard && guard < e;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            result = strstr(line, " dd") != NULL;
            break;
        }
    }
    if (f != NULL) fclose(f);
    return result;
}

int main(void) {
    char *p = malloc(200);
    memset(p, 7, 200);
    unsigned long address = (unsigned long)p, page = address & ~4095UL, s, e;
    char perms[8];
    if (!find(address, &s, &e, perms)) return 2;
    printf("live %ld %ld %s\n", (long)(s - page), (long)(e - page), perms);
    int dd = guard_left_out_of_dumps(page + 4096);
    free(p);
    if (!find(address, &s, &e, perms)) return 2;
    printf("freed %ld %ld %s\n", (long)(s - page), (long)(e - page), perms);
    printf("guard %d\n", dd);
    return 0;
}
