/* cli/ctl_request — a control request, checked: which command, and its fields with their
 * types and ranges, before anything is done with it (docs/control.md lists them).
 *
 * Strict, like the parser under it: a field the command does not take, a value of the wrong
 * type or out of range, a URI a migration cannot use, or descriptors passed where the command
 * takes none (or the wrong number of them) are refused with a message that names what was
 * wrong.  The URI check is syntactic (scheme, host and port, path length); reaching the peer
 * is the migration's job.  Untrusted input: fuzz/fuzz_ctl.c feeds it too. */
#ifndef MFD_CLI_CTL_REQUEST_H
#define MFD_CLI_CTL_REQUEST_H

#include "ctl_json.h"
#include "multifd.h"

/* Descriptors one request may carry: a main channel plus every data channel. */
#define CTL_MAX_FDS (MFD_MAX_CHANNELS + 1)

enum ctl_cmd {
	CTL_CMD_QUERY = 1,
	CTL_CMD_MIGRATE,
	CTL_CMD_SAVE,
	CTL_CMD_CANCEL,
	CTL_CMD_STOP,
	CTL_CMD_CONT,
	CTL_CMD_QUIT,
	CTL_CMD_SET,
	CTL_CMD_EVENTS,
	CTL_CMD_MIGRATE_INCOMING,
};

struct ctl_request {
	enum ctl_cmd cmd;
	/* migrate: "tcp:HOST:PORT", "unix:PATH", or "fd:" (then fds_used is set);
	 * save: the file's path, or NULL when fds_used;
	 * migrate-incoming: "tcp:HOST:PORT" (port 0: any) or "unix:PATH".
	 * Points into the parsed message. */
	const char *target;
	/* The descriptors passed with the request are the migration's channels (main first) or
	 * the snapshot file (buffered first, then the O_DIRECT one). */
	bool fds_used;
	int64_t channels;		/* 0: the default */
	int64_t downtime_ms;		/* 0: the default (set: unchanged) */
	int64_t max_bandwidth;		/* bytes/s, 0: unlimited */
	bool has_max_bandwidth;		/* the request gave max_bandwidth (set: 0 lifts the cap) */
	bool live, direct_io;		/* save */
};

/* The name of a command ("query", ...). */
const char *ctl_cmd_name(enum ctl_cmd cmd);

/* Parse one request line (without its newline) that came with nfds passed descriptors.  m is
 * the caller's (large) parse buffer; req points into it.  Returns 0, or -1 with the reason in
 * err. */
int ctl_request_parse(const char *line, size_t len, unsigned nfds, struct ctl_msg *m,
		      struct ctl_request *req, char *err, size_t errlen);

#endif
