#ifndef SINGYEONG_CSYSTEM_SHIM_H
#define SINGYEONG_CSYSTEM_SHIM_H
/* Linux calls that Swift's Glibc module hides behind _GNU_SOURCE. */
#include <sys/socket.h>

/* accept4(2): accept and set O_NONBLOCK|O_CLOEXEC in one system call. */
extern int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);

#endif
