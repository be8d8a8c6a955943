/* core/json — see json.h. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include "core/json.h"

static void emit(struct mfd__json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct mfd__json *j, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t room = j->len < j->cap ? j->cap - j->len : 0;
	int n = vsnprintf(room ? j->buf + j->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		j->len += (size_t)n;
}

static void put_escaped(struct mfd__json *j, const char *s)
{
	emit(j, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			emit(j, "\\%c", c);
		else if (c < 0x20)
			emit(j, "\\u%04x", c);
		else
			emit(j, "%c", c);
	}
	emit(j, "\"");
}

static void member(struct mfd__json *j, const char *key)
{
	if (!j->first)
		emit(j, ",");
	j->first = false;
	if (key) {
		put_escaped(j, key);
		emit(j, ":");
	}
}

void mfd__json_init(struct mfd__json *j, char *buf, size_t cap)
{
	j->buf = buf;
	j->cap = cap;
	j->len = 0;
	j->first = true;
	if (cap)
		buf[0] = '\0';
}

void mfd__json_begin(struct mfd__json *j, const char *key)
{
	if (j->len)
		member(j, key);
	emit(j, "{");
	j->first = true;
}

void mfd__json_end(struct mfd__json *j)
{
	emit(j, "}");
	j->first = false;
}

void mfd__json_begin_array(struct mfd__json *j, const char *key)
{
	member(j, key);
	emit(j, "[");
	j->first = true;
}

void mfd__json_end_array(struct mfd__json *j)
{
	emit(j, "]");
	j->first = false;
}

void mfd__json_u64(struct mfd__json *j, const char *key, uint64_t v)
{
	member(j, key);
	emit(j, "%" PRIu64, v);
}

void mfd__json_i64(struct mfd__json *j, const char *key, int64_t v)
{
	member(j, key);
	emit(j, "%" PRId64, v);
}

void mfd__json_double(struct mfd__json *j, const char *key, double v)
{
	member(j, key);
	if (isfinite(v))
		emit(j, "%.3f", v);
	else
		emit(j, "null");
}

void mfd__json_bool(struct mfd__json *j, const char *key, bool v)
{
	member(j, key);
	emit(j, "%s", v ? "true" : "false");
}

void mfd__json_str(struct mfd__json *j, const char *key, const char *v)
{
	member(j, key);
	put_escaped(j, v ? v : "");
}

size_t mfd__json_finish(struct mfd__json *j)
{
	if (j->cap)
		j->buf[j->len < j->cap ? j->len : j->cap - 1] = '\0';
	return j->len;
}
