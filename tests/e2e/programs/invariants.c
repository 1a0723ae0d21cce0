/* Exercises the interceptor's invariants from inside a real program.
 *
 *   invariants transcript   print every call's return value and errno (compare with and without
 *                           the interceptor: they must be identical)
 *   invariants noalloc      count allocations made during hooked socket calls (must be 0)
 *   invariants signal N     a SIGALRM handler writes N bytes to a socket while the main thread is
 *                           blocked in recv (EINTR, no SA_RESTART); prints bytes the peer got
 *   invariants fork N M     child sends N bytes on an inherited socket, parent M; prints both
 *   invariants vfork N      a vfork child closes and dup2s over the parent's sockets, then
 *                           _exits; the parent then sends N bytes
 *   invariants reuse N      one thread closes fd X while another opens sockets that reuse X;
 *                           N rounds; each new socket sends 10 bytes
 *
 * The peer of every TCP socket here is a listener in the same process (loopback). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- allocation counting: the executable's malloc interposes on every library's ---------- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static __thread int armed;
static __thread long allocations;
void *malloc(size_t n) { if (armed) allocations++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { if (armed) allocations++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { if (armed) allocations++; return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }

#define SENTINEL 4242
#define CALL(expr)                                                                         \
    do {                                                                                   \
        errno = SENTINEL;                                                                  \
        long r_ = (long)(expr);                                                            \
        int e_ = errno;                                                                    \
        printf("%-60s -> %ld errno %d\n", #expr, r_ < 0 ? -1L : (r_ > 2 ? 3L : r_), e_); \
    } while (0)

static int listener(uint16_t *port) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 128)) { perror("listen"); exit(2); }
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
    return s;
}

static long drain(int fd) {
    char buf[65536];
    long total = 0, n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) total += n;
    return total;
}

static void send_all(int fd, long n) {
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    while (n > 0) {
        long k = send(fd, buf, n < (long)sizeof buf ? n : (long)sizeof buf, MSG_NOSIGNAL);
        if (k < 0) { if (errno == EINTR) continue; perror("send"); exit(2); }
        n -= k;
    }
}

static int transcript(void) {
    uint16_t port;
    int l = listener(&port);
    struct sockaddr_in closed = {.sin_family = AF_INET, .sin_port = htons(1),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in open_ = {.sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CALL(connect(s, (struct sockaddr *)&closed, sizeof closed));
    CALL(connect(s, (struct sockaddr *)&closed, 3));
    CALL(connect(-1, (struct sockaddr *)&closed, sizeof closed));
    CALL(send(s, "x", 1, MSG_NOSIGNAL));
    CALL(close(s));
    CALL(close(s));
    CALL(close(-1));
    s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CALL(connect(s, (struct sockaddr *)&open_, sizeof open_));
    int c = accept(l, NULL, NULL);
    CALL(c >= 0);
    int err = -1; socklen_t len = sizeof err;
    CALL(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len));
    CALL(err);
    CALL(send(s, "hello", 5, 0));
    char buf[16];
    CALL(recv(c, buf, sizeof buf, MSG_PEEK));
    CALL(recv(c, buf, sizeof buf, 0));
    CALL(recv(s, buf, sizeof buf, 0));          /* EAGAIN */
    CALL(write(s, "ab", 2));
    CALL(read(c, buf, 2));
    struct iovec iov[2] = {{"12", 2}, {"345", 3}};
    CALL(writev(s, iov, 2));
    CALL(readv(c, iov, 0));
    CALL(recv(c, buf, 0, 0));
    CALL(send(s, "", 0, 0));
    CALL(read(-1, buf, 1));
    CALL(write(-1, buf, 1));
    CALL(recv(0x7fffffff, buf, 1, 0));
    int p[2];
    CALL(pipe(p));
    CALL(write(p[1], "zz", 2));
    CALL(read(p[0], buf, 2));
    CALL(recv(p[0], buf, 1, 0));                  /* ENOTSOCK */
    CALL(dup(s) > 0);
    CALL(dup2(s, 1000));
    CALL(dup2(-5, 1001));
    CALL(dup3(s, s, 0));
    CALL(fcntl(s, F_DUPFD, 2000));
    CALL(fcntl(s, F_DUPFD_CLOEXEC, 2010));
    CALL(fcntl(s, F_GETFL) & O_NONBLOCK);
    CALL(fcntl(-1, F_GETFD));
    CALL(syscall(SYS_close, 2000));
    CALL(syscall(SYS_close, 2000));
    CALL(syscall(SYS_getpid) > 0);
    CALL(shutdown(s, SHUT_WR));
    CALL(shutdown(-1, SHUT_WR));
    CALL(close_range(1000, 1001, 0));
    CALL(close(2010));
    struct addrinfo *res = NULL;
    CALL(getaddrinfo("127.0.0.1", "80", NULL, &res));
    if (res) freeaddrinfo(res);
    CALL(getaddrinfo("localhost", NULL, NULL, &res));
    if (res) freeaddrinfo(res);
    CALL(getaddrinfo("no-such-name.invalid", NULL, NULL, &res));
    CALL(gethostbyname("localhost") != NULL);
    CALL(socketpair(AF_UNIX, SOCK_STREAM, 0, p));
    CALL(send(p[0], "u", 1, 0));
    CALL(recv(p[1], buf, 1, 0));
    CALL(socket(AF_INET, SOCK_RAW, 9999));
    CALL(socket(12345, SOCK_STREAM, 0));
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    CALL(sendto(u, "d", 1, 0, (struct sockaddr *)&closed, sizeof closed));
    CALL(sendto(u, "d", 1, 0, (struct sockaddr *)&closed, 2));
    CALL(close(u));
    CALL(close(s));
    CALL(close(c));
    CALL(close(l));
    return 0;
}

