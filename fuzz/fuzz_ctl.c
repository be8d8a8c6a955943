/* fuzz_ctl — the control protocol's line parser (cli/ctl_json.c) and the request check on top
 * of it (cli/ctl_request.c): any bytes in, a bounded message or an error out; every parsed
 * value is checked against the parser's promises, and every accepted request against the
 * checker's (fields in range, a target where one is needed, descriptors only where the
 * command takes them, and then exactly as many as it uses; set with something to set;
 * migrate-incoming with an address to listen on).  Each input is checked as if it
 * came with 0, 1, 2, 3 and 70 passed descriptors. */
#include <stdlib.h>
#include <string.h>
#include "../cli/ctl_json.c"
#include "../cli/ctl_request.c"

static struct ctl_msg m;

static void check_msg(void)
{
	if (m.n > CTL_MAX_KEYS)
		abort();
	for (unsigned i = 0; i < m.n; i++) {
		if (strlen(m.v[i].key) > CTL_MAX_KEY || strlen(m.v[i].str) > CTL_MAX_STR)
			abort();
		if (m.v[i].type == CTL_BOOL && m.v[i].num != 0 && m.v[i].num != 1)
			abort();
		for (unsigned k = 0; k < i; k++)
			if (!strcmp(m.v[i].key, m.v[k].key))
				abort();
	}
}

static void check_request(const struct ctl_request *r, unsigned nfds)
{
	if (r->channels < 0 || r->channels > MFD_MAX_CHANNELS || r->downtime_ms < 0 ||
	    r->downtime_ms > 3600000 || r->max_bandwidth < 0)
		abort();
	if (strcmp(ctl_cmd_name(r->cmd), ctl_str(&m, "cmd")))
		abort();
	if (r->fds_used != (nfds > 0))	/* descriptors are used, or refused */
		abort();
	switch (r->cmd) {
	case CTL_CMD_MIGRATE:
		if (!r->target || (r->fds_used && (strcmp(r->target, "fd:") || nfds < 2 ||
						   r->channels != (int64_t)nfds - 1)))
			abort();
		if (!r->fds_used && (strncmp(r->target, "tcp:", 4) && strncmp(r->target, "unix:", 5)))
			abort();
		break;
	case CTL_CMD_SAVE:
		if (r->fds_used ? r->target || nfds > 2 || r->direct_io != (nfds == 2)
				: !r->target || !r->target[0])
			abort();
		break;
	case CTL_CMD_MIGRATE_INCOMING:	/* an address of its own to listen on, never descriptors */
		if (!r->target || nfds || (strncmp(r->target, "tcp:", 4) && strncmp(r->target, "unix:", 5)))
			abort();
		break;
	case CTL_CMD_SET:	/* something to set, and only the two live parameters */
		if (nfds || (!r->has_max_bandwidth && !r->downtime_ms) || r->target || r->channels ||
		    r->live || r->direct_io)
			abort();
		break;
	default:
		if (r->target || r->channels || r->live || r->direct_io || r->has_max_bandwidth ||
		    r->downtime_ms)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned fd_counts[] = { 0, 1, 2, 3, 70 };
	char err[320];
	if (ctl_parse((const char *)data, size, &m, err, sizeof(err)) != 0) {
		if (!memchr(err, '\0', sizeof(err)))
			abort();
		return 0;
	}
	check_msg();
	for (size_t i = 0; i < sizeof(fd_counts) / sizeof(fd_counts[0]); i++) {
		struct ctl_request r;
		if (ctl_request_parse((const char *)data, size, fd_counts[i], &m, &r, err,
				      sizeof(err)) != 0) {
			if (!memchr(err, '\0', sizeof(err)) || !err[0])
				abort();
			continue;
		}
		check_msg();
		check_request(&r, fd_counts[i]);
	}
	return 0;
}
