/* cli/cmd_ctl — `multifd ctl SOCKET COMMAND ...`: send one control request to a running
 * `multifd vm run --control SOCKET` and print the reply (one JSON object).  `migrate --wait`
 * and `save --wait` then follow the operation with `query` until it ends.  --fd passes
 * descriptors this process inherited with the request (SCM_RIGHTS). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "cli.h"
#include "ctl_json.h"
#include "ctl_request.h"

void cmd_ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd ctl SOCKET migrate URI [--channels N] [--downtime-ms N]\n"
		"                              [--max-bandwidth RATE] [--wait]\n"
		"       multifd ctl SOCKET migrate --fd N --fd N [--fd N]... [options as above]\n"
		"       multifd ctl SOCKET save PATH [--live] [--direct-io] [--channels N]\n"
		"                              [--downtime-ms N] [--max-bandwidth RATE] [--wait]\n"
		"       multifd ctl SOCKET save --fd N [--fd N] [options as above]\n"
		"       multifd ctl SOCKET query | cancel | stop | cont | quit\n"
		"\n"
		"Talk to `multifd vm run --control SOCKET` (protocol: docs/control.md).  Prints the\n"
		"reply, one JSON object; exit status 0 when it says ok (with --wait: when the\n"
		"operation completed), 1 when it does not, 2 for a usage error.\n"
		"\n"
		"  migrate URI        start a live migration of the running guest to URI\n"
		"                     (tcp:HOST:PORT or unix:PATH of a `vm run --incoming`)\n"
		"    --fd N           instead of URI (or with URI fd:): migrate over descriptor N\n"
		"                     of this process, a connected socket to the destination; give\n"
		"                     the main channel's first, then one per data channel\n"
		"    --channels N     data channels (default 4; with --fd, one less than given)\n"
		"    --downtime-ms N  downtime limit (default 300)\n"
		"    --max-bandwidth RATE  bytes per second, K/M/G suffixes (default unlimited)\n"
		"    --wait           follow it: a progress line per second, exit 0 if it completed\n"
		"  save PATH          write a mapped-ram snapshot of the guest to PATH (replaced\n"
		"                     atomically); afterwards the guest is as it was found:\n"
		"                     running, or paused if `stop` paused it\n"
		"    --fd N           instead of PATH: write the file open read-write on descriptor\n"
		"                     N of this process (in place); a second --fd M is the same file\n"
		"                     opened with O_DIRECT, for page data (implies --direct-io)\n"
		"    --live           save while the guest runs (rounds, last pass stopped);\n"
		"                     without it the guest is paused for the save\n"
		"    --direct-io      O_DIRECT for page data\n"
		"    --channels N     writer threads (default 4)\n"
		"  query              the VM's state and the migration's (or save's) statistics\n"
		"  cancel             cancel a running migration or save (the guest keeps running)\n"
		"  stop, cont         pause / resume the guest\n"
		"  quit               end the VM process\n");
}

int ctl_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Send the request line, with fds[0..nfds) attached to it, in one sendmsg (the rest of the
 * line, if the socket took only part of it, without them).  0 or -errno. */
static int send_line(int fd, const char *line, size_t len, const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	size_t off = 0;
	while (off < len) {
		struct iovec iov = { (char *)line + off, len - off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (off == 0 && nfds) {
			memset(&cm, 0, sizeof(cm));
			mh.msg_control = cm.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
			h->cmsg_level = SOL_SOCKET;
			h->cmsg_type = SCM_RIGHTS;
			h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
		}
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		off += (size_t)n;
	}
	return 0;
}

int ctl_call(int fd, const char *req, const int *fds, unsigned nfds, char *buf, size_t cap)
{
	size_t len = strlen(req);
	char line[CTL_MAX_LINE + 2];
	if (len > CTL_MAX_LINE || nfds > CTL_MAX_FDS)
		return -E2BIG;
	memcpy(line, req, len);
	line[len++] = '\n';
	int rc = send_line(fd, line, len, fds, nfds);
	if (rc)
		return rc;
	size_t have = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, 10000);
		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0 && errno == EINTR)
			continue;
		ssize_t n = read(fd, buf + have, cap - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -ECONNRESET;
		have += (size_t)n;
		char *nl = memchr(buf, '\n', have);
		if (nl) {
			*nl = '\0';
			return 0;
		}
		if (have == cap - 1)
			return -E2BIG;
	}
}