static int noalloc(void) {
    uint16_t port;
    int l = listener(&port);
    /* Warm-up outside the armed region: the first event of a thread claims a ring. */
    int w = connect_to(port);
    int wc = accept(l, NULL, NULL);
    close(w); close(wc);
    char buf[256];
    armed = 1;
    for (int i = 0; i < 100; i++) {
        int s = connect_to(port);
        int c = accept(l, NULL, NULL);
        send(s, "ping", 4, 0);
        recv(c, buf, sizeof buf, 0);
        write(c, "pong", 4);
        read(s, buf, sizeof buf);
        struct iovec v = {buf, 4};
        writev(s, &v, 1);
        readv(c, &v, 1);
        int d = dup(s);
        dup2(c, d);
        shutdown(s, SHUT_RDWR);
        close(d);
        close(s);
        close(c);
    }
    armed = 0;
    printf("allocations %ld\n", allocations);
    return 0;
}

static int sig_fd = -1;
static long sig_bytes;
static void on_alarm(int sig) {
    (void)sig;
    char b[4096];
    memset(b, 's', sizeof b);
    long n = sig_bytes;
    while (n > 0) {
        long k = write(sig_fd, b, n < (long)sizeof b ? n : (long)sizeof b);
        if (k <= 0) break;
        n -= k;
    }
}

static int signal_test(long n) {
    uint16_t port;
    int l = listener(&port);
    int s = connect_to(port);
    int c = accept(l, NULL, NULL);
    sig_fd = s;
    sig_bytes = n;
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm; /* no SA_RESTART: recv fails with EINTR */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval;
    alarm(1);
    char buf[16];
    long r = recv(s, buf, sizeof buf, 0);
    int e = errno;
    shutdown(s, SHUT_WR);
    long got = drain(c);
    close(s); close(c); close(l);
    printf("recv %ld errno %s peer_got %ld\n", r, e == EINTR ? "EINTR" : "other", got);
    return 0;
}

static int fork_test(long child_n, long parent_n) {
    uint16_t port;
    int l = listener(&port);
    int s = connect_to(port);
    int c = accept(l, NULL, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        send_all(s, child_n);
        close(s);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    send_all(s, parent_n);
    shutdown(s, SHUT_WR);
    long got = drain(c);
    printf("child_pid %d peer_got %ld\n", pid, got);
    close(s); close(c); close(l);
    return 0;
}

static int vfork_test(long n) {
    uint16_t port;
    int l = listener(&port);
    int s = connect_to(port);
    int c = accept(l, NULL, NULL);
    pid_t pid = vfork();
    if (pid == 0) {
        /* What Python's _posixsubprocess does in the child before exec: dup2 and close. */
        dup2(c, s);
        close(c);
        close(s);
        close_range(3, ~0U, 0);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    send_all(s, n);
    shutdown(s, SHUT_WR);
    long got = drain(c);
    printf("peer_got %ld\n", got);
    close(s); close(c); close(l);
    return 0;
}

static uint16_t reuse_port;
static volatile int reuse_done;
static void *reuse_opener(void *arg) {
    long rounds = (long)arg;
    for (long i = 0; i < rounds; i++) {
        int s = connect_to(reuse_port);
        send_all(s, 10);
        close(s);
    }
    return NULL;
}

static int reuse_test(long rounds) {
    int l = listener(&reuse_port);
    pthread_t t1, t2;
    pthread_create(&t1, NULL, reuse_opener, (void *)rounds);
    pthread_create(&t2, NULL, reuse_opener, (void *)rounds);
    long got = 0;
    for (long i = 0; i < 2 * rounds; i++) {
        int c = accept(l, NULL, NULL);
        got += drain(c);
        close(c);
    }
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    printf("peer_got %ld\n", got);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "transcript")) return transcript();
    if (!strcmp(argv[1], "noalloc")) return noalloc();
    if (!strcmp(argv[1], "signal") && argc > 2) return signal_test(atol(argv[2]));
    if (!strcmp(argv[1], "fork") && argc > 3) return fork_test(atol(argv[2]), atol(argv[3]));
    if (!strcmp(argv[1], "vfork") && argc > 2) return vfork_test(atol(argv[2]));
    if (!strcmp(argv[1], "reuse") && argc > 2) return reuse_test(atol(argv[2]));
    return 2;
}
