/*
 * A client the interceptor cannot see: built with `gcc -static`, so LD_PRELOAD has no effect
 * on it (as with Go binaries), and it makes its socket calls with raw syscall(2) besides.
 *
 *   static_client [-w MS] TARGET...
 *     tcp:IP:PORT:REQ:RESP   connect, speak the raw protocol of support/servers.py (8-byte
 *                            header with REQ and RESP, then REQ bytes), read RESP bytes
 *     udp:IP:PORT            connect a UDP socket, send one datagram, wait for the echo
 *   IP is IPv4 (127.0.0.1) or IPv6 in brackets ([::1]). Every connection is held open for
 *   -w MS milliseconds after its exchange (default 0), then closed; targets run in order.
 *
 * Prints "ok" and exits 0 when every exchange completed; otherwise a message and exit 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, const char *target) {
    fprintf(stderr, "static_client: %s %s: %s\n", what, target, strerror(errno));
    exit(1);
}

static long sys_socket(int domain, int type) { return syscall(SYS_socket, domain, type, 0); }
static long sys_connect(int fd, const struct sockaddr *a, socklen_t n) {
    return syscall(SYS_connect, fd, a, n);
}
static long sys_send(int fd, const void *b, size_t n) {
    return syscall(SYS_sendto, fd, b, n, 0, NULL, 0);
}
static long sys_recv(int fd, void *b, size_t n) {
    return syscall(SYS_recvfrom, fd, b, n, 0, NULL, 0);
}

/* Parses "IP:PORT" or "[IP6]:PORT"; returns the rest after the port (":..." or ""). */
static const char *parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len) {
    char host[64];
    const char *port;
    memset(ss, 0, sizeof *ss);
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host) return NULL;
        memcpy(host, s + 1, end - s - 1);
        host[end - s - 1] = 0;
        port = end + 2;
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return NULL;
        a->sin6_port = htons((uint16_t)atoi(port));
        *len = sizeof *a;
    } else {
        const char *colon = strchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host) return NULL;
        memcpy(host, s, colon - s);
        host[colon - s] = 0;
        port = colon + 1;
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return NULL;
        a->sin_port = htons((uint16_t)atoi(port));
        *len = sizeof *a;
    }
    const char *rest = strchr(port, ':');
    return rest ? rest : port + strlen(port);
}

static void hold(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void exchange_tcp(const char *target, const char *spec, long wait_ms) {
    struct sockaddr_storage ss;
    socklen_t len;
    const char *rest = parse_addr(spec, &ss, &len);
    unsigned long req, resp;
    if (!rest || sscanf(rest, ":%lu:%lu", &req, &resp) != 2) {
        fprintf(stderr, "static_client: bad target %s\n", target);
        exit(2);
    }
    int fd = (int)sys_socket(ss.ss_family, SOCK_STREAM);
    if (fd < 0) die("socket", target);
    if (sys_connect(fd, (struct sockaddr *)&ss, len) != 0) die("connect", target);
    uint32_t header[2] = {htonl((uint32_t)req), htonl((uint32_t)resp)};
    if (sys_send(fd, header, sizeof header) != (long)sizeof header) die("send", target);
    char buf[65536];
    memset(buf, 'x', sizeof buf);
    for (unsigned long sent = 0; sent < req;) {
        size_t n = req - sent < sizeof buf ? req - sent : sizeof buf;
        long w = sys_send(fd, buf, n);
        if (w <= 0) die("send", target);
        sent += (unsigned long)w;
    }
    for (unsigned long got = 0; got < resp;) {
        long r = sys_recv(fd, buf, sizeof buf);
        if (r <= 0) die("recv", target);
        got += (unsigned long)r;
    }
    hold(wait_ms);
    shutdown(fd, SHUT_WR);
    while (sys_recv(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
}

static void exchange_udp(const char *target, const char *spec, long wait_ms) {
    struct sockaddr_storage ss;
    socklen_t len;
    if (!parse_addr(spec, &ss, &len)) {
        fprintf(stderr, "static_client: bad target %s\n", target);
        exit(2);
    }
    int fd = (int)sys_socket(ss.ss_family, SOCK_DGRAM);
    if (fd < 0) die("socket", target);
    if (sys_connect(fd, (struct sockaddr *)&ss, len) != 0) die("connect", target);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const char msg[] = "static-client-datagram";
    if (sys_send(fd, msg, sizeof msg) != (long)sizeof msg) die("send", target);
    char buf[256];
    if (sys_recv(fd, buf, sizeof buf) <= 0) die("recv", target);
    hold(wait_ms);
    close(fd);
}

int main(int argc, char **argv) {
    long wait_ms = 0;
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "-w") == 0) {
        wait_ms = atol(argv[i + 1]);
        i += 2;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: static_client [-w MS] tcp:IP:PORT:REQ:RESP | udp:IP:PORT ...\n");
        return 2;
    }
    for (; i < argc; i++) {
        if (strncmp(argv[i], "tcp:", 4) == 0)
            exchange_tcp(argv[i], argv[i] + 4, wait_ms);
        else if (strncmp(argv[i], "udp:", 4) == 0)
            exchange_udp(argv[i], argv[i] + 4, wait_ms);
        else {
            fprintf(stderr, "static_client: bad target %s\n", argv[i]);
            return 2;
        }
    }
    puts("ok");
    return 0;
}
