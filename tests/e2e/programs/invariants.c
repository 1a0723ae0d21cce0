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
 *   invariants eintr        blocking connect and recv interrupted by SIGALRM, without and with
 *                           SA_RESTART; prints each call's result (compare with and without)
 *   invariants nbconnect    non-blocking connects completed through poll, epoll and SO_ERROR,
 *                           one refused; prints what each step saw
 *   invariants msgtrunc     MSG_TRUNC and MSG_PEEK|MSG_TRUNC on UDP and TCP, partial sends on
 *                           a full non-blocking socket; prints results and the totals moved
 *   invariants epoll N      one thread: an epoll server and N non-blocking clients at once,
 *                           each sends 100 bytes and gets 200 back; prints the totals
 *   invariants chain K      a connection (1000 bytes out, 500 in), then posix_spawn of
 *                           `invariants chain K-1` in a new process, which execs the next
 *                           step in place; prints "chain K pid P" for every step
 *   invariants load T N SEND RECV S
 *                           T client threads each make N connections, one after another, to a
 *                           server of S threads (one listener); on each the client sends SEND
 *                           bytes, the server checks them and answers RECV bytes, then closes
 *                           first (its side keeps the TIME_WAIT, so the client's ephemeral
 *                           ports are free again at once); the client checks the answer, reads
 *                           to EOF and closes. Payloads depend on (thread, connection) only;
 *                           prints a line per thread (connections, bytes, FNV-1a of what it
 *                           received) and the totals, in thread order: no timing in the output
 *
 * The peer of every TCP socket here is a listener in the same process (loopback). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
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

