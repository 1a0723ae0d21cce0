/* Workloads for the fault tests (test_faults.py): deterministic traffic with a known result,
 * and a rendezvous with the test so a fault can be injected while the program is busy.
 *
 *   workload steady R1 R2 SYNC   R1 rounds, then write the pid to SYNC.pid and wait (at most
 *                                60 s) until SYNC.go exists, then R2 more rounds. A round:
 *                                connect to a listener of this thread, send 1000 bytes, get
 *                                500 back, close. Prints "rounds N sent S received R exit 0".
 *   workload flood T N           T threads, N rounds each, as fast as they go (no waits): far
 *                                more events than a small ring holds between two reads.
 *                                Prints the same line.
 *   workload flood-for T SECS K  like flood, but for SECS seconds (monotonic clock) instead of
 *                                a number of rounds. Prints the same line (with the rounds it
 *                                made), then "slices" and the rounds made in each of K equal
 *                                slices of the time: the throughput over the run.
 *
 * Output and exit status depend only on the arguments (except flood-for, whose numbers depend
 * on the speed of the machine), so runs with and without netmon (or with a fault injected)
 * must print the same. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SEND 1000
#define RECV 500

struct listener {
    int fd;
    struct sockaddr_in addr;
};
static long total_sent, total_received, total_rounds;
static pthread_mutex_t totals_lock = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *what) {
    perror(what);
    exit(2);
}

static struct listener make_listener(void) {
    struct listener l = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
    l.addr.sin_family = AF_INET;
    l.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l.fd, (struct sockaddr *)&l.addr, sizeof l.addr) || listen(l.fd, 16)) die("listen");
    socklen_t len = sizeof l.addr;
    getsockname(l.fd, (struct sockaddr *)&l.addr, &len);
    return l;
}

static long io_all(int fd, char *buf, long n, int sending) {
    long done = 0;
    while (done < n) {
        long k = sending ? send(fd, buf + done, n - done, MSG_NOSIGNAL) : recv(fd, buf + done, n - done, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) die(sending ? "send" : "recv");
        done += k;
    }
    return done;
}

/* One round; the accepting side runs in the same thread (the listener backlog holds the
 * connection until accept). */
static void round_trip(const struct listener *l) {
    static __thread char buf[SEND];
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0) die("socket");
    if (connect(c, (struct sockaddr *)&l->addr, sizeof l->addr)) die("connect");
    int s = accept(l->fd, NULL, NULL);
    if (s < 0) die("accept");
    memset(buf, 'w', sizeof buf);
    long sent = io_all(c, buf, SEND, 1);
    io_all(s, buf, SEND, 0);
    io_all(s, buf, RECV, 1);
    long received = io_all(c, buf, RECV, 0);
    close(c);
    close(s);
    pthread_mutex_lock(&totals_lock);
    total_sent += sent;
    total_received += received;
    total_rounds += 1;
    pthread_mutex_unlock(&totals_lock);
}

static void report(void) {
    printf("rounds %ld sent %ld received %ld exit 0\n", total_rounds, total_sent, total_received);
}

static int steady(long r1, long r2, const char *sync) {
    char path[4096];
    struct listener l = make_listener();
    for (long i = 0; i < r1; i++) round_trip(&l);
    snprintf(path, sizeof path, "%s.pid", sync);
    FILE *f = fopen(path, "w");
    if (!f) die("pid file");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    snprintf(path, sizeof path, "%s.go", sync);
    struct timespec pause = {0, 5 * 1000 * 1000};
    for (int waited = 0; access(path, F_OK) != 0; waited++) {
        if (waited > 12000) {
            fprintf(stderr, "workload: %s never appeared\n", path);
            return 3;
        }
        nanosleep(&pause, NULL);
    }
    for (long i = 0; i < r2; i++) round_trip(&l);
    report();
    return 0;
}

static long flood_rounds;
static void *flood_thread(void *arg) {
    (void)arg;
    struct listener l = make_listener();
    for (long i = 0; i < flood_rounds; i++) round_trip(&l);
    close(l.fd);
    return NULL;
}

static double flood_seconds;
static int flood_slices;
static long flood_slice_rounds[1000];
static struct timespec flood_start;

static double seconds_since(const struct timespec *t0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void *flood_for_thread(void *arg) {
    (void)arg;
    struct listener l = make_listener();
    for (;;) {
        double t = seconds_since(&flood_start);
        if (t >= flood_seconds) break;
        round_trip(&l);
        int slice = (int)(t / flood_seconds * flood_slices);
        __atomic_fetch_add(&flood_slice_rounds[slice], 1, __ATOMIC_RELAXED);
    }
    close(l.fd);
    return NULL;
}

static int flood_for(int threads, double seconds, int slices) {
    pthread_t t[64];
    if (threads < 1 || threads > 64 || seconds <= 0 || slices < 1 || slices > 1000) return 2;
    flood_seconds = seconds;
    flood_slices = slices;
    clock_gettime(CLOCK_MONOTONIC, &flood_start);
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, flood_for_thread, NULL);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    report();
    printf("slices");
    for (int i = 0; i < slices; i++) printf(" %ld", flood_slice_rounds[i]);
    printf("\n");
    return 0;
}

static int flood(int threads, long rounds) {
    pthread_t t[64];
    if (threads < 1 || threads > 64) return 2;
    flood_rounds = rounds;
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, flood_thread, NULL);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    report();
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "steady") && argc > 4) return steady(atol(argv[2]), atol(argv[3]), argv[4]);
    if (!strcmp(argv[1], "flood") && argc > 3) return flood(atoi(argv[2]), atol(argv[3]));
    if (!strcmp(argv[1], "flood-for") && argc > 4) return flood_for(atoi(argv[2]), atof(argv[3]), atoi(argv[4]));
    return 2;
}
