/*
 * null.c: the "null" FastCGI backend of bench/peers.sh, the practical limit
 * every other backend is compared to.
 *
 * One thread, one epoll loop, no parsing of params, no allocation per
 * request: it reads records, and when a request's empty FCGI_STDIN record
 * arrives it answers with a canned FCGI_STDOUT ("Content-Type: text/plain",
 * "Hello, world!\n"), an empty FCGI_STDOUT and FCGI_END_REQUEST for that
 * request id, all in one write. Whatever a real backend does beyond this
 * (routing, params, threads, hand-offs) is what the comparison shows.
 *
 * What it does handle, so that it is a fair FastCGI peer:
 * - nonblocking accept of many connections (accept4 until EAGAIN);
 * - several requests in one read, and records split across reads: the
 *   parser is a small state machine that never needs a whole record in
 *   memory (contents it does not need are skipped as they stream by);
 * - FCGI_KEEP_CONN: without it the connection is closed once the answer
 *   is written, as the spec asks;
 * - short writes: the rest waits in a per-connection buffer for EPOLLOUT.
 *
 * Usage: null SOCKET-PATH   (listens on a Unix socket; SIGTERM stops it)
 * Build: gcc -O2 -Wall -Wextra -o null null.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum {
    FCGI_BEGIN_REQUEST = 1,
    FCGI_END_REQUEST = 3,
    FCGI_STDIN = 5,
    FCGI_STDOUT = 6,
    FCGI_KEEP_CONN = 1,
    HEADER_LEN = 8,
};

/* "Content-Type: text/plain\r\n\r\nHello, world!\n" = 42 bytes + 6 padding. */
static const char BODY[] = "Content-Type: text/plain\r\n\r\nHello, world!\n";
#define BODY_LEN (sizeof(BODY) - 1)
#define BODY_PAD ((8 - BODY_LEN % 8) % 8)
#define ANSWER_LEN (HEADER_LEN + BODY_LEN + BODY_PAD + HEADER_LEN + HEADER_LEN + 8)

/* The canned answer for request id 1; answer() patches the id in. */
static unsigned char canned[ANSWER_LEN];

static void header(unsigned char *h, int type, unsigned len, unsigned pad)
{
    h[0] = 1; /* version */
    h[1] = (unsigned char)type;
    h[2] = 0;
    h[3] = 1; /* request id, patched per request */
    h[4] = (unsigned char)(len >> 8);
    h[5] = (unsigned char)len;
    h[6] = (unsigned char)pad;
    h[7] = 0;
}

static void build_canned(void)
{
    unsigned char *p = canned;
    memset(canned, 0, sizeof canned);
    header(p, FCGI_STDOUT, BODY_LEN, BODY_PAD);
    memcpy(p + HEADER_LEN, BODY, BODY_LEN);
    p += HEADER_LEN + BODY_LEN + BODY_PAD;
    header(p, FCGI_STDOUT, 0, 0); /* end of the stdout stream */
    p += HEADER_LEN;
    header(p, FCGI_END_REQUEST, 8, 0); /* body: appStatus 0, REQUEST_COMPLETE */
}

/* Per-connection state: where the parser stands within the current record. */
struct conn {
    int fd;
    unsigned char hdr[HEADER_LEN]; /* header being collected */
    unsigned hdr_have;             /* bytes of it so far (8: inside content) */
    unsigned char begin[8];        /* FCGI_BEGIN_REQUEST body being collected */
    unsigned content_left;         /* content bytes of this record still to come */
    unsigned pad_left;             /* then padding bytes */
    int keep_conn;                 /* flag of the latest FCGI_BEGIN_REQUEST */
    int close_after;               /* an answer without KEEP_CONN is queued */
    unsigned char *out;            /* unsent output */
    size_t out_len, out_cap;
    int want_out;                  /* EPOLLOUT registered */
};

static int epfd;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void conn_close(struct conn *c)
{
    close(c->fd); /* also removes it from the epoll set */
    free(c->out);
    free(c);
}

