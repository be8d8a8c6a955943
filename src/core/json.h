/* core/json — a tiny JSON object writer with snprintf semantics (it counts what it would write
 * even when the buffer is too small, and always NUL-terminates a non-empty buffer). */
#ifndef MFD_CORE_JSON_H
#define MFD_CORE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mfd__json {
	char *buf;
	size_t cap;
	size_t len;	/* length the full output needs so far */
	bool first;	/* no member written yet in the current object/array */
};

void mfd__json_init(struct mfd__json *j, char *buf, size_t cap);
void mfd__json_begin(struct mfd__json *j, const char *key);	/* "{" or "key":{ */
void mfd__json_end(struct mfd__json *j);
void mfd__json_begin_array(struct mfd__json *j, const char *key);
void mfd__json_end_array(struct mfd__json *j);
void mfd__json_u64(struct mfd__json *j, const char *key, uint64_t v);
void mfd__json_i64(struct mfd__json *j, const char *key, int64_t v);
void mfd__json_double(struct mfd__json *j, const char *key, double v);
void mfd__json_bool(struct mfd__json *j, const char *key, bool v);
void mfd__json_str(struct mfd__json *j, const char *key, const char *v);
/* Finish; returns the needed length (excluding the NUL). */
size_t mfd__json_finish(struct mfd__json *j);

#endif
