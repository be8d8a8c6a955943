/* core/err — error codes, messages and the first-error-wins record. */
#ifndef MFD_CORE_ERR_H
#define MFD_CORE_ERR_H

#include <pthread.h>
#include "multifd.h"

/* Record an error in err (may be NULL) unless one is already there.  code < 0.  channel is the
 * channel index or -1.  Returns code, so callers can write `return mfd__err_set(...)`.
 * Not thread-safe by itself: see struct mfd__errbox for shared records. */
int mfd__err_set(struct mfd_error *err, int code, int channel, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Record an error a peer reported: `prefix: msg`, where msg already ends with the reason (a
 * trailing ": <mfd_strerror(code)>" is not repeated). */
int mfd__err_set_peer(struct mfd_error *err, int code, const char *prefix, const char *msg);

/* Copy src into dst if dst has no error yet (first error wins). */
void mfd__err_copy(struct mfd_error *dst, const struct mfd_error *src);

/* A thread-safe error record shared by the threads of one session.
 * Lock order: errbox.lock is a leaf; never take another lock while holding it. */
struct mfd__errbox {
	pthread_mutex_t lock;
	struct mfd_error err;	/* protected by lock */
	int code;		/* atomic: mirrors err.code so workers can poll without the lock */
};

void mfd__errbox_init(struct mfd__errbox *b);
void mfd__errbox_destroy(struct mfd__errbox *b);
/* Returns 1 if this call recorded the error (it was the first), 0 if one was already there. */
int mfd__errbox_set(struct mfd__errbox *b, int code, int channel, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int mfd__errbox_setv(struct mfd__errbox *b, const struct mfd_error *e);
static inline int mfd__errbox_code(struct mfd__errbox *b)
{
	return __atomic_load_n(&b->code, __ATOMIC_ACQUIRE);
}
void mfd__errbox_get(struct mfd__errbox *b, struct mfd_error *out);

#endif
