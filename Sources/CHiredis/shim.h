#ifndef SINGYEONG_CHIREDIS_SHIM_H
#define SINGYEONG_CHIREDIS_SHIM_H
/* hiredis's async API plus its libev adapter, so Redis replies arrive on the
 * same libev loop as every socket. The adapter is header-only (static
 * functions); it is compiled into whichever Swift file calls it. */
#include <ev.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

/* Attach an async context to a loop (the adapter's function, re-exported
 * under a name that says what it does). Returns REDIS_OK or REDIS_ERR. */
static inline int sy_redis_attach_libev(redisAsyncContext *ac, struct ev_loop *loop) { return redisLibevAttach(loop, ac); }

#endif
