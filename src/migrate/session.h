/* migrate/session — the session: what every role shares, split by who writes what.
 *
 * A session is one role (outgoing, incoming, save, restore) behind a role table
 * ({connect | listen | open, run, free}); session.c holds the public API and calls the role
 * only through its table.  The struct below is split into: options (set before
 * connect/listen/open, then read-only), negotiated values (written by the run thread during
 * setup, read-only once the workers start), the memory and devices (registered before the
 * run), the payload table and the RAM transfer state, the run-time machinery shared by the
 * threads (each field says what protects it), the role's private state, and statistics.
 *
 * Threads: the caller's thread runs mfd_session_run (the "run thread"); the pool's workers own
 * one data channel each; the outgoing role adds a reader of the main channel.
 * mfd_session_cancel and mfd_session_get_stats may come from any thread.
 *
 * Lock order (a lock may be taken while holding the ones before it, never the other way):
 *     s->lock  ->  pool lock  ->  errbox.lock
 *     s->main_tx_lock  ->  errbox.lock          (never held together with s->lock)
 * The barrier's lock, the rate limiter's lock and the outgoing role's ack_lock are leaves:
 * nothing is taken while holding them, and they are taken holding nothing but a worker's own
 * state (ack_lock: by the run thread and the main-channel reader). */
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
#include "payload/codec.h"
#include "payload/payload.h"
#include "payload/ram_pages.h"
#include "pool/pool.h"
#include "proto/frame.h"
#include "ram/block.h"
#include "ram/track.h"

struct mfd_session;

/* Knobs for tests only (fault injection, forcing rounds, disabling a guarantee to prove that
 * a test catches its absence).  Set before connect/listen. */
struct mfd__test_knobs {
	unsigned min_rounds;		/* outgoing: keep iterating at least this many rounds */
	bool no_barrier;		/* incoming: do NOT wait at SYNC markers (breaks ordering) */
	bool no_settle;			/* outgoing: stop the guest without waiting for the round
					 * acknowledgements (the ordering must hold without them) */
	int settle_ms;			/* outgoing: bound of that wait (0: the stall time) */
	mfd__chan_hook_fn hook;		/* installed on every channel */
	void *hook_ctx;
};

/* Options: set by mfd_session_set (and the test knobs) before connect/listen/open, then
 * read-only.  Incoming values are bounds on what a source may ask for. */
struct mfd__opts {
	unsigned channels;		/* outgoing: data channels; incoming: the most accepted;
					 * snapshots: workers */
	unsigned batch_pages;		/* outgoing: pages per packet; incoming: the most accepted */
	unsigned queue_depth;
	int timeout_ms;			/* connect and handshake */
	int stall_ms;			/* a peer gone quiet (mfd__chan_set_timeout) */
	bool verify;
	bool zero_detect;
	bool direct_io, lazy;		/* snapshots */
	bool page_checksums;		/* snapshots: write / check page CRCs */
	uint64_t device_max;		/* incoming, restore: bound on device state */
	uint8_t codec;			/* outgoing: the hello's codec id */
	struct mfd__converge_cfg conv;
	struct mfd__test_knobs knobs;
};

/* Negotiated during setup by the run thread (outgoing: connect; incoming: the first hello), then
 * read-only once the workers start. */
struct mfd__nego {
	uint8_t session_id[MFD_UUID_LEN];
	uint64_t features;
	uint32_t batch_pages;		/* what the source puts in a packet */
	const struct mfd__codec_ops *codec;
};

enum mfd__track_kind { MFD_TRACK_NONE, MFD_TRACK_UFFD, MFD_TRACK_KVM, MFD_TRACK_MANUAL };

/* Dirty tracking (live migration, live save).  The choice is made before connect/open; the
 * tracker and the per-block bitmaps are created by the run thread (a manual tracker at
 * mfd_session_track_manual, so that marks work from the start: its mark() is thread-safe).
 * The bitmaps are the RAM transfer's `dirty` (see payload/ram_pages.h for who reads them). */
