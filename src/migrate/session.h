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
#include "core/sync.h"
#include "core/util.h"
#include "devstate/devstate.h"
#include "migrate/converge.h"
#include "multifd.h"
#include "pool/pool.h"
#include "proto/proto.h"
#include "ram/block.h"
#include "ram/track.h"

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
	uint32_t round;			/* incoming: round this channel is in */
	bool eos;			/* incoming: EOS seen */
};

/* Jobs carried by the pool (fixed size). */
enum mfd__job_kind {
	MFD_JOB_RAM = 1,	/* outgoing: send pages [first, first + count) of block */
	MFD_JOB_RAM_DIRTY,	/* outgoing: send the pages of that span set in the dirty bitmap */
	MFD_JOB_SYNC,		/* outgoing: end of round `round` on this worker's channel */
	MFD_JOB_EOS,		/* outgoing: send end-of-stream on this worker's channel */
	MFD_JOB_RECV,		/* incoming: receive on this worker's channel until EOS */
	MFD_JOB_DIGEST,		/* both: add the digest of pages [first, first + count) of block */
};

struct mfd__job {
	uint32_t kind;
	uint32_t block;		/* local block index */
	uint32_t tag;		/* DIGEST: the block's position in the source's table */
	uint32_t round;		/* RAM, SYNC: the precopy round */
	uint64_t first;
	uint64_t count;
};

/* Knobs for tests only (fault injection, forcing rounds, disabling a guarantee to prove that
 * a test catches its absence).  Set before connect/listen. */
struct mfd__test_knobs {
	unsigned min_rounds;		/* outgoing: keep iterating at least this many rounds */
	bool no_barrier;		/* incoming: do NOT wait at SYNC markers (breaks ordering) */
	mfd__chan_hook_fn hook;		/* installed on every channel */
	void *hook_ctx;
};

enum mfd__track_kind { MFD_TRACK_NONE, MFD_TRACK_UFFD, MFD_TRACK_KVM, MFD_TRACK_MANUAL };

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
	bool committed;				/* the destination committed: later failures and
						 * cancels change nothing; protected by lock */
	int admit_fd;				/* incoming: the fd whose hello is being read, so a
						 * failure can shut it down; protected by lock */
	bool main_ready;			/* main channel handshaken; protected by lock */
	pthread_mutex_t main_tx_lock;		/* serialises writes on the main channel */
	int cancel_fd;				/* eventfd, readable once canceled */
	int listen_fd;				/* incoming */
	char unix_path[MFD_URI_PATH_MAX];	/* incoming unix socket we created */
	struct mfd__uri pending_fds;		/* fd: URI given to listen (already connected) */

	uint8_t session_id[MFD_UUID_LEN];
	uint64_t features;

	struct mfd__errbox errbox;
	struct mfd__pool *pool;			/* created by run(); owned by the run thread;
						 * published and retired under lock */
	struct mfd__wstate *ws;			/* nws entries; published under lock */
	unsigned nws;

	/* Incoming: source block id -> local block index, and the limits for RAM packets. */
	uint32_t *map;
	uint64_t *src_len;
	struct mfd__ram_limits limits;

	uint64_t digest;			/* atomic: sum of page digests (verify) */
	/* Live migration, outgoing.  Set before run, then owned by the run thread, except: `dirty`
	 * bitmaps are written by the run thread between pool barriers and read by workers during a
	 * round (the pool's lock orders the two); the tracker's mark() is thread-safe. */
	enum mfd__track_kind track_kind;
	int kvm_fd;
	struct mfd_kvm_slot *kvm_slots;
	unsigned kvm_nslots;
	struct mfd__tracker *tracker;
	uint64_t **dirty;			/* per block: pages to send this round */
	struct mfd_callbacks cb;
	struct mfd__converge_cfg conv_cfg;
	struct mfd__ratelimit rate;
	struct mfd__devices devices;		/* both roles */
	uint64_t device_max;			/* incoming bound (MFD_OPT_DEVICE_MAX_BYTES) */
	struct mfd__test_knobs knobs;

	/* Snapshots (MFD_SAVE, MFD_RESTORE): options set before mfd_session_open_file, then
	 * read-only; `snap` is set by open_file (run thread only afterwards; migrate/snapshot.h). */
	bool direct_io;
	bool lazy;
	struct mfd__snapshot *snap;
	uint64_t st_file_bytes;			/* atomic (stats only) */
	uint64_t st_ready_ms;			/* atomic (stats only) */

	/* Incoming: receivers meet at every SYNC marker (the ordering guarantee). */
	struct mfd__barrier barrier;
	bool barrier_ready;

	/* Live statistics, atomic (written by the run thread, read by any). */
	uint64_t st_rounds, st_syncs, st_remaining, st_dirty_rate, st_bandwidth, st_expected_dt;
	uint64_t st_downtime_ms, st_eta_ms, st_device_bytes;
	unsigned st_throttle, st_throttle_max;

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

