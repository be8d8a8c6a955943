/* payload — what the workers move: one ops entry per payload type, the jobs that carry them, and
 * the worker context every payload operation runs in.
 *
 * A session holds a table of payloads (RAM is the first entry; a test registers its own).  The
 * pool moves jobs and knows nothing of them; a job names its payload (an index in the session's
 * table) and a verb, and every worker of every role runs it the same way:
 *
 *     p = &table[job.payload];  p->ops->job[job.verb](worker, p, &job)
 *
 * so a new payload is a new entry, never a new case in a worker loop.  On the destination the
 * framing decodes each packet's header and meta, and the packet type selects the payload whose
 * recv() reads its data.  The stream's own markers (SYNC, EOS) are payloads too, without data:
 * the data-channel loop has no special cases.  Planning is the payload's too: each round, the precopy driver asks
 * every payload to queue its jobs (plan()).
 *
 * Ownership: a job is copied into the pool's queue; the arguments it carries are the payload's
 * (its ops say what they mean).  A buffer a job names belongs to the job from submission on: the
 * verb that runs it, or drop() when a failure discards queued jobs, releases it.
 *
 * Threads: job functions and recv() run on the worker that took the job (worker-private state in
 * struct mfd__worker); plan() runs on the run thread between pool barriers.  What a payload's
 * context shares between the two says how it is protected (see ram.h). */
#ifndef MFD_PAYLOAD_H
#define MFD_PAYLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include "core/err.h"
#include "proto/frame.h"

struct mfd__chan;
struct mfd__pool;
struct mfd__codec;
struct mfd__payload;

enum mfd__job_verb {
	MFD_JOB_SEND,		/* source, stream: send the job's data as packets on the channel */
	MFD_JOB_RECV,		/* destination, stream: receive on the channel until its end */
	MFD_JOB_STORE,		/* save: write the job's data at its place in the file */
	MFD_JOB_LOAD,		/* restore: read it back from the file */
	MFD_JOB_DIGEST,		/* any role: fold the digest of the job's range into the total */
	MFD_JOB_VERBS
};

#define MFD_JOB_ARGS_WORDS 5

struct mfd__job {
	uint16_t payload;	/* index in the session's payload table */
	uint8_t verb;		/* enum mfd__job_verb */
	uint8_t flags;		/* the payload's */
	uint32_t round;		/* precopy round the job belongs to */
	uint64_t args[MFD_JOB_ARGS_WORDS];	/* the payload's arguments */
};

/* One worker: one data channel, its scratch buffers and its per-payload state. */
struct mfd__worker {
	unsigned index;			/* 0-based; its channel is data channel index + 1 */
	struct mfd__chan *chan;		/* set before the pool starts, then read-only */
	int chan_id;			/* chan's index in the session, for messages */
	struct mfd__errbox *errbox;	/* the session's first-error record */
	struct mfd__codec *codec;	/* worker-private: the negotiated codec's state */
	uint64_t seq;			/* worker-private: next sequence number sent / expected */
	uint8_t *meta;			/* worker-private: MFD_PROTO_MAX_META bytes */
	struct iovec *iov;		/* worker-private: MFD_WORKER_IOVS entries */
	void **state;			/* worker-private: per payload (ops->worker_state_size) */
	/* Incoming stream: the round this channel is in, and whether it ended.  Worker-private
	 * while the pool runs; the run thread reads them after a pool barrier. */
	uint32_t round;
	bool eos;
};

#define MFD_WORKER_IOVS (MFD_FRAME_IOV_HEAD + 1024 + 2)

typedef int (*mfd__job_fn)(struct mfd__worker *w, const struct mfd__payload *p,
			   const struct mfd__job *j);

/* What the precopy driver asks of a payload each round. */
struct mfd__plan {
	struct mfd__pool *pool;		/* submit the jobs here */
	uint8_t verb;			/* what this role's workers do with them (SEND or STORE) */
	uint32_t round;
	bool final;			/* the switchover's last round: the guest is stopped */
};

struct mfd__payload_ops {
	const char *name;
	uint8_t pkt_type;		/* its packet type on data channels; 0: none (files only) */
	size_t worker_state_size;	/* zeroed per worker state, 0 for none */
	/* The verbs this payload does; NULL where it does not.  Returns 0 or a negative code
	 * with the details recorded in w->errbox. */
	mfd__job_fn job[MFD_JOB_VERBS];
	/* Destination worker: a packet of pkt_type arrived (h and meta checked by the framing);
	 * read its h->data_len bytes of data.  0 or a negative code (details in w->errbox). */
	int (*recv)(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__pkt_hdr *h,
		    const uint8_t *meta);
	/* Source, run thread: queue round plan->round's jobs.  NULL: the payload sends nothing
	 * by rounds (its jobs come from elsewhere). */
	int (*plan)(const struct mfd__payload *p, const struct mfd__plan *plan);
	/* A queued job that will never run (the pool failed): release what it owns.  NULL when
	 * jobs own nothing. */
	void (*drop)(const struct mfd__payload *p, const struct mfd__job *j);
};

/* A payload registered in a session. */
struct mfd__payload {
	const struct mfd__payload_ops *ops;
	void *ctx;			/* the payload's session state; outlives the run */
	uint16_t index;			/* its place in the table (what jobs name) */
};

#define MFD_MAX_PAYLOADS 8

/* A session's payloads.  Filled before the run starts, then read-only. */
struct mfd__payloads {
	struct mfd__payload v[MFD_MAX_PAYLOADS];
	unsigned n;
	int16_t by_type[256];		/* packet type -> index, -1 for none */
};

void mfd__payloads_init(struct mfd__payloads *t);
/* Add an entry; its packet type must be unused.  Returns its index or a negative code. */
int mfd__payloads_add(struct mfd__payloads *t, const struct mfd__payload_ops *ops, void *ctx);
/* The payload that packets of this type belong to, or NULL. */
const struct mfd__payload *mfd__payloads_by_type(const struct mfd__payloads *t, uint8_t type);

/* Run a job on worker w: the one dispatch every role's workers use.  An index or verb the
 * table lacks is -EINVAL (a bug, never input). */
int mfd__payload_run(const struct mfd__payloads *t, struct mfd__worker *w, const struct mfd__job *j);
/* Release what a dropped job owns. */
void mfd__payload_drop(const struct mfd__payloads *t, const struct mfd__job *j);

static inline void *mfd__worker_state(const struct mfd__worker *w, const struct mfd__payload *p)
{
	return w->state[p->index];
}

#endif