struct mfd__tracking {
	enum mfd__track_kind kind;
	int kvm_fd;			/* the VMM's; not ours to close */
	struct mfd_kvm_slot *kvm_slots;
	unsigned kvm_nslots;
	struct mfd__tracker *tracker;
	uint64_t **dirty;		/* per block */
	uint64_t **populated;		/* per block: pages that may hold data (first pass) */
};

/* Statistics written by the run thread (and the roles' threads) and read by any thread:
 * every field atomic, stats only (relaxed loads and stores; nothing is ordered by them). */
struct mfd__live_stats {
	int status;			/* enum mfd_status; release/acquire: the state it
					 * publishes (digest, downtime) is stored before it */
	uint64_t t_start_ns, t_setup_ns, t_end_ns;
	uint64_t rounds, syncs, remaining, dirty_rate, bandwidth, expected_dt;
	uint64_t downtime_ms, eta_ms, device_bytes, file_bytes, ready_ms;
	uint64_t rejected_connections;
	uint64_t round_bytes;		/* memory the current round covers */
	uint64_t round_start_pages;	/* ramx's normal + zero pages when the round began */
	uint64_t cpu_ns;		/* CPU time of the session's threads */
	unsigned throttle, throttle_max;
	bool verified;
};

/* A role: what a session of that role does at each step of the public API.  A step a role does
 * not have is NULL (the public call then fails with MFD_ESTATE). */
struct mfd__role_ops {
	const char *name;		/* for messages: "migration", "save", "restore" */
	bool trackable;			/* can run live with a dirty tracker */
	int (*connect)(struct mfd_session *s, const char *uri, struct mfd_error *err);
	int (*listen)(struct mfd_session *s, const char *uri, struct mfd_error *err);
	/* path, or (path NULL) the descriptors fd and direct_fd (which it then owns). */
	int (*open)(struct mfd_session *s, const char *path, int fd, int direct_fd,
		    struct mfd_error *err);
	int (*local_uri)(struct mfd_session *s, char *buf, size_t len);
	int (*run)(struct mfd_session *s, struct mfd_error *err);
	void (*free)(struct mfd_session *s);	/* role-private state; NULL-safe on s->priv */
};

/* roles.c: the table, indexed by enum mfd_role; NULL for an unknown role. */
const struct mfd__role_ops *mfd__role_find(enum mfd_role role);

struct mfd_session {
	enum mfd_role role_id;			/* read-only */
	const struct mfd__role_ops *role;	/* read-only */
	struct mfd__opts opt;
	struct mfd__nego nego;

	/* Registered before connect/listen/open, then read-only (the RAM registry's `received`
	 * bitmaps are the destination workers', atomic bits). */
	struct mfd__ram ram;
	struct mfd__devices devices;
	struct mfd_callbacks cb;		/* copied by mfd_session_set_callbacks */
	struct mfd__tracking track;
	struct mfd__ratelimit rate;		/* its own lock; its rate is atomic: set by
						 * mfd_session_set from any thread, any time */
	uint64_t downtime_ms;			/* the downtime limit (MFD_OPT_DOWNTIME_MS).  Atomic
						 * (relaxed): written by mfd_session_set from any
						 * thread, any time; read by the precopy driver at
						 * the end of every round (opt.conv.downtime_ms is
						 * not used) */

	/* The payload table and the RAM transfer state: set up by the run thread before the
	 * pool starts, then read-only but for the atomics and bitmaps ram_pages.h names. */
	struct mfd__payloads payloads;
	uint16_t ram_payload;			/* the RAM pages' index in the table */
	struct mfd__ram_xfer ramx;

	/* Shared run-time machinery. */
	pthread_mutex_t lock;			/* protects the fields below up to `pool` */
	struct mfd__chan *chan[MFD_MAX_CHANNELS + 1];	/* [0] main: slots published under lock;
							 * each channel then used by its owner */
	unsigned nchan;				/* main + data channels in use */
	bool canceled;				/* mfd_session_cancel was called */
	bool started;				/* run() entered */
	bool stopping;				/* the failure path began */
	bool committed;				/* the destination committed: later failures and
						 * cancels change nothing */
	bool main_ready;			/* main channel handshaken: ERROR records may go */
	struct mfd__pool *pool;			/* created and destroyed by the run thread;
						 * published and retired under lock */
	struct mfd__worker *workers;		/* nworkers; published under lock before the pool
						 * starts; each used by its own worker thread */
	unsigned nworkers;

