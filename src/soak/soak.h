/*
 * soak.h - the `moor soak` command: drives a long-lived-connection
 * server round after round and says whether its memory, file
 * descriptors or threads leak.
 */
#ifndef MOOR_SOAK_H
#define MOOR_SOAK_H

/* Runs `moor soak` with the words after "soak". Returns the process exit
 * status: 0 no leak; 1 a leak (the series are named); 2 it could not run
 * (usage, the server unreachable or gone mid-run, too few rounds); 130
 * interrupted; 3 (debug builds only) memory still live at exit. */
int soak_main(int argc, char **argv);

#endif