/* Like CALL, with the exact return value (for calls whose size is the point). */
#define CALLX(expr)                                                                        \
    do {                                                                                   \
        errno = SENTINEL;                                                                  \
        long r_ = (long)(expr);                                                            \
        int e_ = errno;                                                                    \
        printf("%-60s -> %ld errno %d\n", #expr, r_, e_);                                  \
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

/* A fork storm: `waves` waves of `per_wave` children forked back to back, each wave waited
 * for before the next. Child i sends (i % 97 + 1) * 10 bytes over a connection of its own, and
 * one byte over the socket it inherited from the parent, then exits. A server thread drains
 * every child's connection; the parent drains the inherited one once all children are done. */
struct storm { int listener; long connections; long got; };

static void *storm_server(void *arg) {
    struct storm *st = arg;
    for (long i = 0; i < st->connections; i++) {
        int c = accept(st->listener, NULL, NULL);
        if (c < 0) { perror("accept"); exit(2); }
        st->got += drain(c);
        close(c);
    }
    return NULL;
}

static int forkstorm_test(int waves, int per_wave) {
    uint16_t port;
    int l = listener(&port);
    int inherited = connect_to(port);
    int inherited_peer = accept(l, NULL, NULL);
    struct storm st = {.listener = l, .connections = (long)waves * per_wave};
    pthread_t server;
    pthread_create(&server, NULL, storm_server, &st);
    long expected = 0, failed = 0;
    for (int w = 0; w < waves; w++) {
        for (int k = 0; k < per_wave; k++) {
            long i = (long)w * per_wave + k;
            expected += (i % 97 + 1) * 10;
            pid_t pid = fork();
            if (pid < 0) { perror("fork"); exit(2); }
            if (pid == 0) {
                int s = connect_to(port);
                send_all(s, (i % 97 + 1) * 10);
                close(s);
                send_all(inherited, 1);
                _exit(0);
            }
        }
        for (int k = 0; k < per_wave; k++) {
            int status;
            if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) failed++;
        }
    }
    pthread_join(server, NULL);
    shutdown(inherited, SHUT_WR);
    long inherited_got = drain(inherited_peer);
    printf("children %ld failed %ld got %ld expected %ld inherited_got %ld\n",
           st.connections, failed, st.got, expected, inherited_got);
    close(inherited); close(inherited_peer); close(l);
    return failed || st.got != expected ? 1 : 0;
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

/* ---- EINTR ------------------------------------------------------------------------------ */

static void on_tick(int sig) { (void)sig; }

static void arm(int restart) {
    struct sigaction sa = {0};
    sa.sa_handler = on_tick;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {.it_value = {0, 100 * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

/* A listener whose accept queue is full, so a new connect waits for a SYN-ACK that does not
 * come until the queue drains (the kernel drops the SYN; the client retries after ~1 s). The
 * filler connections are left in *fill (count in *nfill), all connected once drained. */
static int full_listener(uint16_t *port, int *fill, int *nfill) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 0)) { perror("listen"); exit(2); }
    socklen_t len = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    *nfill = 0;
    for (int i = 0; i < 8; i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(s, (struct sockaddr *)&a, sizeof a);
        fill[(*nfill)++] = s;
        struct pollfd p = {.fd = s, .events = POLLOUT};
        if (poll(&p, 1, 100) == 0) break; /* this one waits: the queue is full */
    }
    return l;
}

/* Accepts everything pending on l (the fillers and the tested connection), waiting for the
 * fillers' completion, so every connection ends up established and is closed. */
static void drain_fillers(int l, int *fill, int nfill) {
    for (int i = 0; i < nfill; i++) {
        struct pollfd p = {.fd = fill[i], .events = POLLOUT};
        int c = accept(l, NULL, NULL);
        poll(&p, 1, 5000);
        int err = -1;
        socklen_t len = sizeof err;
        getsockopt(fill[i], SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { fprintf(stderr, "filler %d: %s\n", i, strerror(err)); exit(2); }
        close(fill[i]);
        close(c);
    }
}

/* Sends 5 bytes on fd after 300 ms. */
static void *send_later(void *arg) {
    usleep(300 * 1000);
    send(*(int *)arg, "hello", 5, 0);
    return NULL;
}

/* Drains the full listener after 300 ms, from another thread. */
struct drain_args { int l; int *fill; int nfill; };
static void *drain_later(void *arg) {
    struct drain_args *da = arg;
    usleep(300 * 1000);
    drain_fillers(da->l, da->fill, da->nfill);
    return NULL;
}

static int eintr_test(void) {
    int fill[8], nfill;
    uint16_t port;
    char buf[16];
    for (int restart = 0; restart <= 1; restart++) {
        int l = full_listener(&port, fill, &nfill);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int s = socket(AF_INET, SOCK_STREAM, 0);
        arm(restart);
        if (restart) {
            /* The connect is restarted after the signal and completes once the queue drains:
             * drain from another thread while this one is blocked in connect. */
            pthread_t t;
            struct drain_args da = {l, fill, nfill};
            pthread_create(&t, NULL, drain_later, &da);
            CALL(connect(s, (struct sockaddr *)&a, sizeof a));
            pthread_join(t, NULL);
        } else {
            CALL(connect(s, (struct sockaddr *)&a, sizeof a));
            drain_fillers(l, fill, nfill);
            struct pollfd p = {.fd = s, .events = POLLOUT};
            CALL(poll(&p, 1, 5000));
            int err = -1;
            socklen_t len = sizeof err;
            CALL(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len));
            CALL(err);
        }
        int c = accept(l, NULL, NULL);
        CALL(c >= 0);
        CALL(send(s, "abcdefgh", 8, 0));
        CALL(recv(c, buf, 8, MSG_WAITALL));
        /* A blocking recv interrupted at 100 ms; data arrives at 300 ms. */
        pthread_t t;
        pthread_create(&t, NULL, send_later, &c);
        arm(restart);
        errno = SENTINEL;
        long r = recv(s, buf, sizeof buf, 0);
        printf("%-60s -> %ld errno %d\n", restart ? "recv(restarted)" : "recv(interrupted)", r, r < 0 ? errno : 0);
        if (r < 0) CALL(recv(s, buf, sizeof buf, 0));
        pthread_join(t, NULL);
        close(s); close(c); close(l);
    }
    signal(SIGALRM, SIG_DFL);
    return 0;
}

/* ---- non-blocking connect completions ------------------------------------------------------ */

static int nbconnect_test(void) {
    uint16_t port;
    int l = listener(&port);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in refused = {.sin_family = AF_INET, .sin_port = htons(1),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int err; socklen_t len = sizeof err;
    /* poll, then SO_ERROR. */
    int s1 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CALL(connect(s1, (struct sockaddr *)&a, sizeof a));
    struct pollfd p = {.fd = s1, .events = POLLOUT};
    CALL(poll(&p, 1, 5000));
    CALL(p.revents & (POLLOUT | POLLERR));
    CALL(getsockopt(s1, SOL_SOCKET, SO_ERROR, &err, &len));
    CALL(err);
    /* epoll, then a second connect (EISCONN) instead of SO_ERROR. */
    int s2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = s2}, out;
    CALL(connect(s2, (struct sockaddr *)&a, sizeof a));
    CALL(epoll_ctl(ep, EPOLL_CTL_ADD, s2, &ev));
    CALL(epoll_wait(ep, &out, 1, 5000));
    CALL(out.events & (EPOLLOUT | EPOLLERR));
    CALL(connect(s2, (struct sockaddr *)&a, sizeof a));
    /* epoll on a refused connect: EPOLLERR, then SO_ERROR says ECONNREFUSED (loopback may
     * also refuse at once; either way the output must not change under the interceptor). */
    int s3 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    epoll_ctl(ep, EPOLL_CTL_DEL, s2, NULL);
    ev.data.fd = s3;
    errno = SENTINEL;
    long r = connect(s3, (struct sockaddr *)&refused, sizeof refused);
    int e = errno;
    printf("%-60s -> %ld errno %d\n", "connect(s3, refused)", r, e);
    if (r < 0 && e == EINPROGRESS) {
        CALL(epoll_ctl(ep, EPOLL_CTL_ADD, s3, &ev));
        CALL(epoll_wait(ep, &out, 1, 5000));
        CALL(!!(out.events & EPOLLERR));
        len = sizeof err;
        CALL(getsockopt(s3, SOL_SOCKET, SO_ERROR, &err, &len));
        CALL(err == ECONNREFUSED);
    }
    /* Every established one carries bytes. */
    char buf[64];
    for (int i = 0; i < 2; i++) {
        int s = i ? s2 : s1;
        int c = accept(l, NULL, NULL);
        fcntl(s, F_SETFL, 0);
        CALL(send(s, "0123456789", 10, 0));
        CALL(recv(c, buf, 10, MSG_WAITALL));
        close(c);
    }
    close(s1); close(s2); close(s3); close(ep); close(l);
    return 0;
}

/* ---- MSG_TRUNC, MSG_PEEK, partial sends --------------------------------------------------- */

static int msgtrunc_test(void) {
    char buf[8];
    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(u2, (struct sockaddr *)&a, sizeof a);
    socklen_t len = sizeof a;
    getsockname(u2, (struct sockaddr *)&a, &len);
    connect(u1, (struct sockaddr *)&a, sizeof a);
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    CALLX(send(u1, "0123456789abcdef0123", 20, 0));
    CALLX(recvfrom(u2, buf, sizeof buf, MSG_PEEK | MSG_TRUNC, (struct sockaddr *)&from, &fl));
    CALLX(recvfrom(u2, buf, sizeof buf, MSG_TRUNC, (struct sockaddr *)&from, &fl));
    CALLX(send(u1, "0123456789abcdef0123", 20, 0));
    CALLX(recvfrom(u2, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl)); /* the rest is lost */
    CALLX(recvfrom(u2, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fl));
    uint16_t port;
    int l = listener(&port);
    int s = connect_to(port);
    int c = accept(l, NULL, NULL);
    CALLX(send(s, "0123456789", 10, 0));
    usleep(20 * 1000);
    CALLX(recv(c, NULL, 4, MSG_TRUNC));                    /* TCP: 4 bytes discarded */
    CALLX(recv(c, buf, sizeof buf, MSG_PEEK));
    CALLX(recv(c, buf, sizeof buf, 0));
    /* Partial sends: fill a small non-blocking send buffer nobody reads. */
    int small = 4096;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    fcntl(s, F_SETFL, O_NONBLOCK);
    static char big[1 << 20];
    long sent = 0, partial = 0, k;
    while ((k = send(s, big, sizeof big, MSG_NOSIGNAL)) > 0) {
        sent += k;
        if (k < (long)sizeof big) partial++;
    }
    printf("%-60s -> %s\n", "send(full buffer)", k < 0 && errno == EAGAIN && partial > 0 ? "partial then EAGAIN" : "other");
    long got = 0, n;
    fcntl(s, F_SETFL, 0);
    shutdown(s, SHUT_WR);
    while ((n = recv(c, big, sizeof big, 0)) > 0) got += n;
    printf("%-60s -> %s\n", "receiver got every byte sent", got == sent ? "yes" : "no");
    fprintf(stderr, "tcp_bytes %ld\n", sent + 10);
    close(s); close(c); close(l); close(u1); close(u2);
    return 0;
}

/* ---- an epoll server with many concurrent clients ----------------------------------------- */

static int epoll_test(int n) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((long)rl.rlim_cur < 2L * n + 64) { fprintf(stderr, "fd limit %ld too low\n", (long)rl.rlim_cur); return 2; }
    uint16_t port;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 65535)) { perror("listen"); return 2; }
    socklen_t alen = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &alen);
    port = ntohs(a.sin_port);
    (void)port;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    /* Per fd: role (1 client, 2 server side), bytes done. */
    static int role[1 << 16];
    static long done[1 << 16];
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (s < 0 || s >= (1 << 16)) { perror("socket"); return 2; }
        if (connect(s, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) { perror("connect"); return 2; }
        role[s] = 1;
        done[s] = 0;
        ev.events = EPOLLOUT;
        ev.data.u64 = (uint64_t)s + 1;
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    }
    long clients_done = 0, out = 0, in = 0;
    char buf[4096];
    memset(buf, 'e', sizeof buf);
    static struct epoll_event evs[1024];
    while (clients_done < n) {
        int k = epoll_wait(ep, evs, 1024, 10000);
        if (k <= 0) { fprintf(stderr, "epoll stalled at %ld clients\n", clients_done); return 3; }
        for (int i = 0; i < k; i++) {
            if (evs[i].data.u64 == 0) {
                int c;
                while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    role[c] = 2;
                    done[c] = 0;
                    ev.events = EPOLLIN;
                    ev.data.u64 = (uint64_t)c + 1;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            int fd = (int)(evs[i].data.u64 - 1);
            if (role[fd] == 1 && done[fd] == 0) {          /* connected: send 100 */
                int err = 0; socklen_t el = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) { fprintf(stderr, "connect: %s\n", strerror(err)); return 2; }
                if (send(fd, buf, 100, 0) != 100) { perror("send"); return 2; }
                out += 100;
                done[fd] = -1;
                ev.events = EPOLLIN;
                ev.data.u64 = (uint64_t)fd + 1;
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
            } else if (role[fd] == 2) {                     /* server: read 100, answer 200 */
                long r = recv(fd, buf, 100 - done[fd], 0);
                if (r > 0) done[fd] += r;
                if (done[fd] == 100) {
                    if (send(fd, buf, 200, 0) != 200) { perror("send"); return 2; }
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                }
            } else if (role[fd] == 1) {                     /* client: read 200 */
                long r = recv(fd, buf, sizeof buf, 0);
                if (r > 0) { done[fd] -= r; in += r; }
                if (done[fd] == -201 || r == 0) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                    clients_done++;
                }
            }
        }
    }
    printf("clients %d sent %ld received %ld\n", n, out, in);
    close(ep); close(l);
    return 0;
}

