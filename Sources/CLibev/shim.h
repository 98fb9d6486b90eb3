#ifndef SINGYEONG_CLIBEV_SHIM_H
#define SINGYEONG_CLIBEV_SHIM_H
/* libev's watcher API is mostly macros, which Swift cannot import.
 * Each macro we use is wrapped here as a static inline function. */
#include <ev.h>

typedef void (*sy_ev_io_cb)(struct ev_loop *loop, ev_io *w, int revents);
typedef void (*sy_ev_timer_cb)(struct ev_loop *loop, ev_timer *w, int revents);
typedef void (*sy_ev_signal_cb)(struct ev_loop *loop, ev_signal *w, int revents);
typedef void (*sy_ev_prepare_cb)(struct ev_loop *loop, ev_prepare *w, int revents);

static inline struct ev_loop *sy_ev_default_loop(void) { return ev_default_loop(EVFLAG_AUTO | EVFLAG_NOENV); }

static inline void sy_ev_io_init(ev_io *w, sy_ev_io_cb cb, int fd, int events) { ev_io_init(w, cb, fd, events); }
/* Only valid on a stopped watcher. */
static inline void sy_ev_io_set(ev_io *w, int fd, int events) { ev_io_set(w, fd, events); }
/* libev >= 4.25: change events of a stopped watcher without touching fd. */
static inline void sy_ev_io_modify(ev_io *w, int events) { ev_io_modify(w, events); }
static inline int sy_ev_io_events(const ev_io *w) { return w->events & ~EV__IOFDSET; }

static inline void sy_ev_timer_init(ev_timer *w, sy_ev_timer_cb cb, double after, double repeat) { ev_timer_init(w, cb, after, repeat); }
static inline void sy_ev_timer_set(ev_timer *w, double after, double repeat) { ev_timer_set(w, after, repeat); }
static inline void sy_ev_timer_set_repeat(ev_timer *w, double repeat) { w->repeat = repeat; }

static inline void sy_ev_signal_init(ev_signal *w, sy_ev_signal_cb cb, int signum) { ev_signal_init(w, cb, signum); }
static inline void sy_ev_prepare_init(ev_prepare *w, sy_ev_prepare_cb cb) { ev_prepare_init(w, cb); }

static inline int sy_ev_is_active(const void *w) { return ev_is_active((const ev_watcher *)w); }
static inline void sy_ev_set_data(void *w, void *data) { ((ev_watcher *)w)->data = data; }
static inline void *sy_ev_get_data(const void *w) { return ((const ev_watcher *)w)->data; }

#endif
