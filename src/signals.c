/*
 * signals.c - see signals.h. App layer: process-wide by design.
 */
#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>

#include "signals.h"

int signals_open(const int *sigs, int n)
{
    sigset_t set;
    int fd;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    for (int i = 0; i < n; i++)
        sigaddset(&set, sigs[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}