/* Queue the canned answer for request id `id`. */
static void answer(struct conn *c, unsigned id)
{
    if (c->out_len + ANSWER_LEN > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap * 2 : 4 * ANSWER_LEN;
        while (cap < c->out_len + ANSWER_LEN)
            cap *= 2;
        unsigned char *n = realloc(c->out, cap);
        if (!n)
            die("realloc");
        c->out = n;
        c->out_cap = cap;
    }
    unsigned char *p = c->out + c->out_len;
    memcpy(p, canned, ANSWER_LEN);
    /* the id sits at bytes 2-3 of each of the three record headers */
    size_t offs[3] = {0, HEADER_LEN + BODY_LEN + BODY_PAD, HEADER_LEN + BODY_LEN + BODY_PAD + HEADER_LEN};
    for (int i = 0; i < 3; i++) {
        p[offs[i] + 2] = (unsigned char)(id >> 8);
        p[offs[i] + 3] = (unsigned char)id;
    }
    c->out_len += ANSWER_LEN;
    if (!c->keep_conn)
        c->close_after = 1;
}

/* Write what is queued. Returns -1 if the connection is gone (closed). */
static int flush_out(struct conn *c)
{
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t n = write(c->fd, c->out + off, c->out_len - off);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else {
            conn_close(c);
            return -1;
        }
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    if (c->out_len == 0 && c->close_after) {
        conn_close(c);
        return -1;
    }
    int want = c->out_len > 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
            die("epoll_ctl mod");
        c->want_out = want;
    }
    return 0;
}

/* Feed `len` bytes read from the connection to the record parser. */
static void parse(struct conn *c, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        if (c->hdr_have < HEADER_LEN) {
            /* collecting a header */
            size_t n = HEADER_LEN - c->hdr_have;
            if (n > len)
                n = len;
            memcpy(c->hdr + c->hdr_have, buf, n);
            c->hdr_have += (unsigned)n;
            buf += n;
            len -= n;
            if (c->hdr_have < HEADER_LEN)
                return;
            c->content_left = (unsigned)c->hdr[4] << 8 | c->hdr[5];
            c->pad_left = c->hdr[6];
        } else if (c->content_left > 0) {
            /* inside the content: keep only a BEGIN_REQUEST's 8-byte body */
            size_t n = c->content_left < len ? c->content_left : len;
            unsigned total = (unsigned)c->hdr[4] << 8 | c->hdr[5];
            if (c->hdr[1] == FCGI_BEGIN_REQUEST) {
                unsigned at = total - c->content_left;
                for (size_t i = 0; i < n; i++, at++)
                    if (at < sizeof c->begin)
                        c->begin[at] = buf[i];
            }
            c->content_left -= (unsigned)n;
            buf += n;
            len -= n;
        } else if (c->pad_left > 0) {
            size_t n = c->pad_left < len ? c->pad_left : len;
            c->pad_left -= (unsigned)n;
            buf += n;
            len -= n;
        }
        if (c->hdr_have == HEADER_LEN && c->content_left == 0 && c->pad_left == 0) {
            /* a whole record has gone by */
            unsigned id = (unsigned)c->hdr[2] << 8 | c->hdr[3];
            unsigned total = (unsigned)c->hdr[4] << 8 | c->hdr[5];
            if (c->hdr[1] == FCGI_BEGIN_REQUEST)
                c->keep_conn = (c->begin[2] & FCGI_KEEP_CONN) != 0;
            else if (c->hdr[1] == FCGI_STDIN && total == 0)
                answer(c, id);
            c->hdr_have = 0;
        }
    }
}

static void on_readable(struct conn *c)
{
    unsigned char buf[16384];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    parse(c, buf, (size_t)n);
    if (c->out_len > 0 && !c->want_out)
        flush_out(c);
}

static void on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EMFILE || errno == ENFILE)
                return;
            die("accept4");
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl add");
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET-PATH\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    build_canned();

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof addr.sun_path) {
        fprintf(stderr, "socket path too long\n");
        return 2;
    }
    strcpy(addr.sun_path, argv[1]);
    unlink(argv[1]);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(lfd, 1024) < 0)
        die("listen");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll_ctl listen");

    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                on_accept(lfd);
            } else if (evs[i].events & EPOLLOUT) {
                /* output pending: finish it before reading more */
                if (flush_out(c) == 0 && !c->want_out && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    on_readable(c);
            } else {
                on_readable(c);
            }
        }
    }
}
