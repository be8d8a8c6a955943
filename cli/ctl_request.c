/* cli/ctl_request — see ctl_request.h. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "ctl_request.h"

static const struct {
	const char *name;
	enum ctl_cmd cmd;
	const char *fields;	/* the fields it takes besides "cmd", space-separated */
} commands[] = {
	{ "query", CTL_CMD_QUERY, "" },
	{ "migrate", CTL_CMD_MIGRATE, "uri channels downtime_ms max_bandwidth" },
	{ "save", CTL_CMD_SAVE, "path live direct_io channels downtime_ms max_bandwidth" },
	{ "cancel", CTL_CMD_CANCEL, "" },
	{ "stop", CTL_CMD_STOP, "" },
	{ "cont", CTL_CMD_CONT, "" },
	{ "quit", CTL_CMD_QUIT, "" },
	{ "set", CTL_CMD_SET, "max_bandwidth downtime_ms" },
	{ "events", CTL_CMD_EVENTS, "" },
	{ "migrate-incoming", CTL_CMD_MIGRATE_INCOMING, "uri" },
};

/* Every field's type and range, whatever command takes it. */
static const struct {
	const char *key;
	enum ctl_type type;
	int64_t min, max;	/* CTL_INT */
} fields[] = {
	{ "cmd", CTL_STR, 0, 0 },
	{ "uri", CTL_STR, 0, 0 },
	{ "path", CTL_STR, 0, 0 },
	{ "live", CTL_BOOL, 0, 0 },
	{ "direct_io", CTL_BOOL, 0, 0 },
	{ "channels", CTL_INT, 1, MFD_MAX_CHANNELS },
	{ "downtime_ms", CTL_INT, 1, 3600000 },
	{ "max_bandwidth", CTL_INT, 0, INT64_MAX },
};

static const char *type_name(enum ctl_type t)
{
	return t == CTL_STR ? "a string" : t == CTL_INT ? "an integer" : "true or false";
}

const char *ctl_cmd_name(enum ctl_cmd cmd)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].cmd == cmd)
			return commands[i].name;
	return "?";
}

