/* cli/cmd_ctl — `multifd ctl SOCKET COMMAND ...`: send one control request to a running
 * `multifd vm run --control SOCKET` and print the reply (one JSON object).  `migrate --wait`
 * and `save --wait` then follow the operation with `query` until it ends (a progress line on a
 * terminal, the query replies as JSON lines otherwise), `--timeline` draws it; `info` shows the
 * query reply for people; `events` prints the event stream.  --fd passes descriptors this
 * process inherited with the request (SCM_RIGHTS). */
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
#include "jsonv.h"
#include "progress.h"
#include "timeline.h"

#define CTL_MAX_REPLY_BUF 16384	/* a reply line (the server's bound) */

void cmd_ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd ctl SOCKET migrate URI [--channels N] [--downtime-ms N]\n"
		"                              [--max-bandwidth RATE] [--wait] [--timeline FILE]\n"
		"       multifd ctl SOCKET migrate --fd N --fd N [--fd N]... [options as above]\n"
		"       multifd ctl SOCKET save PATH [--live] [--direct-io] [--channels N]\n"
		"                              [--downtime-ms N] [--max-bandwidth RATE] [--wait]\n"
		"                              [--timeline FILE]\n"
		"       multifd ctl SOCKET save --fd N [--fd N] [options as above]\n"
		"       multifd ctl SOCKET set max-bandwidth RATE | set downtime-ms N\n"
		"       multifd ctl SOCKET migrate-incoming URI\n"
		"       multifd ctl SOCKET events [--wait]\n"
		"       multifd ctl SOCKET query | info | cancel | stop | cont | quit\n"
		"\n"
		"Talk to `multifd vm run --control SOCKET` (protocol: docs/control.md, JSON:\n"
		"docs/json.md).  Prints the reply, one JSON object; exit status 0 when it says ok\n"
		"(with --wait: when the operation completed), 1 when it does not, 2 for a usage\n"
		"error.\n"
		"\n"
		"  migrate URI        start a live migration of the running guest to URI\n"
		"                     (tcp:HOST:PORT or unix:PATH of a `vm run --incoming`)\n"
		"    --fd N           instead of URI (or with URI fd:): migrate over descriptor N\n"
		"                     of this process, a connected socket to the destination; give\n"
		"                     the main channel's first, then one per data channel\n"
		"    --channels N     data channels (default 4; with --fd, one less than given)\n"
		"    --downtime-ms N  downtime limit (default 300)\n"
		"    --max-bandwidth RATE  bytes per second, K/M/G suffixes (default unlimited)\n"
		"    --wait           follow it until it ends, then print the last query reply;\n"
		"                     meanwhile one updating line on a terminal (the round and how\n"
		"                     much of it is done, ETA, throughput, dirty rate, expected\n"
		"                     downtime), else a query reply per second as a JSON line, both\n"
		"                     on stderr; exit 0 if it completed\n"
		"    --timeline FILE  (implies --wait) sample it every 100 ms and draw throughput,\n"
		"                     dirty rate, bytes left in the round, throttle, round starts\n"
		"                     and the downtime over time into FILE, an SVG picture\n"
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
		"  set NAME VALUE     change a running migration's or save's parameter, in effect\n"
		"                     within a round: max-bandwidth RATE (bytes per second, K/M/G\n"
		"                     suffixes; 0 or unlimited lifts the cap) or downtime-ms N\n"
		"  migrate-incoming URI  a VM started with `vm run --incoming defer` listens on URI\n"
		"                     (tcp:HOST:PORT, port 0 for any; unix:PATH) for a migration\n"
		"  events             print the VM's events as JSON lines as they happen (status\n"
		"                     changes, each round of a migration or save) until the VM ends\n"
		"    --wait           until the running operation ends (exit 0 if it completed)\n"
		"  query              the VM's state and the migration's (or save's) statistics\n"
		"  info               the same for people: state, time, round, remaining, rates,\n"
		"                     downtime, ETA, parameters and every channel\n"
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

