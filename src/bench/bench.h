/*
 * bench.h - the `moor bench` command: a WebSocket load generator and
 * memory meter built on moor's own client (ws_client.h).
 */
#ifndef MOOR_BENCH_H
#define MOOR_BENCH_H

/* Runs `moor bench` with the words after "bench" (the mode first).
 * Returns the process exit status: 0 the run went as asked; 1 it could
 * not run or connections failed (the server unreachable, a connection
 * refused or closed early, an echo that did not match); 2 usage; 130
 * interrupted (SIGINT/SIGTERM); 3 (debug builds only) memory still live
 * at exit. */
int bench_main(int argc, char **argv);

#endif
