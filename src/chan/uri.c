/* chan/uri — parsing of channel addresses: tcp:HOST:PORT, tcp:[V6]:PORT, unix:PATH,
 * fd:N[,N...], file:PATH.  Strict: anything unexpected is MFD_EURI with the reason. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "chan/chan.h"
#include "core/err.h"

static int parse_port(const char *p, struct mfd__uri *u, const char *s, struct mfd_error *err)
{
	size_t n = strlen(p);
	if (n == 0 || n >= sizeof(u->port) || strspn(p, "0123456789") != n)
		return mfd__err_set(err, MFD_EURI, -1, "'%s': port must be a number", s);
	long v = strtol(p, NULL, 10);
	if (v < 0 || v > 65535)
		return mfd__err_set(err, MFD_EURI, -1, "'%s': port out of range", s);
	memcpy(u->port, p, n + 1);
	return 0;
}

static int parse_tcp(const char *rest, struct mfd__uri *u, const char *s, struct mfd_error *err)
{
	const char *colon;
	size_t hlen;
	if (rest[0] == '[') {
		const char *close = strchr(rest, ']');
		if (!close || close[1] != ':')
			return mfd__err_set(err, MFD_EURI, -1, "'%s': expected tcp:[ADDR]:PORT", s);
		hlen = (size_t)(close - rest - 1);
		if (hlen == 0 || hlen >= sizeof(u->host))
			return mfd__err_set(err, MFD_EURI, -1, "'%s': bad host", s);
		memcpy(u->host, rest + 1, hlen);
		u->host[hlen] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(rest, ':');
		if (!colon)
			return mfd__err_set(err, MFD_EURI, -1, "'%s': expected tcp:HOST:PORT", s);
		hlen = (size_t)(colon - rest);
		if (hlen == 0 || hlen >= sizeof(u->host) || memchr(rest, ':', hlen))
			return mfd__err_set(err, MFD_EURI, -1,
					    "'%s': bad host (IPv6 addresses need brackets)", s);
		memcpy(u->host, rest, hlen);
		u->host[hlen] = '\0';
	}
	u->kind = MFD_URI_TCP;
	return parse_port(colon + 1, u, s, err);
}

static int parse_fds(const char *rest, struct mfd__uri *u, const char *s, struct mfd_error *err)
{
	const char *p = rest;
	u->nfds = 0;
	for (;;) {
		char *end;
		if (*p < '0' || *p > '9')
			return mfd__err_set(err, MFD_EURI, -1, "'%s': expected fd:N[,N...]", s);
		errno = 0;
		long v = strtol(p, &end, 10);
		if (errno || v < 0 || v > 1 << 20)
			return mfd__err_set(err, MFD_EURI, -1, "'%s': fd out of range", s);
		if (u->nfds >= (int)(sizeof(u->fds) / sizeof(u->fds[0])))
			return mfd__err_set(err, MFD_EURI, -1, "'%s': too many fds", s);
		u->fds[u->nfds++] = (int)v;
		if (*end == '\0')
			break;
		if (*end != ',')
			return mfd__err_set(err, MFD_EURI, -1, "'%s': expected fd:N[,N...]", s);
		p = end + 1;
	}
	u->kind = MFD_URI_FD;
	return 0;
}

int mfd__uri_parse(const char *s, struct mfd__uri *u, struct mfd_error *err)
{
	memset(u, 0, sizeof(*u));
	if (!s)
		return mfd__err_set(err, MFD_EURI, -1, "no URI");
	if (!strncmp(s, "tcp:", 4))
		return parse_tcp(s + 4, u, s, err);
	if (!strncmp(s, "fd:", 3))
		return parse_fds(s + 3, u, s, err);
	if (!strncmp(s, "unix:", 5) || !strncmp(s, "file:", 5)) {
		size_t n = strlen(s + 5);
		size_t max = s[0] == 'u' ? 107 : sizeof(u->path) - 1;	/* sun_path holds 108 */
		if (n == 0 || n > max)
			return mfd__err_set(err, MFD_EURI, -1, "'%s': path empty or too long", s);
		memcpy(u->path, s + 5, n + 1);
		u->kind = s[0] == 'u' ? MFD_URI_UNIX : MFD_URI_FILE;
		return 0;
	}
	return mfd__err_set(err, MFD_EURI, -1, "'%s': unknown scheme (tcp:, unix:, fd:, file:)", s);
}

void mfd__uri_close_fds(const struct mfd__uri *u, int from)
{
	for (int i = from; u->kind == MFD_URI_FD && i < u->nfds; i++)
		if (u->fds[i] >= 0)
			close(u->fds[i]);
}

MFD_API int mfd_uri_check(const char *uri, struct mfd_error *err)
{
	struct mfd__uri u;
	return mfd__uri_parse(uri, &u, err);
}
