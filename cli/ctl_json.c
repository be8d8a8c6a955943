/* cli/ctl_json — see ctl_json.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "ctl_json.h"

struct cur {
	const char *p, *end;
	char *err;
	size_t errlen;
};

static int fail(struct cur *c, const char *what)
{
	snprintf(c->err, c->errlen, "bad control message: %s", what);
	return -1;
}

static void skip_ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r'))
		c->p++;
}

static int hexval(char h)
{
	if (h >= '0' && h <= '9')
		return h - '0';
	if (h >= 'a' && h <= 'f')
		return h - 'a' + 10;
	if (h >= 'A' && h <= 'F')
		return h - 'A' + 10;
	return -1;
}

/* A JSON string into out (cap bytes incl. NUL).  \uXXXX accepted for ASCII 0x01..0x7f only. */
static int parse_string(struct cur *c, char *out, size_t cap)
{
	size_t n = 0;
	if (c->p >= c->end || *c->p != '"')
		return fail(c, "expected a string");
	c->p++;
	while (c->p < c->end && *c->p != '"') {
		char ch = *c->p++;
		if ((unsigned char)ch < 0x20)
			return fail(c, "control character in a string");
		if (ch == '\\') {
			if (c->p >= c->end)
				return fail(c, "string ends in an escape");
			char e = *c->p++;
			switch (e) {
			case '"': case '\\': case '/': ch = e; break;
			case 'n': ch = '\n'; break;
			case 't': ch = '\t'; break;
			case 'r': ch = '\r'; break;
			case 'b': ch = '\b'; break;
			case 'f': ch = '\f'; break;
			case 'u': {
				if (c->end - c->p < 4)
					return fail(c, "short \\u escape");
				int v = 0;
				for (int i = 0; i < 4; i++) {
					int h = hexval(c->p[i]);
					if (h < 0)
						return fail(c, "bad \\u escape");
					v = v * 16 + h;
				}
				if (v == 0 || v > 0x7f)
					return fail(c, "only ASCII \\u escapes are accepted");
				c->p += 4;
				ch = (char)v;
				break;
			}
			default:
				return fail(c, "unknown escape");
			}
		}
		if (n + 1 >= cap)
			return fail(c, "string too long");
		out[n++] = ch;
	}
	if (c->p >= c->end)
		return fail(c, "unterminated string");
	c->p++;
	out[n] = '\0';
	return 0;
}

static int parse_int(struct cur *c, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0;
	if (c->p < c->end && *c->p == '-') {
		neg = true;
		c->p++;
	}
	const char *start = c->p;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		if (v > (UINT64_C(1) << 62) / 10)
			return fail(c, "number too large");
		v = v * 10 + (uint64_t)(*c->p++ - '0');
	}
	if (c->p == start)
		return fail(c, "expected a value");
	if (c->p - start > 1 && *start == '0')
		return fail(c, "leading zero");
	if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
		return fail(c, "only integers are accepted");
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

static bool word(struct cur *c, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(c->end - c->p) >= n && !memcmp(c->p, w, n)) {
		c->p += n;
		return true;
	}
	return false;
}

int ctl_parse(const char *line, size_t len, struct ctl_msg *m, char *err, size_t errlen)
{
	struct cur c = { line, line + len, err, errlen };
	m->n = 0;
	if (len > CTL_MAX_LINE)
		return fail(&c, "line too long");
	skip_ws(&c);
	if (c.p >= c.end || *c.p++ != '{')
		return fail(&c, "expected '{'");
	skip_ws(&c);
	if (c.p < c.end && *c.p == '}') {
		c.p++;
	} else {
		for (;;) {
			if (m->n >= CTL_MAX_KEYS)
				return fail(&c, "too many keys");
			struct ctl_value *v = &m->v[m->n];
			skip_ws(&c);
			if (parse_string(&c, v->key, sizeof(v->key)))
				return -1;
			for (unsigned i = 0; i < m->n; i++)
				if (!strcmp(m->v[i].key, v->key))
					return fail(&c, "duplicate key");
			skip_ws(&c);
			if (c.p >= c.end || *c.p++ != ':')
				return fail(&c, "expected ':'");
			skip_ws(&c);
			if (c.p < c.end && *c.p == '"') {
				v->type = CTL_STR;
				if (parse_string(&c, v->str, sizeof(v->str)))
					return -1;
			} else if (word(&c, "true") || word(&c, "false")) {
				v->type = CTL_BOOL;
				v->num = c.p[-1] == 'e' && c.p[-2] == 'u';
			} else {
				v->type = CTL_INT;
				if (parse_int(&c, &v->num))
					return -1;
			}
			m->n++;
			skip_ws(&c);
			if (c.p < c.end && *c.p == ',') {
				c.p++;
				continue;
			}
			if (c.p < c.end && *c.p == '}') {
				c.p++;
				break;
			}
			return fail(&c, "expected ',' or '}'");
		}
	}
	skip_ws(&c);
	if (c.p != c.end)
		return fail(&c, "trailing bytes");
	return 0;
}

static const struct ctl_value *find(const struct ctl_msg *m, const char *key, enum ctl_type t)
{
	for (unsigned i = 0; i < m->n; i++)
		if (m->v[i].type == t && !strcmp(m->v[i].key, key))
			return &m->v[i];
	return NULL;
}

const char *ctl_str(const struct ctl_msg *m, const char *key)
{
	const struct ctl_value *v = find(m, key, CTL_STR);
	return v ? v->str : NULL;
}

bool ctl_int(const struct ctl_msg *m, const char *key, int64_t *out)
{
	const struct ctl_value *v = find(m, key, CTL_INT);
	if (v)
		*out = v->num;
	return v != NULL;
}

bool ctl_bool(const struct ctl_msg *m, const char *key, bool *out)
{
	const struct ctl_value *v = find(m, key, CTL_BOOL);
	if (v)
		*out = v->num != 0;
	return v != NULL;
}

void ctl_out_printf(struct ctl_out *o, const char *fmt, ...)
{
	if (!o->cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= o->cap - o->len) {
		o->truncated = true;
		o->len = o->cap - 1;
	} else {
		o->len += (size_t)n;
	}
}

size_t ctl_utf8_len(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	unsigned char c = s[0];
	size_t n;
	uint32_t min, cp;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0)
		n = 2, min = 0x80, cp = c & 0x1f;
	else if ((c & 0xf0) == 0xe0)
		n = 3, min = 0x800, cp = c & 0x0f;
	else if ((c & 0xf8) == 0xf0)
		n = 4, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)	/* also stops at the NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

void ctl_out_json_str(struct ctl_out *o, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	ctl_out_printf(o, "\"");
	while (*p) {
		size_t n = ctl_utf8_len((const char *)p);
		if (n == 0) {
			ctl_out_printf(o, "\\ufffd");
			p++;
		} else if (*p == '"' || *p == '\\') {
			ctl_out_printf(o, "\\%c", *p++);
		} else if (*p < 0x20 || *p == 0x7f) {
			ctl_out_printf(o, "\\u%04x", *p++);
		} else {
			ctl_out_printf(o, "%.*s", (int)n, (const char *)p);
			p += n;
		}
	}
	ctl_out_printf(o, "\"");
}
