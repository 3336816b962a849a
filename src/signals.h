/*
 * signals.h - a program's signals, read on its event loop: the commands
 * `moor serve` and `moor bench` own the process, so they (and not the
 * library: see include/moor.h) decide what signals do.
 */
#ifndef MOOR_SIGNALS_H
#define MOOR_SIGNALS_H

/* Ignores SIGPIPE (for stdout and stderr: sockets write with
 * MSG_NOSIGNAL), blocks the n signals of sigs[] in the calling thread,
 * and returns a non-blocking signalfd that reads them, or -errno. Call it
 * before any thread is started, so every thread inherits the mask. */
int signals_open(const int *sigs, int n);

#endif
