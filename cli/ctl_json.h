/* cli/ctl_json — the control protocol's message format: one flat JSON object per line, whose
 * values are strings, integers or booleans, e.g.
 *
 *     {"cmd":"migrate","uri":"tcp:10.0.0.2:4444","channels":4,"downtime_ms":300}
 *
 * The parser takes untrusted bytes (anyone who can reach the socket): it is bounded in every
 * dimension, never allocates, and rejects anything else (nesting, arrays, floats, duplicate
 * keys, trailing bytes) with a message.  fuzz/fuzz_ctl.c covers it.
 *
 * The writer half builds replies (and the CLI's other JSON output) in a bounded buffer, with
 * strings written as valid JSON whatever bytes they hold. */
#ifndef MFD_CLI_CTL_JSON_H
#define MFD_CLI_CTL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_MAX_LINE 4096
#define CTL_MAX_KEYS 16
#define CTL_MAX_KEY 32
#define CTL_MAX_STR 1024

enum ctl_type { CTL_STR = 1, CTL_INT, CTL_BOOL };

struct ctl_value {
	char key[CTL_MAX_KEY + 1];
	enum ctl_type type;
	char str[CTL_MAX_STR + 1];	/* CTL_STR, NUL-terminated, no NUL inside */
	int64_t num;			/* CTL_INT; CTL_BOOL as 0/1 */
};

struct ctl_msg {
	unsigned n;
	struct ctl_value v[CTL_MAX_KEYS];
};

/* Parse one line (without its newline).  Returns 0, or -1 with a message in err. */
int ctl_parse(const char *line, size_t len, struct ctl_msg *m, char *err, size_t errlen);

/* Look-ups: NULL / false when the key is absent or of another type. */
const char *ctl_str(const struct ctl_msg *m, const char *key);
bool ctl_int(const struct ctl_msg *m, const char *key, int64_t *out);
bool ctl_bool(const struct ctl_msg *m, const char *key, bool *out);

/* A bounded output buffer: what does not fit is cut off (len stays below cap, buf stays
 * NUL-terminated); truncated says so. */
struct ctl_out {
	char *buf;
	size_t cap, len;
	bool truncated;
};

void ctl_out_printf(struct ctl_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string, quotes included: valid UTF-8 is kept as it is; '"', '\\' and control
 * characters are escaped; each byte of an invalid UTF-8 sequence becomes U+FFFD. */
void ctl_out_json_str(struct ctl_out *o, const char *s);
/* Length of the valid UTF-8 sequence s starts with (1..4; an ASCII byte is 1), or 0 when it
 * starts none (a stray byte, an overlong form, a surrogate, beyond U+10FFFF, or the NUL). */
size_t ctl_utf8_len(const char *s);

#endif
