/* migrate/session — the state shared by outgoing and incoming sessions.
 *
 * Threads: the caller's thread runs mfd_session_run (the "run thread", which owns the main
 * channel); the pool's workers own one data channel each; the outgoing side adds a reader of
 * the main channel.  mfd_session_cancel and mfd_session_get_stats may come from any thread.
 * Lock order: s->lock, then the pool's lock, then errbox.lock. */
#ifndef MFD_MIGRATE_SESSION_H
#define MFD_MIGRATE_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include "chan/chan.h"
#include "core/err.h"
#include "core/util.h"
#include "multifd.h"
#include "pool/pool.h"
#include "proto/proto.h"
#include "ram/block.h"

/* Per data channel state, used only by the worker bound to that channel (worker-private),
 * except the counters, which are atomic (stats only). */
struct mfd__wstate {
	uint8_t *meta;			/* MFD_PROTO_MAX_META bytes */
	struct iovec *iov;		/* MFD_MAX_BATCH_PAGES + 2 entries */
	struct mfd__ram_batch batch;
	uint64_t seq;			/* next sequence number to send / expect */
	uint64_t packets;		/* atomic (stats only) */
	uint64_t normal_pages;		/* atomic (stats only) */
	uint64_t zero_pages;		/* atomic (stats only) */
	bool eos;			/* incoming: EOS seen */
};

/* Jobs carried by the pool (fixed size). */
enum mfd__job_kind {
	MFD_JOB_RAM = 1,	/* outgoing: send pages [first, first + count) of block */
	MFD_JOB_EOS,		/* outgoing: send end-of-stream on this worker's channel */
	MFD_JOB_RECV,		/* incoming: receive on this worker's channel until EOS */
	MFD_JOB_DIGEST,		/* both: add the digest of pages [first, first + count) of block */
};

struct mfd__job {
	uint32_t kind;
	uint32_t block;		/* local block index */
	uint32_t tag;		/* DIGEST: the block's position in the source's table */
	uint32_t reserved;
	uint64_t first;
	uint64_t count;
};

struct mfd_session {
	enum mfd_role role;			/* read-only */

	/* Options: set before connect/listen, then read-only. */
	unsigned channels;
	unsigned batch_pages;
	unsigned queue_depth;
	int timeout_ms;
	bool verify;
	bool zero_detect;

	struct mfd__ram ram;			/* set before start, then read-only */

	pthread_mutex_t lock;			/* protects chan[] slots, canceled, started */
	struct mfd__chan *chan[MFD_MAX_CHANNELS + 1];	/* [0] main; protected by lock for
							 * publication; each used by its owner */
	unsigned nchan;				/* main + data channels in use; written under
						 * lock (stats read it), before threads start */
	bool canceled;				/* protected by lock */
	bool started;				/* run() entered; protected by lock */
	bool stopping;				/* failure handling began; protected by lock */
	bool main_ready;			/* main channel handshaken; protected by lock */
	pthread_mutex_t main_tx_lock;		/* serialises writes on the main channel */
	int cancel_fd;				/* eventfd, readable once canceled */
	int listen_fd;				/* incoming */
	char unix_path[MFD_URI_PATH_MAX];	/* incoming unix socket we created */
	struct mfd__uri pending_fds;		/* fd: URI given to listen (already connected) */

	uint8_t session_id[MFD_UUID_LEN];
	uint64_t features;

	struct mfd__errbox errbox;
	struct mfd__pool *pool;			/* created by run(); owned by the run thread */
	struct mfd__wstate *ws;			/* nws entries; published under lock */
	unsigned nws;

	/* Incoming: source block id -> local block index, and the limits for RAM packets. */
	uint32_t *map;
	uint64_t *src_len;
	struct mfd__ram_limits limits;

	uint64_t digest;			/* atomic: sum of page digests (verify) */
	uint64_t main_tx_seq;			/* atomic: packets sent on the main channel */
	uint64_t main_rx_seq;			/* atomic: packets received on the main channel */

	int status;				/* atomic: enum mfd_status */
	uint64_t t_start_ns;			/* atomic (stats read it from any thread) */
	uint64_t t_setup_ns;			/* atomic */
	uint64_t t_end_ns;			/* atomic */
	bool verified;				/* atomic */
};

/* Shared helpers (session.c). */
void mfd__session_set_status(struct mfd_session *s, int status);
/* Record the error (first wins), tell the peer with an ERROR record on the main channel (once),
 * shut every channel down and stop the pool.  Any thread.  Returns code. */
int mfd__session_fail(struct mfd_session *s, int code, int chan, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Send a packet on the main channel (serialised with the error path). */
int mfd__session_send_main(struct mfd_session *s, uint8_t type, const void *meta, uint32_t len);
void mfd__session_shutdown_all(struct mfd_session *s);
bool mfd__session_canceled(struct mfd_session *s);
int mfd__session_add_chan(struct mfd_session *s, unsigned id, int fd);
int mfd__session_alloc_workers(struct mfd_session *s, unsigned n);
int mfd__session_start_pool(struct mfd_session *s, unsigned workers, mfd__pool_fn fn);
int mfd__session_finish(struct mfd_session *s, int rc, struct mfd_error *err);
/* Digest every page of every block with the pool (both sides compute it the same way). */
int mfd__session_digest(struct mfd_session *s, const uint32_t *order, uint32_t n);
int mfd__job_digest(struct mfd_session *s, const struct mfd__job *j);

/* Packets on a channel. */
int mfd__send_packet(struct mfd__chan *c, uint64_t *seq, uint8_t type, uint32_t round,
		     const void *meta, uint32_t meta_len, struct mfd__errbox *eb);
/* Read one non-data packet: header + meta into meta (MFD_PROTO_MAX_META bytes). */
int mfd__recv_packet(struct mfd__chan *c, uint64_t *seq, struct mfd__pkt_hdr *h, uint8_t *meta,
		     struct mfd_error *err);

int mfd__outgoing_run(struct mfd_session *s, struct mfd_error *err);
int mfd__outgoing_connect(struct mfd_session *s, const char *uri, struct mfd_error *err);
int mfd__incoming_run(struct mfd_session *s, struct mfd_error *err);

#endif