/* A number or string field of a reply object, found by a plain search (replies are ours). */
const char *json_find(const char *js, const char *key, char *out, size_t cap)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(js, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	size_t n = 0;
	if (*p == '"') {
		p++;
		while (*p && *p != '"' && n + 1 < cap)
			out[n++] = *p++;
	} else {
		while (*p && *p != ',' && *p != '}' && *p != ']' && n + 1 < cap)
			out[n++] = *p++;
	}
	out[n] = '\0';
	return out;
}

static uint64_t json_u64(const char *js, const char *key)
{
	char v[64];
	return json_find(js, key, v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
}

static int follow(int fd)
{
	char reply[16384], status[32] = "";
	for (;;) {
		int rc = ctl_call(fd, "{\"cmd\":\"query\"}", NULL, 0, reply, sizeof(reply));
		if (rc) {
			fprintf(stderr, "multifd ctl: query: %s\n", strerror(-rc));
			return 1;
		}
		const char *mig = strstr(reply, "\"migration\":");
		if (mig)
			json_find(mig, "status", status, sizeof(status));
		if (mig && (!strcmp(status, "completed") || !strcmp(status, "failed") ||
			    !strcmp(status, "cancelled"))) {
			printf("%s\n", reply);
			return strcmp(status, "completed") ? 1 : 0;
		}
		if (mig && strcmp(status, "none"))
			fprintf(stderr, "%s: %" PRIu64 " ms, round %" PRIu64 ", %" PRIu64
				" MiB sent, %" PRIu64 " MiB dirty, throttle %" PRIu64 "%%\n", status,
				json_u64(mig, "total_ms"), json_u64(mig, "rounds"),
				json_u64(mig, "wire_bytes") >> 20, json_u64(mig, "remaining_bytes") >> 20,
				json_u64(mig, "throttle_pct"));
		usleep(1000000);
	}
}

/* The options, and which commands take each. */
static const struct option lopts[] = {
	{ "channels", required_argument, NULL, 'c' },
	{ "downtime-ms", required_argument, NULL, 'd' },
	{ "max-bandwidth", required_argument, NULL, 'b' },
	{ "wait", no_argument, NULL, 'w' },
	{ "live", no_argument, NULL, 'l' },
	{ "direct-io", no_argument, NULL, 'o' },
	{ "fd", required_argument, NULL, 'f' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 }
};
static const char migrate_opts[] = "cdbwf", save_opts[] = "cdbwlof";

static const char *opt_name(int val)
{
	for (const struct option *o = lopts; o->name; o++)
		if (o->val == val)
			return o->name;
	return "?";
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "multifd ctl: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see multifd help ctl)\n");
	return 2;
}