/* Follow the operation with query until it ends (see the usage above); print the last reply.
 * With a timeline, sample every 100 ms and draw it into timeline_path. */
static int follow(int fd, const char *timeline_path, const char *title)
{
	char reply[CTL_MAX_REPLY_BUF];
	struct timeline tl = { 0 };
	struct progress pg = { 0 };
	bool tty = isatty(STDERR_FILENO);
	double last_line = 0;
	int status = 1;
	for (;;) {
		int rc = ctl_call(fd, "{\"cmd\":\"query\"}", NULL, 0, reply, sizeof(reply));
		if (rc) {
			fprintf(stderr, "multifd ctl: query: %s\n", strerror(-rc));
			goto out;
		}
		struct mfd_stats st;
		jv_stats(reply, "migration", &st);
		bool have = jv_find(reply, "migration", NULL) != NULL;
		bool done = st.status == MFD_STATUS_COMPLETED || st.status == MFD_STATUS_FAILED ||
			    st.status == MFD_STATUS_CANCELLED;
		if (have && timeline_path && timeline_add(&tl, &st)) {
			fprintf(stderr, "multifd ctl: out of memory\n");
			goto out;
		}
		if (have && st.status != MFD_STATUS_NONE) {
			if (tty && (done || cli_now_s() - last_line >= 0.25)) {
				progress_line(stderr, &pg, &st);
				last_line = cli_now_s();
			} else if (!tty && (done || cli_now_s() - last_line >= 1)) {
				fprintf(stderr, "%s\n", reply);
				last_line = cli_now_s();
			}
		}
		if (have && done) {
			printf("%s\n", reply);
			status = st.status == MFD_STATUS_COMPLETED ? 0 : 1;
			if (timeline_path) {
				char err[256];
				if (timeline_write_svg(&tl, &st, title, timeline_path, err, sizeof(err))) {
					fprintf(stderr, "multifd ctl: timeline: %s\n", err);
					status = 1;
				}
			}
			goto out;
		}
		/* Often enough that the end is seen within 50 ms; the lines stay at 4 (1) a second. */
		usleep(timeline_path ? 100000 : 50000);
	}
out:
	timeline_free(&tl);
	return status;
}

/* `events`: the reply, then every event line, to stdout as they come; with --wait, until the
 * running operation's final status (exit 0 if it completed).  Ends when the VM closes. */
