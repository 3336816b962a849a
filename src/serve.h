/*
 * serve.h - the `moor serve` command.
 */
#ifndef MOOR_SERVE_H
#define MOOR_SERVE_H

/* Runs `moor serve` with the words after "serve". Returns the process
 * exit status (0 ok, 1 cannot start, 2 usage, 3 memory left live). */
int serve_main(int argc, char **argv);

#endif
