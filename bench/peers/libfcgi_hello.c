/*
 * libfcgi_hello.c: the "libfcgi" peer of bench/peers.sh, hello written the
 * way the FastCGI developer kit's C library (libfcgi, FCGX_* calls) is
 * meant to be used by a threaded responder.
 *
 * THREADS threads (default 4, the second argument) each loop on
 * FCGX_Accept_r over one shared listening socket and answer
 * "Content-Type: text/plain" + "Hello, world!\n". libfcgi serves one
 * connection per thread at a time: a thread holds its kept-alive
 * connection (FCGI_KEEP_CONN) until the peer closes it, so with more
 * connections than threads the others wait in the listen backlog. That is
 * the library's model, and the bench reports what it does at c > THREADS.
 *
 * Usage: libfcgi_hello SOCKET-PATH [THREADS]
 * Build: gcc -O2 -Wall -Wextra -o libfcgi_hello libfcgi_hello.c -lfcgi -lpthread
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int listen_fd;

static void *serve(void *arg)
{
    (void)arg;
    FCGX_Request req;
    if (FCGX_InitRequest(&req, listen_fd, 0) != 0) {
        fprintf(stderr, "FCGX_InitRequest failed\n");
        return NULL;
    }
    /* FCGX_Accept_r finishes the previous request (flushing its output)
     * and waits for the next one, on the same connection while the peer
     * keeps it open. */
    while (FCGX_Accept_r(&req) >= 0) {
        FCGX_PutS("Content-Type: text/plain\r\n\r\nHello, world!\n", req.out);
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s SOCKET-PATH [THREADS]\n", argv[0]);
        return 2;
    }
    int threads = argc == 3 ? atoi(argv[2]) : 4;
    if (threads < 1 || threads > 1024) {
        fprintf(stderr, "THREADS must be 1..1024\n");
        return 2;
    }
    if (FCGX_Init() != 0) {
        fprintf(stderr, "FCGX_Init failed\n");
        return 1;
    }
    unlink(argv[1]);
    /* A path without ':' makes FCGX_OpenSocket create a Unix socket. */
    listen_fd = FCGX_OpenSocket(argv[1], 1024);
    if (listen_fd < 0) {
        fprintf(stderr, "FCGX_OpenSocket(%s) failed\n", argv[1]);
        return 1;
    }
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    if (!tids)
        return 1;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tids[i], NULL, serve, NULL) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
