/* cli/cmd_ctl — `multifd ctl SOCKET COMMAND ...`: send one control request to a running
 * `multifd vm run --control SOCKET` and print the reply (one JSON object).  `migrate --wait`
 * then follows the migration with `query` until it ends. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "cli.h"
#include "ctl_json.h"

void cmd_ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: multifd ctl SOCKET migrate URI [--channels N] [--downtime-ms N]\n"
		"                              [--max-bandwidth RATE] [--wait]\n"
		"       multifd ctl SOCKET save PATH [--live] [--direct-io] [--channels N] [--wait]\n"
		"       multifd ctl SOCKET query | cancel | stop | cont | quit\n"
		"\n"
		"Talk to `multifd vm run --control SOCKET` (protocol: docs/control.md).  Prints the\n"
		"reply, one JSON object; exit status 0 when it says ok.\n"
		"\n"
		"  migrate URI        start a live migration of the running guest to URI\n"
		"                     (tcp:HOST:PORT or unix:PATH of a `vm run --incoming`)\n"
		"    --channels N     data channels (default 4)\n"
		"    --downtime-ms N  downtime limit (default 300)\n"
		"    --max-bandwidth RATE  bytes per second, K/M/G suffixes (default unlimited)\n"
		"    --wait           follow it: a progress line per second, exit 0 if it completed\n"
		"  save PATH          write a mapped-ram snapshot of the guest to PATH (replaced\n"
		"                     atomically); the guest runs on afterwards\n"
		"    --live           save while the guest runs (rounds, last pass stopped);\n"
		"                     without it the guest is paused for the save\n"
		"    --direct-io      O_DIRECT for page data\n"
		"    --channels N     writer threads (default 4)\n"
		"  query              the VM's state and the migration's statistics\n"
		"  cancel             cancel a running migration (the guest keeps running here)\n"
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

/* Send one request line, read one reply line into buf.  0 or -errno. */
int ctl_request(int fd, const char *req, char *buf, size_t cap)
{
	size_t len = strlen(req);
	char line[CTL_MAX_LINE + 2];
	if (len > CTL_MAX_LINE)
		return -E2BIG;
	memcpy(line, req, len);
	line[len++] = '\n';
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		off += (size_t)n;
	}
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
		int rc = ctl_request(fd, "{\"cmd\":\"query\"}", reply, sizeof(reply));
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

int cmd_ctl(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "channels", required_argument, NULL, 'c' },
		{ "downtime-ms", required_argument, NULL, 'd' },
		{ "max-bandwidth", required_argument, NULL, 'b' },
		{ "wait", no_argument, NULL, 'w' },
		{ "live", no_argument, NULL, 'l' },
		{ "direct-io", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	unsigned channels = 0, downtime = 0;
	uint64_t bw = 0;
	bool wait = false, live = false, direct = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (cli_parse_uint(optarg, 1, MFD_MAX_CHANNELS, &channels))
				return fprintf(stderr, "multifd ctl: bad --channels\n"), 2;
			break;
		case 'd':
			if (cli_parse_uint(optarg, 1, 3600000, &downtime))
				return fprintf(stderr, "multifd ctl: bad --downtime-ms\n"), 2;
			break;
		case 'b':
			if (cli_parse_size(optarg, &bw) || bw == 0)
				return fprintf(stderr, "multifd ctl: bad --max-bandwidth\n"), 2;
			break;
		case 'w':
			wait = true;
			break;
		case 'l':
			live = true;
			break;
		case 'o':
			direct = true;
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
		cmd_ctl_usage(stderr);
		return 2;
	}
	const char *sock = argv[optind], *cmd = argv[optind + 1];
	char req[CTL_MAX_LINE];
	if (!strcmp(cmd, "migrate")) {
		if (argc - optind != 3) {
			fprintf(stderr, "multifd ctl: migrate needs a URI\n");
			return 2;
		}
		const char *uri = argv[optind + 2];
		if (strpbrk(uri, "\"\\") || strlen(uri) > CTL_MAX_STR) {
			fprintf(stderr, "multifd ctl: bad URI\n");
			return 2;
		}
		int n = snprintf(req, sizeof(req), "{\"cmd\":\"migrate\",\"uri\":\"%s\"", uri);
		if (channels)
			n += snprintf(req + n, sizeof(req) - (size_t)n, ",\"channels\":%u", channels);
		if (downtime)
			n += snprintf(req + n, sizeof(req) - (size_t)n, ",\"downtime_ms\":%u", downtime);
		if (bw)
			n += snprintf(req + n, sizeof(req) - (size_t)n, ",\"max_bandwidth\":%" PRIu64, bw);
		snprintf(req + n, sizeof(req) - (size_t)n, "}");
	} else if (!strcmp(cmd, "save")) {
		if (argc - optind != 3) {
			fprintf(stderr, "multifd ctl: save needs a PATH\n");
			return 2;
		}
		const char *path = argv[optind + 2];
		if (strpbrk(path, "\"\\") || strlen(path) > CTL_MAX_STR) {
			fprintf(stderr, "multifd ctl: bad path\n");
			return 2;
		}
		int n = snprintf(req, sizeof(req), "{\"cmd\":\"save\",\"path\":\"%s\",\"live\":%s,"
				 "\"direct_io\":%s", path, live ? "true" : "false",
				 direct ? "true" : "false");
		if (channels)
			n += snprintf(req + n, sizeof(req) - (size_t)n, ",\"channels\":%u", channels);
		snprintf(req + n, sizeof(req) - (size_t)n, "}");
	} else if (!strcmp(cmd, "query") || !strcmp(cmd, "cancel") || !strcmp(cmd, "stop") ||
		   !strcmp(cmd, "cont") || !strcmp(cmd, "quit")) {
		if (argc - optind != 2 || wait) {
			fprintf(stderr, "multifd ctl: %s takes no arguments\n", cmd);
			return 2;
		}
		snprintf(req, sizeof(req), "{\"cmd\":\"%s\"}", cmd);
	} else {
		fprintf(stderr, "multifd ctl: unknown command '%s'\n", cmd);
		cmd_ctl_usage(stderr);
		return 2;
	}
	int fd = ctl_connect(sock);
	if (fd < 0) {
		fprintf(stderr, "multifd ctl: %s: %s\n", sock, strerror(-fd));
		return 1;
	}
	char reply[16384];
	int rc = ctl_request(fd, req, reply, sizeof(reply));
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
