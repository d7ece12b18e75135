/*
 * relay: the floor of bench/run. A byte pipe, not a proxy: every client connection gets its own
 * connection to the backend, and whatever one side sends is written to the other, unread and
 * unparsed. It makes the syscalls every HTTP/1.1 proxy in the bench makes per request (read the
 * request, write it upstream, read the response, write it back, and a share of epoll_wait) and
 * nothing else, so its CPU per request is what the kernel's loopback TCP costs a proxy here: no
 * HTTP proxy, whatever its user-space work, goes below it.
 *
 * Not a peer to beat and not a product: no HTTP (so no h2c), no timeouts, no limits. One thread,
 * level-triggered epoll, one read per readable event (as nginx), TCP_NODELAY on both sides.
 *
 * usage: relay LISTEN_PORT BACKEND_PORT   (both on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 16384
#define MAX_EVENTS 256

/* One side of a relayed pair. `pending` holds bytes read from the peer that this side's socket
 * did not take yet; while it is not empty, the peer is not read. */
struct side {
    int fd;
    struct side *peer;
    size_t off, len;
    char pending[BUF_SIZE];
};

static int epfd;

/* Sides closed during one epoll_wait batch, freed after it: a later event of the same batch may
 * still point at them (their fd is then -1 and the event is skipped). */
static struct side *closed[2 * MAX_EVENTS];
static int closed_count;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void watch(struct side *s, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = s};
    if (epoll_ctl(epfd, op, s->fd, &ev) < 0) die("epoll_ctl");
}

static void close_pair(struct side *s) {
    struct side *p = s->peer;
    close(s->fd); /* closing removes the fd from the epoll set */
    close(p->fd);
    s->fd = p->fd = -1;
    closed[closed_count++] = s;
    closed[closed_count++] = p;
}

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int connect_backend(int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    /* Blocking connect: on loopback it is immediate, and it happens once per client connection. */
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        close(fd);
        return -1;
    }
    nodelay(fd);
    return fd;
}

static void accept_all(int listener, int backend_port) {
    for (;;) {
        int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
        if (client < 0) return; /* EAGAIN: all taken (level-triggered: any other error retries) */
        int upstream = connect_backend(backend_port);
        struct side *a = upstream < 0 ? NULL : calloc(1, sizeof *a);
        struct side *b = a ? calloc(1, sizeof *b) : NULL;
        if (!b) {
            free(a);
            if (upstream >= 0) close(upstream);
            close(client);
            continue;
        }
        nodelay(client);
        a->fd = client;
        b->fd = upstream;
        a->peer = b;
        b->peer = a;
        watch(a, EPOLLIN, EPOLL_CTL_ADD);
        watch(b, EPOLLIN, EPOLL_CTL_ADD);
    }
}

/* Writes what `to` holds; false when the connection failed. */
static int flush(struct side *to) {
    while (to->off < to->len) {
        ssize_t n = write(to->fd, to->pending + to->off, to->len - to->off);
        if (n < 0 && errno == EAGAIN) {
            watch(to, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            watch(to->peer, 0, EPOLL_CTL_MOD); /* stop reading the peer until this drains */
            return 1;
        }
        if (n <= 0) return 0;
        to->off += (size_t)n;
    }
    to->off = to->len = 0;
    return 1;
}

/* One read from `from`, written to its peer at once. */
static void relay(struct side *from, uint32_t events) {
    struct side *to = from->peer;
    if (to->len > 0) {
        /* Not read while its peer is stalled; only a failure is acted on. */
        if (events & (EPOLLHUP | EPOLLERR)) close_pair(from);
        return;
    }
    ssize_t n = read(from->fd, to->pending, sizeof to->pending);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        close_pair(from);
        return;
    }
    to->off = 0;
    to->len = (size_t)n;
    if (!flush(to)) close_pair(from);
}

/* `to` can take bytes again: write what it holds, then read both sides again. */
static void drained(struct side *to) {
    if (!flush(to)) {
        close_pair(to);
        return;
    }
    if (to->len == 0) {
        watch(to, EPOLLIN, EPOLL_CTL_MOD);
        watch(to->peer, EPOLLIN, EPOLL_CTL_MOD);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: relay LISTEN_PORT BACKEND_PORT\n");
        return 2;
    }
    int listen_port = atoi(argv[1]), backend_port = atoi(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (listener < 0) die("socket");
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(listen_port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 4096) < 0) die("listen");
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    /* The listener's entry carries a NULL pointer: sides are never NULL. */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev) < 0) die("epoll_ctl");
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int ready = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < ready; i++) {
            struct side *s = events[i].data.ptr;
            if (s && s->fd < 0) continue;
            if (!s) {
                accept_all(listener, backend_port);
            } else if (events[i].events & EPOLLOUT) {
                drained(s);
            } else {
                relay(s, events[i].events);
            }
        }
        for (int i = 0; i < closed_count; i++) free(closed[i]);
        closed_count = 0;
    }
}