int cmd_ctl(int argc, char **argv)
{
	unsigned channels = 0, downtime = 0, nfds = 0, v;
	int fds[CTL_MAX_FDS];
	uint64_t bw = 0;
	bool wait = false, live = false, direct = false;
	char given[sizeof(save_opts) + 1] = "";	/* the options used, by letter */
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		if (opt != 'h' && opt != '?' && !strchr(given, opt))
			given[strlen(given)] = (char)opt;
		switch (opt) {
		case 'c':
			if (cli_parse_uint(optarg, 1, MFD_MAX_CHANNELS, &channels))
				return usage_error("bad --channels '%s' (1..64)", optarg);
			break;
		case 'd':
			if (cli_parse_uint(optarg, 1, 3600000, &downtime))
				return usage_error("bad --downtime-ms '%s' (1..3600000)", optarg);
			break;
		case 'b':
			if (cli_parse_size(optarg, &bw) || bw == 0)
				return usage_error("bad --max-bandwidth '%s'", optarg);
			break;
		case 'w': wait = true; break;
		case 'l': live = true; break;
		case 'o': direct = true; break;
		case 'f':
			if (cli_parse_uint(optarg, 0, INT_MAX, &v))
				return usage_error("bad --fd '%s'", optarg);
			if (fcntl((int)v, F_GETFD) < 0)
				return usage_error("--fd %s: not an open descriptor of this process",
						   optarg);
			if (nfds == CTL_MAX_FDS)
				return usage_error("too many --fd (at most %s)", "65");
			fds[nfds++] = (int)v;
			break;
		case 'h':
			cmd_ctl_usage(stdout);
			return 0;
		default:
			cmd_ctl_usage(stderr);
			return 2;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "multifd ctl: expected SOCKET COMMAND\n");
		cmd_ctl_usage(stderr);
		return 2;
	}
	const char *sock = argv[optind], *cmd = argv[optind + 1];
	const char *arg = argc - optind > 2 ? argv[optind + 2] : NULL;
	const char *takes = !strcmp(cmd, "migrate") ? migrate_opts : !strcmp(cmd, "save") ? save_opts
											    : "";
	if (!takes[0] && strcmp(cmd, "query") && strcmp(cmd, "cancel") && strcmp(cmd, "stop") &&
	    strcmp(cmd, "cont") && strcmp(cmd, "quit"))
		return usage_error("unknown command '%s'", cmd);
	for (const char *g = given; *g; g++)
		if (!strchr(takes, *g)) {
			fprintf(stderr, "multifd ctl: %s takes no --%s (see multifd help ctl)\n", cmd,
				opt_name(*g));
			return 2;
		}
	if (argc - optind > 3 || (arg && !takes[0]))
		return usage_error("too many arguments for %s", cmd);

	char req[CTL_MAX_LINE + 1];
	struct ctl_out o = { req, sizeof(req), 0, false };
	ctl_out_printf(&o, "{\"cmd\":\"%s\"", cmd);
	if (!strcmp(cmd, "migrate")) {
		if (nfds && arg && strcmp(arg, "fd:"))
			return usage_error("with --fd the URI is fd: or left out, not '%s'", arg);
		if (!nfds && !arg)
			return usage_error("migrate needs a URI or --fd%s", "");
		ctl_out_printf(&o, ",\"uri\":");
		ctl_out_json_str(&o, nfds ? "fd:" : arg);
	} else if (!strcmp(cmd, "save")) {
		if (nfds > 2)
			return usage_error("save takes one or two --fd%s", "");
		if (nfds && arg)
			return usage_error("save takes a PATH or --fd, not both ('%s')", arg);
		if (!nfds && !arg)
			return usage_error("save needs a PATH or --fd%s", "");
		if (arg) {
			ctl_out_printf(&o, ",\"path\":");
			ctl_out_json_str(&o, arg);
		}
		ctl_out_printf(&o, ",\"live\":%s,\"direct_io\":%s", live ? "true" : "false",
			       direct || nfds == 2 ? "true" : "false");
	}
	if (channels)
		ctl_out_printf(&o, ",\"channels\":%u", channels);
	if (downtime)
		ctl_out_printf(&o, ",\"downtime_ms\":%u", downtime);
	if (bw)
		ctl_out_printf(&o, ",\"max_bandwidth\":%" PRIu64, bw);
	ctl_out_printf(&o, "}");
	if (o.truncated)
		return usage_error("the request is too long (over %s bytes)", "4096");

	int fd = ctl_connect(sock);
	if (fd < 0) {
		fprintf(stderr, "multifd ctl: %s: %s\n", sock, strerror(-fd));
		return 1;
	}
	char reply[16384];
	int rc = ctl_call(fd, req, fds, nfds, reply, sizeof(reply));
	if (rc) {
		fprintf(stderr, "multifd ctl: %s: %s\n", sock, strerror(-rc));
		close(fd);
		return 1;
	}
	int status = strstr(reply, "\"ok\":true") ? 0 : 1;
	if (status || !wait)
		printf("%s\n", reply);
	else
		status = follow(fd);
	close(fd);
	return status;
}