void mfd__session_set_test_knobs(struct mfd_session *s, const struct mfd__test_knobs *k);
/* Mark the migration committed (see `committed`). */
void mfd__session_commit(struct mfd_session *s);
/* Is this the kind of error a vanished or failing peer causes locally?  The peer's own ERROR
 * record, when one arrives, names the real cause and replaces it. */
bool mfd__transport_error(int code);
/* Record a peer's error: it replaces a local transport error (the echo of the peer's failure). */
void mfd__session_peer_error(struct mfd_session *s, const struct mfd_error *e);

/* Packets on a channel. */
int mfd__send_packet(struct mfd__chan *c, uint64_t *seq, uint8_t type, uint32_t round,
		     const void *meta, uint32_t meta_len, struct mfd__errbox *eb);
/* Read one main-channel packet: header + meta into meta (MFD_PROTO_MAX_META bytes).  Only DEVICE
 * packets may carry data, which the caller then reads (h->data_len bytes). */
int mfd__recv_packet(struct mfd__chan *c, uint64_t *seq, struct mfd__pkt_hdr *h, uint8_t *meta,
		     struct mfd_error *err);

/* Precopy rounds (rounds.c), shared by live migration and live save. */
struct mfd__rounds_ops {
	int (*submit)(struct mfd_session *s, uint32_t round);	/* queue round `round`'s work */
	uint64_t (*progress)(struct mfd_session *s);	/* bytes moved so far (bandwidth) */
	const char *verb;					/* for messages: "sending" */
};
int mfd__rounds_start_tracking(struct mfd_session *s, struct mfd_error *err);
/* The pages written since the last sync into s->dirty (cleared first unless `keep`, which merges
 * a final sync into a set not yet sent); *bytes: the dirty total. */
int mfd__rounds_dirty_sync(struct mfd_session *s, bool keep, uint64_t *bytes, struct mfd_error *err);
void mfd__rounds_set_throttle(struct mfd_session *s, unsigned pct);
/* Iterate rounds until the convergence controller says switch over (0) or fail (< 0).  *round:
 * the rounds done, i.e. the round whose pages s->dirty now holds (not yet sent). */
int mfd__rounds_precopy(struct mfd_session *s, const struct mfd__rounds_ops *ops, uint32_t *round,
			struct mfd_error *err);
/* Switchover: stop the guest (cb.stop; *stopped once it did, so failure paths resume it) and
 * merge the final dirty sync into the set still to send. */
int mfd__rounds_stop(struct mfd_session *s, uint64_t *t_stop_ns, bool *stopped,
		     struct mfd_error *err);

int mfd__outgoing_run(struct mfd_session *s, struct mfd_error *err);
int mfd__outgoing_connect(struct mfd_session *s, const char *uri, struct mfd_error *err);
int mfd__incoming_run(struct mfd_session *s, struct mfd_error *err);
/* Snapshots (save.c, restore.c, snapshot.c). */
int mfd__save_run(struct mfd_session *s, struct mfd_error *err);
int mfd__restore_run(struct mfd_session *s, struct mfd_error *err);
void mfd__snapshot_free(struct mfd_session *s);

#endif
