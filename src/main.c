/*
 * main.c - the `moor` command: picks the subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "serve.h"
#include "soak/soak.h"
#include "tls.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: moor <command> [flags]\n"
               "\n"
               "moor keeps long-lived connections (HTTP/1.1 keep-alive,\n"
               "WebSocket, Server-Sent Events, length-prefixed TCP, all of\n"
               "them over TLS too) with bounded, accounted memory.\n"
               "\n"
               "commands:\n"
               "  serve      run the server (moor serve --help for its flags)\n"
               "  bench      measure a WebSocket server: idle memory per\n"
               "             connection, echo messages/s and latency; or an\n"
               "             HTTP server with moor's HTTP client\n"
               "             (moor bench --help)\n"
               "  soak       drive a WebSocket server round after round and\n"
               "             say whether its memory, fds or threads leak\n"
               "             (moor soak --help)\n"
               "  version    print the version\n"
               "  help       print this text\n");
}

int main(int argc, char **argv)
{
    /* Before anything calls OpenSSL (SHA-1, RAND_bytes, TLS): its every
     * allocation is then counted under the tls tag. */
    tls_mem_init();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "serve"))
        return serve_main(argc - 2, argv + 2);
    if (!strcmp(argv[1], "bench"))
        return bench_main(argc - 2, argv + 2);
    if (!strcmp(argv[1], "soak"))
        return soak_main(argc - 2, argv + 2);
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version") ||
        !strcmp(argv[1], "-V")) {
        printf("moor %s\n", MOOR_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "moor: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
