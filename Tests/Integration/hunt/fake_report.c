/* Stands in for the library in the hunt's parsing tests: without SLABGUARD_HUNT, sends
 * the file argv[1] (a report written by hand) as one datagram on the report channel,
 * as the library does, and exits 0; with it (a replay), prints its value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv) {
    const char *hunt = getenv("SLABGUARD_HUNT");
    if (hunt) { printf("SLABGUARD_HUNT=%s\n", hunt); return 0; }
    const char *path = getenv("SLABGUARD_REPORT_SOCKET");
    if (argc < 2 || !path) return 2;
    static char text[65536];
    FILE *f = fopen(argv[1], "r");
    if (!f) return 2;
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un to = { .sun_family = AF_UNIX };
    strncpy(to.sun_path, path, sizeof to.sun_path - 1);
    if (sendto(fd, text, n, 0, (struct sockaddr *)&to, sizeof to) != (ssize_t)n) return 3;
    return 0;
}
