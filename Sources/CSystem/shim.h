#ifndef SINGYEONG_CSYSTEM_SHIM_H
#define SINGYEONG_CSYSTEM_SHIM_H
/* Linux calls that Swift's Glibc module hides behind _GNU_SOURCE. */
#include <sys/socket.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

/* accept4(2): accept and set O_NONBLOCK|O_CLOEXEC in one system call. */
extern int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);

/* ppoll(2): poll with a nanosecond timeout (singyeong-load's --rate mode
 * waits for the next due send, often well under a millisecond away). */
extern int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo_p, const sigset_t *sigmask);

/* The socket type and flag constants, fixed here. glibc declares them in an
 * enum in <bits/socket_type.h>, and which Clang module owns that header
 * depends on which module first includes it; on a clean parallel build the
 * Swift files sometimes could not see SOCK_STREAM through Glibc. */
static const int SY_SOCK_STREAM = SOCK_STREAM;
static const int SY_SOCK_DGRAM = SOCK_DGRAM;
static const int SY_SOCK_NONBLOCK = SOCK_NONBLOCK;
static const int SY_SOCK_CLOEXEC = SOCK_CLOEXEC;

#endif
