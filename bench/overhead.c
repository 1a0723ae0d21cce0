/* Workloads for the interceptor overhead benchmark (bench/run.sh runs each with and without
 * netmon and reports the ratio). Every mode prints "<mode> <iterations> <elapsed ns>".
 *
 *   pingpong N   64-byte request/response over loopback TCP, N round trips
 *   connect N    socket + connect + close to a loopback listener, N times
 *   gai N        getaddrinfo("localhost") N times
 *   bulk BYTES   one connection sends BYTES in 64 KiB writes
 *   send N       N one-byte send() calls on a connected socket (for instruction counts)
 *
 * The peer of every connection is a server process this program starts with NETMON_DISABLE=1
 * (`overhead serve`), so only the client side — the monitored program — is measured, as for
 * a function talking to a remote service.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
}

static int listener(uint16_t *port) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096)) { perror("listen"); exit(2); }
    socklen_t len = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return l;
}

static int connect_to(uint16_t port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); exit(2); }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

/* ---- the unmonitored server: `serve echo|drain|accept`, one connection at a time ------- */
static int serve(const char *what) {
    uint16_t port;
    int l = listener(&port);
    printf("%u\n", port);
    fflush(stdout);
    static char buf[1 << 16];
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        if (!strcmp(what, "echo")) {
            int one = 1;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            for (;;) {
                long got = 0;
                while (got < 64) {
                    long n = recv(c, buf + got, 64 - got, 0);
                    if (n <= 0) break;
                    got += n;
                }
                if (got < 64) break;
                send(c, buf, 64, 0);
            }
        } else if (!strcmp(what, "drain")) {
            while (read(c, buf, sizeof buf) > 0) {}
        }
        close(c);
    }
    return 0;
}

/* Starts `argv0 serve WHAT` with NETMON_DISABLE=1 and returns its port. */
static pid_t server_pid;
static uint16_t start_server(const char *argv0, const char *what) {
    int p[2];
    if (pipe(p)) exit(2);
    char *env[256];
    int k = 0;
    for (char **e = environ; *e && k < 254; e++) env[k++] = *e;
    env[k++] = "NETMON_DISABLE=1";
    env[k] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    char *args[] = {(char *)argv0, "serve", (char *)what, NULL};
    if (posix_spawn(&server_pid, argv0, &fa, NULL, args, env)) { perror("spawn"); exit(2); }
    close(p[1]);
    char line[32] = {0};
    long n = read(p[0], line, sizeof line - 1);
    close(p[0]);
    if (n <= 0) { fprintf(stderr, "server did not start\n"); exit(2); }
    return (uint16_t)atoi(line);
}

static void stop_server(void) {
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: overhead MODE N\n"); return 2; }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    if (!strcmp(mode, "serve")) return serve(argv[2]);
    uint16_t port = 0;
    if (!strcmp(mode, "pingpong")) port = start_server(argv[0], "echo");
    else if (!strcmp(mode, "connect")) port = start_server(argv[0], "accept");
    else if (strcmp(mode, "gai")) port = start_server(argv[0], "drain");
    uint64_t t0, t1;
    if (!strcmp(mode, "pingpong")) {
        int s = connect_to(port);
        char buf[64] = {0};
        t0 = now_ns();
        for (long i = 0; i < n; i++) {
            send(s, buf, 64, 0);
            long got = 0;
            while (got < 64) got += recv(s, buf + got, 64 - got, 0);
        }
        t1 = now_ns();
        close(s);
    } else if (!strcmp(mode, "connect")) {
        t0 = now_ns();
        for (long i = 0; i < n; i++) close(connect_to(port));
        t1 = now_ns();
    } else if (!strcmp(mode, "gai")) {
        t0 = now_ns();
        for (long i = 0; i < n; i++) {
            struct addrinfo *res = NULL, hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
            if (getaddrinfo("localhost", NULL, &hints, &res) == 0) freeaddrinfo(res);
        }
        t1 = now_ns();
    } else if (!strcmp(mode, "bulk")) {
        int s = connect_to(port);
        static char buf[1 << 16];
        t0 = now_ns();
        for (long left = n; left > 0;) {
            long k = write(s, buf, left < (long)sizeof buf ? left : (long)sizeof buf);
            if (k <= 0) break;
            left -= k;
        }
        close(s);
        t1 = now_ns();
    } else if (!strcmp(mode, "send")) {
        int s = connect_to(port);
        t0 = now_ns();
        for (long i = 0; i < n; i++) send(s, "x", 1, 0);
        t1 = now_ns();
        close(s);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    if (port) stop_server();
    printf("%s %ld %llu\n", mode, n, (unsigned long long)(t1 - t0));
    return 0;
}
