/* Many threads, many short TCP connections, for the raw server protocol.
 * usage: threads PORT THREADS CONNS_PER_THREAD SEND RECV
 * Each connection: connect to 127.0.0.1:PORT, send the 8-byte header (SEND, RECV as
 * big-endian u32) and SEND bytes, read until EOF (must be RECV bytes), close.
 * Prints one JSON line with totals; exits 1 on any error. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int port, conns_per_thread;
static uint32_t send_len, recv_len;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long long total_sent, total_recv, total_conns, failures;

static int one_connection(long long *sent, long long *got) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { close(fd); return -1; }
    char buf[16384];
    uint32_t hdr[2] = {htonl(send_len), htonl(recv_len)};
    memcpy(buf, hdr, 8);
    memset(buf + 8, 't', sizeof buf - 8);
    /* first write: header plus as much payload as fits, then the rest */
    size_t todo = 8 + (size_t)send_len, off = 0;
    while (off < todo) {
        size_t n = todo - off < sizeof buf ? todo - off : sizeof buf;
        ssize_t w = send(fd, buf, n, 0);  /* buf holds header only at off 0; payload bytes are opaque */
        if (w < 0) { if (errno == EINTR) continue; close(fd); return -1; }
        if (off == 0) memset(buf, 't', 8);
        off += (size_t)w;
    }
    *sent += (long long)todo;
    long long r = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) { if (errno == EINTR) continue; close(fd); return -1; }
        if (n == 0) break;
        r += n;
    }
    close(fd);
    *got += r;
    return r == (long long)recv_len ? 0 : -1;
}

static void *worker(void *arg) {
    (void)arg;
    long long sent = 0, got = 0, conns = 0, fails = 0;
    for (int i = 0; i < conns_per_thread; i++) {
        if (one_connection(&sent, &got) == 0) conns++; else fails++;
    }
    pthread_mutex_lock(&mu);
    total_sent += sent; total_recv += got; total_conns += conns; failures += fails;
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: %s PORT THREADS CONNS SEND RECV\n", argv[0]); return 2; }
    port = atoi(argv[1]);
    int threads = atoi(argv[2]);
    conns_per_thread = atoi(argv[3]);
    send_len = (uint32_t)strtoul(argv[4], NULL, 10);
    recv_len = (uint32_t)strtoul(argv[5], NULL, 10);
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    printf("{\"connections\": %lld, \"failures\": %lld, \"bytes_sent\": %lld, \"bytes_received\": %lld}\n",
           total_conns, failures, total_sent, total_recv);
    return failures ? 1 : 0;
}