static int refuse(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Is key one of the space-separated words of list?  (An empty key is none of them.) */
static bool listed(const char *list, const char *key)
{
	size_t n = strlen(key);
	for (const char *p = list; *p; p += strspn(p, " ")) {
		size_t w = strcspn(p, " ");
		if (w == n && n && !memcmp(p, key, n))
			return true;
		p += w;
	}
	return false;
}

/* tcp:HOST:PORT or tcp:[V6]:PORT with a port a migration can connect to (or, any_port, port 0
 * too: a destination listens on any free port). */
static bool tcp_ok(const char *rest, bool any_port)
{
	const char *colon;
	size_t hlen;
	if (rest[0] == '[') {
		const char *close = strchr(rest, ']');
		if (!close || close[1] != ':')
			return false;
		hlen = (size_t)(close - rest - 1);
		colon = close + 1;
	} else {
		colon = strrchr(rest, ':');
		if (!colon)
			return false;
		hlen = (size_t)(colon - rest);
		if (memchr(rest, ':', hlen))
			return false;	/* an IPv6 address without brackets */
	}
	const char *port = colon + 1;
	size_t plen = strlen(port);
	if (hlen == 0 || hlen > 255 || plen == 0 || plen > 5 || strspn(port, "0123456789") != plen)
		return false;
	long v = 0;
	for (const char *p = port; *p; p++)
		v = v * 10 + (*p - '0');
	return v >= (any_port ? 0 : 1) && v <= 65535;
}

/* tcp:HOST:PORT (also port 0 with any_port: where a destination listens) or unix:PATH: 0, or -1
 * with the reason in err; 1 when uri is neither (the caller says what it takes). */
static int check_socket_uri(const char *uri, bool any_port, char *err, size_t errlen)
{
	if (!strncmp(uri, "tcp:", 4)) {
		if (!tcp_ok(uri + 4, any_port))
			return refuse(err, errlen, "\"%.200s\": expected tcp:HOST:PORT (port %s; an IPv6 "
				    "address in brackets)", uri,
				    any_port ? "0..65535, 0 for any" : "1..65535");
		return 0;
	}
	if (!strncmp(uri, "unix:", 5)) {
		size_t n = strlen(uri + 5);
		if (n == 0 || n > 107)
			return refuse(err, errlen, "\"%.200s\": a unix socket path is 1..107 bytes", uri);
		return 0;
	}
	return 1;
}

static int check_uri(const char *uri, unsigned nfds, struct ctl_request *req, char *err,
		     size_t errlen)
{
	if (!strncmp(uri, "fd:", 3)) {
		if (uri[3])
			return refuse(err, errlen, "\"%.64s\" would name descriptors of the VM process "
				    "itself: pass yours with the request (SCM_RIGHTS) and use "
				    "\"uri\":\"fd:\"", uri);
		if (nfds < 2 || nfds > CTL_MAX_FDS)
			return refuse(err, errlen, "\"fd:\" takes the channels' descriptors passed with "
				    "the request (SCM_RIGHTS): the main channel's and 1..%d data "
				    "channels'; %u passed", MFD_MAX_CHANNELS, nfds);
		if (req->channels && req->channels != (int64_t)nfds - 1)
			return refuse(err, errlen, "%u descriptors make %u data channels, but "
				    "\"channels\" is %lld", nfds, nfds - 1, (long long)req->channels);
		req->channels = nfds - 1;
		req->fds_used = true;
		return 0;
	}
	if (nfds)
		return refuse(err, errlen, "%u descriptors passed, but only \"uri\":\"fd:\" takes "
			    "them", nfds);
	int rc = check_socket_uri(uri, false, err, errlen);
	if (rc <= 0)
		return rc;
	if (!strncmp(uri, "file:", 5))
		return refuse(err, errlen, "\"%.200s\": a file is not a migration target (use "
			    "\"save\")", uri);
	return refuse(err, errlen, "\"%.200s\" is not a migration URI (tcp:HOST:PORT, unix:PATH, or "
		    "fd: with descriptors passed)", uri);
}

static int check_save(unsigned nfds, struct ctl_request *req, char *err, size_t errlen)
{
	if (nfds == 0) {
		if (!req->target)
			return refuse(err, errlen, "save needs \"path\", or the file's descriptors "
				    "passed with the request");
		if (!req->target[0])
			return refuse(err, errlen, "save: \"path\" is empty");
		return 0;
	}
	if (req->target)
		return refuse(err, errlen, "save takes \"path\" or passed descriptors, not both");
	if (nfds > 2)
		return refuse(err, errlen, "save takes 1 descriptor (the file, read-write) or 2 (then "
			    "the same file with O_DIRECT for page data); %u passed", nfds);
	if (nfds == 1 && req->direct_io)
		return refuse(err, errlen, "\"direct_io\" with passed descriptors needs 2 of them: the "
			    "file buffered, then with O_DIRECT");
	req->direct_io = nfds == 2;
	req->fds_used = true;
	return 0;
}

/* migrate-incoming: where this VM listens (no descriptors: it makes its own socket). */
static int check_listen_uri(const char *uri, unsigned nfds, char *err, size_t errlen)
{
	if (nfds)
		return refuse(err, errlen, "migrate-incoming takes no descriptors; %u passed", nfds);
	int rc = check_socket_uri(uri, true, err, errlen);
	if (rc <= 0)
		return rc;
	return refuse(err, errlen, "\"%.200s\" is not an address to listen on (tcp:HOST:PORT or "
		    "unix:PATH)", uri);
}

int ctl_request_parse(const char *line, size_t len, unsigned nfds, struct ctl_msg *m,
		      struct ctl_request *req, char *err, size_t errlen)
{
	memset(req, 0, sizeof(*req));
	if (ctl_parse(line, len, m, err, errlen))
		return -1;
	const char *cmd = ctl_str(m, "cmd");
	if (!cmd)
		return refuse(err, errlen, "missing \"cmd\" (a string)");
	size_t c;
	for (c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
		if (!strcmp(commands[c].name, cmd))
			break;
	if (c == sizeof(commands) / sizeof(commands[0]))
		return refuse(err, errlen, "unknown command \"%.40s\"", cmd);
	req->cmd = commands[c].cmd;

	for (unsigned i = 0; i < m->n; i++) {
		const struct ctl_value *v = &m->v[i];
		size_t f, nfields = sizeof(fields) / sizeof(fields[0]);
		if (strcmp(v->key, "cmd") && !listed(commands[c].fields, v->key))
			return refuse(err, errlen, "%s takes no \"%.40s\"", cmd, v->key);
		for (f = 0; f < nfields && strcmp(fields[f].key, v->key); f++)
			;
		if (f == nfields)	/* a command lists a field the table lacks: a bug */
			return refuse(err, errlen, "field \"%s\" unknown", v->key);
		if (v->type != fields[f].type)
			return refuse(err, errlen, "\"%s\" must be %s", v->key, type_name(fields[f].type));
		if (v->type == CTL_INT && (v->num < fields[f].min || v->num > fields[f].max))
			return refuse(err, errlen, "\"%s\" must be %lld..%lld", v->key,
				    (long long)fields[f].min, (long long)fields[f].max);
	}
	ctl_int(m, "channels", &req->channels);
	ctl_int(m, "downtime_ms", &req->downtime_ms);
	req->has_max_bandwidth = ctl_int(m, "max_bandwidth", &req->max_bandwidth);
	ctl_bool(m, "live", &req->live);
	ctl_bool(m, "direct_io", &req->direct_io);

	switch (req->cmd) {
	case CTL_CMD_MIGRATE:
		req->target = ctl_str(m, "uri");
		if (!req->target)
			return refuse(err, errlen, "migrate needs \"uri\"");
		return check_uri(req->target, nfds, req, err, errlen);
	case CTL_CMD_SAVE:
		req->target = ctl_str(m, "path");
		return check_save(nfds, req, err, errlen);
	case CTL_CMD_MIGRATE_INCOMING:
		req->target = ctl_str(m, "uri");
		if (!req->target)
			return refuse(err, errlen, "migrate-incoming needs \"uri\"");
		return check_listen_uri(req->target, nfds, err, errlen);
	case CTL_CMD_SET:
		if (!req->has_max_bandwidth && !req->downtime_ms)
			return refuse(err, errlen, "set needs \"max_bandwidth\" or \"downtime_ms\"");
		/* fall through */
	default:
		if (nfds)
			return refuse(err, errlen, "%s takes no descriptors; %u passed", cmd, nfds);
		return 0;
	}
}
