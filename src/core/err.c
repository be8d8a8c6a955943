/* core/err — the one table of error codes, mfd_strerror(), and first-error-wins records. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "core/err.h"

static const char *const mfd_messages[] = {
#define E(code, text) [-(code) - MFD_EBASE] = text
	E(MFD_EMAGIC, "bad magic number"),
	E(MFD_EVERSION, "unsupported version"),
	E(MFD_ESESSION, "session id does not match"),
	E(MFD_ECHANID, "channel id out of range"),
	E(MFD_EDUPCHAN, "duplicate channel"),
	E(MFD_EBLOCK, "unknown RAM block"),
	E(MFD_ERANGE, "offset out of range"),
	E(MFD_EALIGN, "offset not aligned to the page size"),
	E(MFD_EPAGES, "page count over the bound"),
	E(MFD_ELENGTH, "length mismatch"),
	E(MFD_ETRUNC, "data ends early"),
	E(MFD_ECHECKSUM, "checksum mismatch"),
	E(MFD_ETYPE, "unknown or unexpected packet type"),
	E(MFD_ESEQ, "packet sequence out of order"),
	E(MFD_EPAGESIZE, "page size mismatch or unsupported"),
	E(MFD_ECHANCOUNT, "channel count out of range or mismatched"),
	E(MFD_EFEATURE, "required feature not supported"),
	E(MFD_EBLOCKTABLE, "RAM block tables differ"),
	E(MFD_ECLOSED, "peer closed the connection"),
	E(MFD_ECANCELED, "canceled"),
	E(MFD_EVERIFY, "verification failed: digests differ"),
	E(MFD_EREJECTED, "rejected by the peer"),
	E(MFD_EURI, "malformed URI"),
	E(MFD_ESTATE, "invalid in the current state"),
	E(MFD_ECOUNT, "packet totals differ from what was sent"),
	E(MFD_ECONVERGE, "did not converge before the deadline"),
	E(MFD_EDEVICE, "device state rejected"),
	E(MFD_EROUND, "packet of the wrong round"),
	E(MFD_EINCOMPLETE, "snapshot incomplete: the save did not finish"),
#undef E
};

MFD_API const char *mfd_strerror(int code)
{
	if (code == 0)
		return "success";
	if (code <= -MFD_EBASE) {
		const char *m = code > MFD_ELAST ? mfd_messages[-code - MFD_EBASE] : NULL;
		return m ? m : "unknown error";
	}
	if (code < 0) {
		/* strerror() is not thread-safe: use the GNU strerror_r into a per-thread buffer. */
		static _Thread_local char buf[96];
		return strerror_r(-code, buf, sizeof(buf));
	}
	return "unknown error";
}

MFD_API void mfd_error_clear(struct mfd_error *err)
{
	if (!err)
		return;
	err->code = 0;
	err->channel = -1;
	err->msg[0] = '\0';
}

#define STR_(x) #x
#define STR(x) STR_(x)

MFD_API const char *mfd_version(void)
{
	return STR(MFD_VERSION_MAJOR) "." STR(MFD_VERSION_MINOR) "." STR(MFD_VERSION_PATCH);
}

MFD_API unsigned mfd_version_number(void)
{
	return MFD_VERSION_NUMBER;
}

static int err_vset(struct mfd_error *err, int code, int channel, const char *fmt, va_list ap)
{
	if (!err || err->code != 0)
		return code;
	err->code = code;
	err->channel = channel;
	char detail[MFD_ERROR_MSG_MAX];
	vsnprintf(detail, sizeof(detail), fmt, ap);
	if (channel >= 0)
		snprintf(err->msg, sizeof(err->msg), "channel %d: %s: %s", channel, detail,
			 mfd_strerror(code));
	else
		snprintf(err->msg, sizeof(err->msg), "%s: %s", detail, mfd_strerror(code));
	return code;
}

int mfd__err_set(struct mfd_error *err, int code, int channel, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(err, code, channel, fmt, ap);
	va_end(ap);
	return code;
}

int mfd__err_set_peer(struct mfd_error *err, int code, const char *prefix, const char *msg)
{
	if (!err || err->code != 0)
		return code;
	const char *reason = mfd_strerror(code);
	size_t ml = strlen(msg), rl = strlen(reason);
	if (ml >= rl + 2 && !strcmp(msg + ml - rl, reason) && !strncmp(msg + ml - rl - 2, ": ", 2))
		ml -= rl + 2;
	err->code = code;
	err->channel = -1;
	snprintf(err->msg, sizeof(err->msg), "%s: %.*s: %s", prefix, (int)ml, msg, reason);
	return code;
}

void mfd__err_copy(struct mfd_error *dst, const struct mfd_error *src)
{
	if (dst && src && src->code != 0 && dst->code == 0)
		*dst = *src;
}

void mfd__errbox_init(struct mfd__errbox *b)
{
	pthread_mutex_init(&b->lock, NULL);
	mfd_error_clear(&b->err);
	b->code = 0;
}

void mfd__errbox_destroy(struct mfd__errbox *b)
{
	pthread_mutex_destroy(&b->lock);
}

int mfd__errbox_set(struct mfd__errbox *b, int code, int channel, const char *fmt, ...)
{
	int first = 0;
	va_list ap;
	pthread_mutex_lock(&b->lock);
	if (b->err.code == 0) {
		va_start(ap, fmt);
		err_vset(&b->err, code, channel, fmt, ap);
		va_end(ap);
		__atomic_store_n(&b->code, code, __ATOMIC_RELEASE);
		first = 1;
	}
	pthread_mutex_unlock(&b->lock);
	return first;
}

int mfd__errbox_setv(struct mfd__errbox *b, const struct mfd_error *e)
{
	int first = 0;
	if (!e || e->code == 0)
		return 0;
	pthread_mutex_lock(&b->lock);
	if (b->err.code == 0) {
		b->err = *e;
		__atomic_store_n(&b->code, e->code, __ATOMIC_RELEASE);
		first = 1;
	}
	pthread_mutex_unlock(&b->lock);
	return first;
}

void mfd__errbox_get(struct mfd__errbox *b, struct mfd_error *out)
{
	pthread_mutex_lock(&b->lock);
	*out = b->err;
	pthread_mutex_unlock(&b->lock);
}