/* ---- posix_spawn / exec chains ------------------------------------------------------------ */

extern char **environ;

static int chain_test(const char *self, int k) {
    uint16_t port;
    int l = listener(&port);
    fcntl(l, F_SETFD, FD_CLOEXEC);
    int s = connect_to(port);
    fcntl(s, F_SETFD, FD_CLOEXEC);
    int c = accept(l, NULL, NULL);
    send_all(s, 1000);
    char buf[1000];
    recv(c, buf, sizeof buf, MSG_WAITALL);
    send(c, buf, 500, 0);
    recv(s, buf, 500, MSG_WAITALL);
    close(s); close(c); close(l);
    printf("chain %d\n", k);
    if (k <= 1) return 0;
    char arg[16];
    snprintf(arg, sizeof arg, "%d", k - 1);
    char *argv[] = {(char *)self, "chain", arg, NULL};
    if (k % 2) { /* odd steps spawn a new process and wait for it */
        pid_t pid;
        if (posix_spawn(&pid, self, NULL, NULL, argv, environ)) { perror("posix_spawn"); return 2; }
        int st;
        waitpid(pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 3;
    }
    execv(self, argv); /* even steps replace themselves */
    perror("execv");
    return 2;
}

/* ---- many threads, many connections ------------------------------------------------------ */

static struct {
    int listener;
    struct sockaddr_in addr;
    long per_thread, send, recv, total;
    long accept_tickets; /* atomic: one per accept, so the servers stop after exactly `total` */
    long server_bad;     /* atomic: requests whose bytes were not what the client sent */
} load;

struct load_thread {
    pthread_t id;
    int index;
    long connections, sent, received;
    uint32_t fnv;
};

static uint8_t load_request_byte(uint32_t t, uint32_t i, long j) { return (uint8_t)(t * 131 + i * 31 + j * 7); }
static uint8_t load_answer_byte(uint32_t t, uint32_t i, long j) { return (uint8_t)(t * 17 + i * 13 + j * 3 + 1); }

static void load_fail(const char *what, long t, long i) {
    fprintf(stderr, "load: thread %ld connection %ld: %s: %s\n", t, i, what, strerror(errno));
    exit(1);
}

static void *load_server(void *arg) {
    (void)arg;
    static __thread uint8_t buf[1 << 16];
    while (__atomic_fetch_add(&load.accept_tickets, 1, __ATOMIC_RELAXED) < load.total) {
        int c = accept(load.listener, NULL, NULL);
        if (c < 0) load_fail("accept", -1, -1);
        long got = 0;
        uint32_t who[2] = {0, 0};
        int bad = 0;
        while (got < load.send) {
            long n = recv(c, buf, load.send - got < (long)sizeof buf ? load.send - got : (long)sizeof buf, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) load_fail("server recv", -1, -1);
            for (long k = 0; k < n; k++) {
                long j = got + k;
                if (j < 8) ((uint8_t *)who)[j] = buf[k];
                else if (buf[k] != load_request_byte(who[0], who[1], j)) bad = 1;
            }
            got += n;
        }
        if (bad) __atomic_fetch_add(&load.server_bad, 1, __ATOMIC_RELAXED);
        long sent = 0;
        while (sent < load.recv) {
            long n = 0;
            for (; n < (long)sizeof buf && sent + n < load.recv; n++) buf[n] = load_answer_byte(who[0], who[1], sent + n);
            long w = send(c, buf, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) load_fail("server send", who[0], who[1]);
            sent += w;
        }
        close(c); /* first: the TIME_WAIT is the server's */
    }
    return NULL;
}

static void *load_client(void *arg) {
    struct load_thread *me = arg;
    uint32_t t = (uint32_t)me->index;
    static __thread uint8_t buf[1 << 16];
    me->fnv = 2166136261u;
    for (uint32_t i = 0; i < (uint32_t)load.per_thread; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) load_fail("socket", t, i);
        struct timeval tv = {30, 0};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        while (connect(s, (struct sockaddr *)&load.addr, sizeof load.addr))
            if (errno != EINTR) load_fail("connect", t, i);
        uint32_t who[2] = {t, i};
        long sent = 0;
        while (sent < load.send) {
            long n = 0;
            for (; n < (long)sizeof buf && sent + n < load.send; n++) {
                long j = sent + n;
                buf[n] = j < 8 ? ((uint8_t *)who)[j] : load_request_byte(t, i, j);
            }
            long w = send(s, buf, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) load_fail("send", t, i);
            sent += w;
        }
        long got = 0;
        for (;;) {
            long n = recv(s, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) load_fail("recv", t, i);
            if (n == 0) break;
            for (long k = 0; k < n; k++) {
                if (buf[k] != load_answer_byte(t, i, got + k)) {
                    fprintf(stderr, "load: thread %u connection %u: answer byte %ld differs\n", t, i, got + k);
                    exit(1);
                }
                me->fnv = (me->fnv ^ buf[k]) * 16777619u;
            }
            got += n;
        }
        if (got != load.recv) {
            fprintf(stderr, "load: thread %u connection %u: %ld bytes answered, not %ld\n", t, i, got, load.recv);
            exit(1);
        }
        close(s);
        me->connections++;
        me->sent += sent;
        me->received += got;
    }
    return NULL;
}

