/* cli/jsonv — see jsonv.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jsonv.h"

#define MAX_DEPTH 32

static const char *ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/* Past a string starting at its quote, or NULL. */
static const char *skip_string(const char *p)
{
	for (p++; *p; p++) {
		if (*p == '\\') {
			if (!*++p)
				return NULL;
		} else if (*p == '"') {
			return p + 1;
		}
	}
	return NULL;
}

/* Past the value at p, or NULL. */
static const char *skip_value(const char *p, int depth)
{
	p = ws(p);
	if (depth > MAX_DEPTH)
		return NULL;
	if (*p == '"')
		return skip_string(p);
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		p = ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if (*p != '"' || !(p = skip_string(p)))
					return NULL;
				p = ws(p);
				if (*p++ != ':')
					return NULL;
			}
			if (!(p = skip_value(p, depth + 1)))
				return NULL;
			p = ws(p);
			if (*p == ',') {
				p = ws(p + 1);
				continue;
			}
			return *p == close ? p + 1 : NULL;
		}
	}
	/* A number or a literal: up to the next delimiter. */
	const char *start = p;
	while (*p && !strchr(",}] \t\r\n", *p))
		p++;
	return p > start ? p : NULL;
}

/* Past the value at p and its comma: the next member or element, or NULL after the last one
 * (or in malformed input). */
static const char *next_element(const char *p)
{
	if (!(p = skip_value(p, 0)))
		return NULL;
	p = ws(p);
	return *p == ',' ? ws(p + 1) : NULL;
}

/* Within the object or array at p, the member named by the path component [c, c + n). */
static const char *child(const char *p, const char *c, size_t n)
{
	p = ws(p);
	if (*p == '{') {
		p = ws(p + 1);
		while (*p == '"') {
			const char *k = p + 1, *end = skip_string(p);
			if (!end)
				return NULL;
			bool match = (size_t)(end - 1 - k) == n && !memcmp(k, c, n);
			p = ws(end);
			if (*p++ != ':')
				return NULL;
			p = ws(p);
			if (match)
				return p;
			if (!(p = next_element(p)))
				return NULL;
		}
		return NULL;
	}
	if (*p == '[') {
		char *e;
		unsigned long idx = strtoul(c, &e, 10);
		if (e != c + n || n == 0)
			return NULL;
		p = ws(p + 1);
		for (unsigned long i = 0; p && *p && *p != ']'; i++) {
			if (i == idx)
				return p;
			p = next_element(p);
		}
	}
	return NULL;
}

const char *jv_find(const char *js, const char *path, size_t *len)
{
	const char *p = js;
	if (!p)
		return NULL;
	while (*path) {
		size_t n = strcspn(path, ".");
		if (!(p = child(p, path, n)))
			return NULL;
		path += n + (path[n] == '.');
	}
	p = ws(p);
	const char *end = skip_value(p, 0);
	if (!end)
		return NULL;
	if (len)
		*len = (size_t)(end - p);
	return p;
}

uint64_t jv_u64(const char *js, const char *path)
{
	const char *v = jv_find(js, path, NULL);
	return v && (*v >= '0' && *v <= '9') ? strtoull(v, NULL, 10) : 0;
}

double jv_num(const char *js, const char *path)
{
	const char *v = jv_find(js, path, NULL);
	return v && ((*v >= '0' && *v <= '9') || *v == '-') ? strtod(v, NULL) : 0;
}

bool jv_bool(const char *js, const char *path)
{
	const char *v = jv_find(js, path, NULL);
	return v && !strncmp(v, "true", 4);
}

bool jv_str(const char *js, const char *path, char *out, size_t cap)
{
	size_t len;
	const char *v = jv_find(js, path, &len);
	if (!v || *v != '"' || cap == 0)
		return false;
	size_t n = 0;
	for (size_t i = 1; i + 1 < len && n + 1 < cap; i++) {
		if (v[i] == '\\' && (v[i + 1] == '"' || v[i + 1] == '\\'))
			i++;
		out[n++] = v[i];
	}
	out[n] = '\0';
	return true;
}

void jv_stats(const char *js, const char *path, struct mfd_stats *st)
{
	memset(st, 0, sizeof(*st));
	const char *o = jv_find(js, path, NULL);
	if (!o)
		return;
	char status[32] = "";
	jv_str(o, "status", status, sizeof(status));
	for (int i = 0; i <= MFD_STATUS_CANCELLED; i++)
		if (!strcmp(status, mfd_status_name(i)))
			st->status = i;
#define U(m) st->m = jv_u64(o, #m)
	U(total_ms); U(setup_ms); U(mem_bytes); U(wire_bytes); U(normal_pages); U(zero_pages);
	U(packets); U(rounds); U(dirty_sync_count); U(remaining_bytes); U(dirty_rate_bps);
	U(bandwidth_bps); U(expected_downtime_ms); U(downtime_ms); U(eta_ms); U(device_bytes);
	U(file_bytes); U(ready_ms); U(rejected_connections); U(round_bytes); U(round_done_bytes);
#undef U
	st->channels = (unsigned)jv_u64(o, "channels");
	st->throttle_pct = (unsigned)jv_u64(o, "throttle_pct");
	st->throttle_pct_max = (unsigned)jv_u64(o, "throttle_pct_max");
	st->mbps = jv_num(o, "mbps");
	st->verified = jv_bool(o, "verified");
	const char *pc = jv_find(o, "per_channel", NULL);
	char key[32];
	for (unsigned i = 0; pc && i <= st->channels && i <= MFD_MAX_CHANNELS; i++) {
		snprintf(key, sizeof(key), "%u.bytes", i);
		st->chan[i].bytes = jv_u64(pc, key);
		snprintf(key, sizeof(key), "%u.packets", i);
		st->chan[i].packets = jv_u64(pc, key);
	}
}