	pthread_mutex_t main_tx_lock;		/* serialises sends on the main channel */
	uint64_t main_tx_seq;			/* protected by main_tx_lock */
	uint64_t main_rx_seq;			/* the one thread reading the main channel (the
						 * run thread, or the outgoing reader once it runs) */
	int cancel_fd;				/* eventfd, readable once canceled; read-only */
	struct mfd__errbox errbox;		/* first error wins; its own lock (a leaf) */

	struct mfd__stream *stream;		/* stream.c: the markers' and receivers' state;
						 * created by the run thread before the workers,
						 * published under lock */
	void *priv;				/* the role's private state (its .c says) */
	struct mfd__live_stats st;
};

/* ---- shared machinery (runtime.c) ------------------------------------------------------------ */

/* Publish a new status and tell the embedder (mfd_callbacks.event).  Never with s->lock or
 * any other library lock held: the callback may call mfd_session_get_stats. */
void mfd__session_set_status(struct mfd_session *s, int status);
/* A round of `bytes` begins (round numbers from 1): statistics and the embedder's event. */
void mfd__session_round_begin(struct mfd_session *s, uint64_t round, uint64_t bytes);
#define MFD_ST_SET(s, field, v) __atomic_store_n(&(s)->st.field, (v), __ATOMIC_RELAXED)
#define MFD_ST_GET(s, field) __atomic_load_n(&(s)->st.field, __ATOMIC_RELAXED)
#define MFD_ST_ADD(s, field, v) __atomic_fetch_add(&(s)->st.field, (v), __ATOMIC_RELAXED)

bool mfd__session_canceled(struct mfd_session *s);
/* Options may still change: nothing connected, listened, opened or run yet. */
bool mfd__session_configurable(struct mfd_session *s);
/* Record the error (first wins), tell the peer with an ERROR record on the main channel (once,
 * best effort), shut every channel down and stop the pool.  Any thread.  Returns code.  After
 * the commit it records nothing: what fails then is teardown. */