static int load_test(int threads, long per_thread, long send_n, long recv_n, int servers) {
    if (threads < 1 || per_thread < 1 || send_n < 8 || recv_n < 0 || servers < 1) return 2;
    load.per_thread = per_thread;
    load.send = send_n;
    load.recv = recv_n;
    load.total = threads * per_thread;
    load.listener = socket(AF_INET, SOCK_STREAM, 0);
    load.addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(load.listener, (struct sockaddr *)&load.addr, sizeof load.addr) || listen(load.listener, 4096)) {
        perror("listen");
        return 2;
    }
    socklen_t len = sizeof load.addr;
    getsockname(load.listener, (struct sockaddr *)&load.addr, &len);
    pthread_t *server = calloc((size_t)servers, sizeof *server);
    struct load_thread *client = calloc((size_t)threads, sizeof *client);
    for (int i = 0; i < servers; i++) pthread_create(&server[i], NULL, load_server, NULL);
    for (int i = 0; i < threads; i++) {
        client[i].index = i;
        pthread_create(&client[i].id, NULL, load_client, &client[i]);
    }
    long connections = 0, sent = 0, received = 0;
    uint32_t fnv = 2166136261u;
    for (int i = 0; i < threads; i++) {
        pthread_join(client[i].id, NULL);
        connections += client[i].connections;
        sent += client[i].sent;
        received += client[i].received;
        for (int k = 0; k < 4; k++) fnv = (fnv ^ (uint8_t)(client[i].fnv >> (8 * k))) * 16777619u;
    }
    for (int i = 0; i < servers; i++) pthread_join(server[i], NULL);
    close(load.listener);
    for (int i = 0; i < threads; i++)
        printf("thread %d connections %ld sent %ld received %ld fnv %08x\n", i, client[i].connections, client[i].sent,
               client[i].received, client[i].fnv);
    printf("connections %ld sent %ld received %ld fnv %08x server_mismatches %ld\n", connections, sent, received, fnv,
           load.server_bad);
    return load.server_bad ? 1 : 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "transcript")) return transcript();
    if (!strcmp(argv[1], "noalloc")) return noalloc();
    if (!strcmp(argv[1], "signal") && argc > 2) return signal_test(atol(argv[2]));
    if (!strcmp(argv[1], "fork") && argc > 3) return fork_test(atol(argv[2]), atol(argv[3]));
    if (!strcmp(argv[1], "vfork") && argc > 2) return vfork_test(atol(argv[2]));
    if (!strcmp(argv[1], "forkstorm") && argc > 3) return forkstorm_test(atoi(argv[2]), atoi(argv[3]));
    if (!strcmp(argv[1], "reuse") && argc > 2) return reuse_test(atol(argv[2]));
    if (!strcmp(argv[1], "eintr")) return eintr_test();
    if (!strcmp(argv[1], "nbconnect")) return nbconnect_test();
    if (!strcmp(argv[1], "msgtrunc")) return msgtrunc_test();
    if (!strcmp(argv[1], "epoll") && argc > 2) return epoll_test(atoi(argv[2]));
    if (!strcmp(argv[1], "chain") && argc > 2) return chain_test(argv[0], atoi(argv[2]));
    if (!strcmp(argv[1], "load") && argc > 6)
        return load_test(atoi(argv[2]), atol(argv[3]), atol(argv[4]), atol(argv[5]), atoi(argv[6]));
    return 2;
}