static int stream_events(int fd, bool until_done)
{
	static char buf[2 * CTL_MAX_REPLY_BUF];
	size_t have = 0;
	bool first = true;
	for (;;) {
		char *nl;
		while ((nl = memchr(buf, '\n', have))) {
			*nl = '\0';
			printf("%s\n", buf);
			fflush(stdout);
			if (first && !strstr(buf, "\"ok\":true"))
				return 1;
			char ev[16] = "", st[16] = "";
			if (!first && until_done && jv_str(buf, "event", ev, sizeof(ev)) &&
			    !strcmp(ev, "status") && jv_str(buf, "status", st, sizeof(st)) &&
			    (!strcmp(st, "completed") || !strcmp(st, "failed") || !strcmp(st, "cancelled")))
				return strcmp(st, "completed") ? 1 : 0;
			first = false;
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have);
		}
		if (have == sizeof(buf) - 1) {
			fprintf(stderr, "multifd ctl: an event line over %zu bytes\n", sizeof(buf));
			return 1;
		}
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return until_done ? 1 : 0;	/* the VM went away */
		have += (size_t)n;
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
	{ "timeline", required_argument, NULL, 't' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 }
};
static const char migrate_opts[] = "cdbwft", save_opts[] = "cdbwloft", events_opts[] = "w";

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
	const char *timeline = NULL;
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
		case 't': timeline = optarg; wait = true; break;
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
			    : !strcmp(cmd, "events") ? events_opts : "";
	/* Commands with one argument of their own (set has two). */
	bool takes_arg = !strcmp(cmd, "migrate") || !strcmp(cmd, "save") ||
			 !strcmp(cmd, "migrate-incoming") || !strcmp(cmd, "set");
	if (!takes[0] && !takes_arg && strcmp(cmd, "query") && strcmp(cmd, "info") &&
	    strcmp(cmd, "cancel") && strcmp(cmd, "stop") && strcmp(cmd, "cont") && strcmp(cmd, "quit"))
		return usage_error("unknown command '%s'", cmd);
	for (const char *g = given; *g; g++)
		if (!strchr(takes, *g)) {
			fprintf(stderr, "multifd ctl: %s takes no --%s (see multifd help ctl)\n", cmd,
				opt_name(*g));
			return 2;
		}
	bool is_set = !strcmp(cmd, "set");
	if (argc - optind > (is_set ? 4 : 3) || (arg && !takes_arg))
		return usage_error("too many arguments for %s", cmd);

	char req[CTL_MAX_LINE + 1];
	struct ctl_out o = { req, sizeof(req), 0, false };
	ctl_out_printf(&o, "{\"cmd\":\"%s\"", !strcmp(cmd, "info") ? "query" : cmd);
	if (is_set) {
		const char *value = argc - optind > 3 ? argv[optind + 3] : NULL;
		if (!arg || !value)
			return usage_error("set takes NAME VALUE: max-bandwidth RATE or downtime-ms %s",
					   "N");
		if (!strcmp(arg, "max-bandwidth")) {
			uint64_t rate = 0;
			if (strcmp(value, "unlimited") && cli_parse_size(value, &rate))
				return usage_error("bad max-bandwidth '%s' (bytes per second, K/M/G "
						   "suffixes, or unlimited)", value);
			ctl_out_printf(&o, ",\"max_bandwidth\":%" PRIu64, rate);
		} else if (!strcmp(arg, "downtime-ms")) {
			if (cli_parse_uint(value, 1, 3600000, &v))
				return usage_error("bad downtime-ms '%s' (1..3600000)", value);
			ctl_out_printf(&o, ",\"downtime_ms\":%u", v);
		} else {
			return usage_error("set knows max-bandwidth and downtime-ms, not '%s'", arg);
		}
	} else if (!strcmp(cmd, "migrate-incoming")) {
		if (!arg)
			return usage_error("migrate-incoming needs a URI%s", "");
		ctl_out_printf(&o, ",\"uri\":");
		ctl_out_json_str(&o, arg);
	} else if (!strcmp(cmd, "migrate")) {
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
	if (!strcmp(cmd, "events")) {	/* the reply and the events follow on this socket */
		size_t len = strlen(req);
		req[len] = '\n';
		int rc = send(fd, req, len + 1, MSG_NOSIGNAL) == (ssize_t)(len + 1) ? 0 : -errno;
		int status = rc ? 1 : stream_events(fd, wait);
		if (rc)
			fprintf(stderr, "multifd ctl: %s: %s\n", sock, strerror(-rc));
		close(fd);
		return status;
	}
	char reply[CTL_MAX_REPLY_BUF];
	int rc = ctl_call(fd, req, fds, nfds, reply, sizeof(reply));
	if (rc) {
		fprintf(stderr, "multifd ctl: %s: %s\n", sock, strerror(-rc));
		close(fd);
		return 1;
	}
	int status = strstr(reply, "\"ok\":true") ? 0 : 1;
	char title[CTL_MAX_LINE + 64];	/* the timeline's */
	int tn = snprintf(title, sizeof(title), "multifd ctl %s %.*s", cmd, CTL_MAX_LINE,
			  nfds ? "--fd ..." : arg ? arg : "");
	if (channels && tn > 0 && (size_t)tn < sizeof(title))
		snprintf(title + tn, sizeof(title) - (size_t)tn, ", %u channels", channels);
	if (!strcmp(cmd, "info") && status == 0)
		progress_info(stdout, reply);
	else if (status || !wait)
		printf("%s\n", reply);
	else
		status = follow(fd, timeline, title);
	close(fd);
	return status;
}