int mfd__session_fail(struct mfd_session *s, int code, int chan, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Record a local error struct (first wins) and fail with its code. */
int mfd__session_fail_err(struct mfd_session *s, const struct mfd_error *e);
void mfd__session_shutdown_all(struct mfd_session *s);
/* Mark the migration committed (see `committed`). */
void mfd__session_commit(struct mfd_session *s);
bool mfd__session_committed(struct mfd_session *s);
/* Is this the kind of error a vanished or failing peer causes locally?  The peer's own ERROR
 * record, when one arrives, names the real cause and replaces it. */
bool mfd__transport_error(int code);
/* Record a peer's error: it replaces a local transport error (the echo of the peer's failure). */
void mfd__session_peer_error(struct mfd_session *s, const struct mfd_error *e);

/* Publish channel c in slot id (the session owns it from here; shut down at once if the session
 * was canceled meanwhile).  Installs the test hook. */
void mfd__session_add_chan(struct mfd_session *s, unsigned id, struct mfd__chan *c);
/* Register a payload (before the workers start).  Returns its index or a negative code. */
int mfd__session_add_payload(struct mfd_session *s, const struct mfd__payload_ops *ops, void *ctx);
/* Create n workers on data channels 1..n (payload states, codec instances, scratch) and the
 * pool that runs their jobs.  0 or a negative code. */
int mfd__session_start_workers(struct mfd_session *s, unsigned n, struct mfd_error *err);
/* Stop and join the workers, settle the result (after the commit nothing fails) and the
 * status.  Every run ends here.  Returns the result. */
int mfd__session_finish(struct mfd_session *s, int rc, struct mfd_error *err);

/* A packet on the main channel, serialised with every other sender of it. */
int mfd__session_send_main(struct mfd_session *s, uint8_t type, const void *meta, uint32_t len);
int mfd__session_send_main_buf(struct mfd_session *s, uint8_t type, const void *meta,
			       uint32_t len, const void *data, uint32_t data_len);

void mfd__session_set_test_knobs(struct mfd_session *s, const struct mfd__test_knobs *k);


/* ---- the stream (stream.c): what the outgoing and incoming roles share -------------------- */

/* Register the stream's payloads: RAM pages, and the SYNC and EOS markers (whose receivers
 * keep the ordering barrier); incoming also the data-channel receiver. */
int mfd__stream_add_payloads(struct mfd_session *s, bool incoming);
/* Queue a marker on every worker's channel, behind the jobs queued before it. */
int mfd__stream_sync(struct mfd_session *s, uint32_t round);
int mfd__stream_eos(struct mfd_session *s, uint32_t round);
/* Incoming: n workers on the data channels, their barrier, and a receiver job on each. */
int mfd__stream_start_receivers(struct mfd_session *s, unsigned n, struct mfd_error *err);
/* Break the receivers' barrier (the failure path); any thread. */
void mfd__stream_abort(struct mfd_session *s);
void mfd__stream_free(struct mfd_session *s);
/* The next main-channel packet other than PING (the run thread, or the outgoing reader).  An
 * ERROR record becomes the peer's error ("<peer> failed: <reason>"), in err and replacing a
 * local transport error in the session's errbox; its code is returned.  Silence for the
 * channel's timeout is -ETIMEDOUT ("<peer> silent for N ms"). */
int mfd__stream_recv_main(struct mfd_session *s, const char *peer, struct mfd__pkt_hdr *h,
			  uint8_t *meta, struct mfd_error *err);
/* Wire bytes sent on the data channels so far (bandwidth). */
uint64_t mfd__stream_bytes_sent(struct mfd_session *s);

/* ---- the precopy driver (rounds.c), shared by live migration and live save ------------------- */

/* What differs between a stream and a file at the ends of a precopy. */
struct mfd__sink_ops {
	const char *verb;			/* for messages: "sending", "saving" */
	uint8_t job_verb;			/* what workers do with pages: SEND, STORE */
	/* After the workers started, before tracking: the stream sends the block table. */
	int (*begin)(struct mfd_session *s, struct mfd_error *err);
	/* After a (non-final) round's jobs: the stream queues SYNC markers.  NULL: nothing. */
	int (*end_round)(struct mfd_session *s, uint32_t round);
	/* The switchover is decided, the guest still runs: wait (bounded) until what the rounds
	 * sent has arrived, so the stop does not begin with a drain.  rounds: passes made.
	 * Returns 0 or the session's failure.  NULL: nothing to wait for. */
	int (*settle)(struct mfd_session *s, uint32_t rounds);
	/* Bytes moved so far, for the bandwidth estimate. */
	uint64_t (*progress)(struct mfd_session *s);
	/* With the final round queued: device states, then everything to the end (drain,
	 * digest, the stream's END and COMMIT, the file's metadata).  rounds: passes made. */
	int (*finish)(struct mfd_session *s, uint32_t rounds, struct mfd_error *err);
	/* Every run, after a failure was recorded (rc < 0) or finish succeeded: settle.  The
	 * stream joins its reader and may turn a late failure into success if the destination
	 * committed; the file removes its temporary.  Returns the result. */
	int (*conclude)(struct mfd_session *s, int rc);
};

/* The whole run of a source or a save; the error's details go to the session's errbox. */
int mfd__precopy_run(struct mfd_session *s, const struct mfd__sink_ops *sink);
/* The digest of all RAM with the pool, in the local order (source, save). */
int mfd__precopy_digest(struct mfd_session *s);
void mfd__tracking_free(struct mfd_session *s);

/* ---- the destination's door (admit.c) --------------------------------------------------------- */

/* Accept connections from l until one session's channels are all there (then they are the
 * session's, and s->nego holds its parameters), refusing and counting every other connection.
 * Returns 0, MFD_ECANCELED, or (passed descriptors only) the refusal that ended the wait. */
int mfd__admit_channels(struct mfd_session *s, struct mfd__listener *l, struct mfd_error *err);

/* ---- the roles (outgoing.c, incoming.c, save.c, restore.c) ------------------------------------ */
extern const struct mfd__role_ops mfd__role_outgoing, mfd__role_incoming, mfd__role_save,
	mfd__role_restore;

#endif
