/* cli/progress — how the command shows a migration (or save) to a person.
 *
 * On a terminal: one line, rewritten in place, with the status, the round and how much of it is
 * done (a bar and a percentage: each round starts empty), the time left, the throughput (bytes
 * moved per second since the previous line), the guest's dirty rate and the downtime expected
 * if the switchover came now.  Elsewhere the callers print JSON lines instead (docs/json.md).
 * And `ctl SOCKET info`: the state of the last operation, field by field, as QEMU's HMP `info
 * migrate` or virsh's `domjobinfo` show it. */
#ifndef MFD_CLI_PROGRESS_H
#define MFD_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>
#include "multifd.h"

struct progress {
	bool started;
	uint64_t last_wire, last_ms;	/* the previous line's figures */
	double rate_mib_s;		/* throughput between the last two lines */
};

/* Print the line for st (over the previous one, with \r); a final status ends it with \n. */
void progress_line(FILE *out, struct progress *p, const struct mfd_stats *st);
/* The `ctl info` view of a query reply (docs/control.md). */
void progress_info(FILE *out, const char *reply);
/* A summary's line: every channel's bytes, and the data channels' rates. */
void progress_channels(FILE *out, const struct mfd_stats *st);
/* "1.5 GiB", "300.0 MiB", "12.0 KiB", "512 B" */
const char *progress_bytes(char *buf, size_t cap, uint64_t bytes);

#endif
