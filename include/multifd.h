/*
 * multifd — move the memory of a running process or VM over many parallel channels.
 *
 * This is the only public header.  Everything returns 0 (or a byte count) on success and a
 * negative code on failure: -errno for system errors, MFD_E* (below -1000) for protocol and
 * format errors.  mfd_strerror() names every code.  Functions that can fail with details take a
 * caller-owned struct mfd_error; the first error recorded in it wins.
 *
 * The library never prints, exits, aborts or reads the environment.
 *
 * A session moves a set of RAM blocks:
 *
 *     struct mfd_session *s = mfd_session_new(MFD_OUTGOING);
 *     mfd_session_set(s, MFD_OPT_CHANNELS, 4);
 *     mfd_ram_block_add(s, "ram0", host, len, 4096, 0);
 *     mfd_session_connect(s, "tcp:127.0.0.1:4444", &err);    // or mfd_session_listen() + accept
 *     mfd_session_run(s, &err);                               // blocks until done or failed
 *     mfd_session_get_stats(s, &st);
 *     mfd_session_free(s);
 *
 * A session is single-use: it runs once (mfd_session_run a second time fails with MFD_ESTATE),
 * successfully or not; another migration, save or restore takes a new session.
 *
 * Threads.  The library keeps no global state: calls on different sessions never interfere.
 * A session belongs to one thread at a time, its owner (the one that created it, or any thread
 * it is handed to with proper synchronisation), which makes every call on it except those
 * marked "any thread": those may come from any thread at any time while the session exists,
 * concurrently with each other and with the owner's calls (mfd_session_run included), but not
 * with or after mfd_session_free.  Calls that take no session (mfd_strerror, mfd_version,
 * mfd_uri_check, mfd_stats_json, mfd_snapshot_inspect, ...) are safe from any thread on
 * arguments no other thread writes.  Callbacks run on the thread that runs mfd_session_run
 * unless their comment says otherwise, never with a library lock held.
 *
 * Growing structures.  struct mfd_stats, struct mfd_callbacks and struct mfd_snapshot_info gain
 * members, at their end only, in later releases.  Every call that takes one also takes its
 * size: the macro of the plain name (mfd_session_get_stats, mfd_session_set_callbacks, ...)
 * passes sizeof of the struct as this header declares it, so callers write nothing more, and
 * a program built against an older header keeps working with a newer library (the library reads
 * and fills only the bytes the caller's struct has; a member the caller does not have counts as
 * zero or NULL).  A struct that is an element of an array (struct mfd_channel_stats,
 * mfd_snapshot_block, mfd_snapshot_device, mfd_kvm_slot), struct mfd_error and struct
 * mfd_device_ops never change: what they would need comes as a new member elsewhere or a new
 * call.  docs/design.md, "The API and its growth", says why.
 */
#ifndef MULTIFD_H
#define MULTIFD_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MFD_API __attribute__((visibility("default")))
#else
#define MFD_API
#endif

/* ---- version --------------------------------------------------------------------------- */

/* The library's version, in this one place (the Makefile reads it from here).  The number is
 * MAJOR * 10000 + MINOR * 100 + PATCH, so that it compares as versions do (0.2.0 is 200). */
#define MFD_VERSION_MAJOR 0
#define MFD_VERSION_MINOR 2
#define MFD_VERSION_PATCH 0
#define MFD_VERSION_NUMBER (MFD_VERSION_MAJOR * 10000 + MFD_VERSION_MINOR * 100 + MFD_VERSION_PATCH)

/* The version of the library actually loaded, which may be newer than the header a program was
 * built with: "0.2.0", and MFD_VERSION_NUMBER as that library defines it.  Any thread. */
MFD_API const char *mfd_version(void);
MFD_API unsigned mfd_version_number(void);

/* ---- errors --------------------------------------------------------------------------- */

/* Library-specific error codes.  System errors are returned as -errno instead. */
enum mfd_errcode {
	MFD_EBASE = 1000,
	MFD_EMAGIC = -1001,	/* bad magic number */
	MFD_EVERSION = -1002,	/* unsupported protocol or file version */
	MFD_ESESSION = -1003,	/* session id does not match */
	MFD_ECHANID = -1004,	/* channel id out of range */
	MFD_EDUPCHAN = -1005,	/* channel connected twice */
	MFD_EBLOCK = -1006,	/* unknown RAM block */
	MFD_ERANGE = -1007,	/* offset outside the RAM block */
	MFD_EALIGN = -1008,	/* offset not aligned to the page size */
	MFD_EPAGES = -1009,	/* page count over the bound */
	MFD_ELENGTH = -1010,	/* length field does not match the content */
	MFD_ETRUNC = -1011,	/* data ends early: a stream inside a packet, a file short */
	MFD_ECHECKSUM = -1012,	/* checksum mismatch (a header, a record, a snapshot page) */
	MFD_ETYPE = -1013,	/* unknown or unexpected packet type */
	MFD_ESEQ = -1014,	/* packet sequence number out of order */
	MFD_EPAGESIZE = -1015,	/* page size unsupported or different on the two sides */
	MFD_ECHANCOUNT = -1016,	/* channel count out of range or different */
	MFD_EFEATURE = -1017,	/* a required feature is not supported */
	MFD_EBLOCKTABLE = -1018,	/* RAM block tables differ between the two sides */
	MFD_ECLOSED = -1019,	/* peer closed the connection */
	MFD_ECANCELED = -1020,	/* canceled by the caller */
	MFD_EVERIFY = -1021,	/* digest of the destination differs from the source */
	MFD_EREJECTED = -1022,	/* the peer rejected the stream (its reason is in the message) */
	MFD_EURI = -1023,	/* malformed URI */
	MFD_ESTATE = -1024,	/* call not valid in the session's current state */
	MFD_ECOUNT = -1025,	/* packet or page totals differ from what the source sent */
	MFD_ECONVERGE = -1026,	/* did not converge before the deadline */
	MFD_EDEVICE = -1027,	/* device state unknown, too new, or refused by its loader */
	MFD_EROUND = -1028,	/* packet of the wrong precopy round */
	MFD_EINCOMPLETE = -1029,	/* snapshot file without its header or trailer: the save
				 * did not complete */
	MFD_ELAST = -1030
};

#define MFD_ERROR_MSG_MAX 256

/* A caller-owned error record.  The first error recorded wins; later ones are dropped.
 * Zero-initialise it (or call mfd_error_clear) before use. */
struct mfd_error {
	int code;			/* 0 or a negative code */
	int channel;			/* channel index the error happened on, or -1 */
	char msg[MFD_ERROR_MSG_MAX];	/* human-readable, names the channel and cause */
};

/* Name of a code (0, -errno or MFD_E*).  Never NULL.  The string is static, except for -errno
 * codes, whose text is in a buffer of the calling thread that the thread's next call reuses.
 * Any thread. */
MFD_API const char *mfd_strerror(int code);
/* Make err empty (code 0, channel -1, message "") so that the next error recorded in it is
 * kept; a zero-initialised record is empty too, but for its channel.  NULL is fine.  Any
 * thread, on a record no other thread uses at the time. */
MFD_API void mfd_error_clear(struct mfd_error *err);

/* ---- sessions --------------------------------------------------------------------------- */

enum mfd_role {
	MFD_OUTGOING = 1,	/* source: sends memory */
	MFD_INCOMING = 2,	/* destination: receives memory */
	MFD_SAVE = 3,		/* write a mapped-ram snapshot file (see "mapped-ram snapshots") */
	MFD_RESTORE = 4,	/* read one back into registered memory */
};

enum mfd_option {
	/* Outgoing: the number to use.  Incoming: the most a source may use (it bounds what the
	 * destination allocates); default 4 outgoing, MFD_MAX_CHANNELS incoming. */
	MFD_OPT_CHANNELS = 1,	/* data channels, 1..MFD_MAX_CHANNELS */
	MFD_OPT_BATCH_PAGES,	/* pages per RAM packet, 1..MFD_MAX_BATCH_PAGES; as above, default
				 * 512 (2 MiB) outgoing, MFD_MAX_BATCH_PAGES incoming */
	MFD_OPT_VERIFY,		/* 1: digest every block on both sides and compare (default 0) */
	MFD_OPT_QUEUE_DEPTH,	/* jobs queued per worker before submit blocks (default 4) */
	MFD_OPT_TIMEOUT_MS,	/* connect and handshake; default 10000, 0 = none */
	MFD_OPT_ZERO_DETECT,	/* 1: send all-zero pages as offsets only (default 1) */
	/* Live migration (outgoing, with a dirty tracker): */
	MFD_OPT_DOWNTIME_MS,	/* the most the guest may stay stopped (300): switch over once the
				 * expected downtime is below it, after up to 4 more rounds while
				 * each halves the dirty set (a ceiling, not a target) */
	MFD_OPT_MAX_BANDWIDTH,	/* bytes per second over all channels; 0 = unlimited (0) */
	MFD_OPT_DEADLINE_MS,	/* give up converging after this long; 0 = never (0) */
	MFD_OPT_DEADLINE_FORCE,	/* at the deadline: 1 = switch over anyway, 0 = fail (0) --
				 * unless the deadline comes within 2 rounds of an extra round
				 * the controller chose under the limit that overshot it: then it
				 * switches over */
	MFD_OPT_AUTO_THROTTLE,	/* 1: ask the embedder to throttle when not converging (1) */
	MFD_OPT_THROTTLE_INITIAL,	/* first throttle percentage (20) */
	MFD_OPT_THROTTLE_STEP,	/* added each round that still does not converge (10) */
	MFD_OPT_THROTTLE_MAX,	/* upper bound, 1..99 (99) */
	/* Incoming: */
	MFD_OPT_DEVICE_MAX_BYTES,	/* bound on one device's state and on their total (64 MiB) */
	/* Snapshots (MFD_SAVE, MFD_RESTORE); MFD_OPT_CHANNELS is then the number of workers: */
	MFD_OPT_DIRECT_IO,	/* 1: page data with O_DIRECT, straight from/to the block memory (0) */
	MFD_OPT_LAZY,		/* restore: 1 = map the file instead of reading it (0); see below */
	MFD_OPT_STALL_MS,	/* a peer gone quiet (default 2000, 0 = never): the destination's
				 * main channel without a packet for this long (the source pings it
				 * four times a second), a transfer under way that moves less than
				 * 64 KiB in this long (a black hole, a trickle), data the peer
				 * never acknowledges (TCP_USER_TIMEOUT): the session fails, naming
				 * the channel.  Keep it above the longest time a destination may
				 * legitimately stop reading one channel (its receivers wait at a
				 * round's end for the slowest channel).  A source also waits at
				 * most this long (2000 ms when 0) for the destination to confirm
				 * every round before it stops the guest */
	MFD_OPT_PAGE_CHECKSUMS,	/* save: store a CRC-32C of every page (1); restore: check them
				 * when the file has them (1; a lazy restore does not read
				 * pages: see mfd_snapshot_verify) */
};

#define MFD_MAX_CHANNELS 64
#define MFD_MIN_PAGE_SIZE 4096u		/* page sizes: powers of two in this range */
#define MFD_MAX_PAGE_SIZE 65536u
#define MFD_MAX_BATCH_PAGES 1024
#define MFD_MAX_BLOCKS 256
#define MFD_MAX_NAME 255

struct mfd_session;

/* Create a session; NULL when out of memory or for an unknown role.  The calling thread owns it.
 * Free with mfd_session_free (NULL is fine), which joins every thread of the session: call it
 * after mfd_session_run returned (or if it never ran), from the owner, with no "any thread" call
 * under way or to come. */
MFD_API struct mfd_session *mfd_session_new(enum mfd_role role);
MFD_API void mfd_session_free(struct mfd_session *s);

/* Set an option.  Before connect, listen or open_file: every option, from the owner.  Later,
 * and while the session runs: MFD_OPT_MAX_BANDWIDTH and MFD_OPT_DOWNTIME_MS only, from any
 * thread (an operator's "migrate-set-parameters"): a new bandwidth cap applies from the next
 * packet, a new downtime limit from the end of the current round.  Returns 0, -EINVAL (unknown
 * option, value out of range, or an option the role does not have) or MFD_ESTATE (too late for
 * this option). */
MFD_API int mfd_session_set(struct mfd_session *s, enum mfd_option opt, int64_t value);

/* Flags for mfd_ram_block_add. */
#define MFD_BLOCK_ZEROED 0x1u	/* incoming: memory is known to be all zero (fresh anonymous
				 * mapping), so zero pages received for the first time need no
				 * write and are never faulted in */

/* Register a RAM block (owner, before connect/listen/open).  The memory [host, host+len) is owned
 * by the caller and must stay mapped until the session is freed.  len must be a multiple of page_size; page_size a power of two from
 * 4 KiB to 64 KiB, the same for every block of a session (huge-page backed memory is still moved
 * and tracked in small pages).  Block names are unique within a session; both sides register the same names,
 * lengths and page sizes (the destination checks).  Returns the block index (>= 0) or an error. */
MFD_API int mfd_ram_block_add(struct mfd_session *s, const char *name, void *host, uint64_t len,
			      uint32_t page_size, unsigned flags);

/* Outgoing: connect the main channel and every data channel to uri and handshake (owner).
 * uri: tcp:HOST:PORT (HOST may be [v6]), unix:PATH, fd:A,B,... (one connected fd per channel,
 * main first; the session takes ownership).  Blocks up to MFD_OPT_TIMEOUT_MS. */
MFD_API int mfd_session_connect(struct mfd_session *s, const char *uri, struct mfd_error *err);

/* Incoming: bind and listen on uri (tcp:HOST:PORT with port 0 for any, unix:PATH, or fd:N of a
 * listening socket, or fd:A,B,... of already connected sockets).  Returns without waiting
 * (owner). */
MFD_API int mfd_session_listen(struct mfd_session *s, const char *uri, struct mfd_error *err);

/* Check a channel URI's syntax without connecting or listening (tcp:HOST:PORT, tcp:[V6]:PORT,
 * unix:PATH, fd:N[,N...], file:PATH).  Returns 0 or MFD_EURI with the reason in err.  Any
 * thread. */
MFD_API int mfd_uri_check(const char *uri, struct mfd_error *err);

/* The address actually listened on, as a URI (tcp port resolved).  Returns 0, -ENOSPC or
 * MFD_ESTATE (not an incoming session).  Owner, or any thread once listen returned. */
MFD_API int mfd_session_local_uri(struct mfd_session *s, char *buf, size_t len);

/* Run to completion (owner; once per session).  Outgoing: send every page of every block, then
 * wait for the destination to commit.  Incoming: accept the channels (any order), receive,
 * commit.  Blocks; mfd_session_cancel from another thread ends it early. */
MFD_API int mfd_session_run(struct mfd_session *s, struct mfd_error *err);

/* Ask a running session to stop; mfd_session_run then returns MFD_ECANCELED.  Any thread, any
 * time, several times (not from a signal handler: it takes a lock). */
MFD_API void mfd_session_cancel(struct mfd_session *s);

/* ---- dirty tracking (live migration) ------------------------------------------------------ */

/* A KVM memory slot that maps (part of) a registered RAM block into the guest.  The VMM created
 * the slot with KVM_SET_USER_MEMORY_REGION at guest_phys_addr, userspace_addr = block host +
 * block_offset; the library turns on KVM_MEM_LOG_DIRTY_PAGES for it while tracking. */
struct mfd_kvm_slot {
	uint32_t slot;		/* KVM slot id (as_id << 16 | id) */
	uint32_t flags;		/* the slot's flags as the VMM set them */
	uint64_t guest_phys_addr;
	uint64_t size;		/* bytes, a multiple of the page size */
	int block;		/* index returned by mfd_ram_block_add */
	uint64_t block_offset;	/* where the slot starts within the block */
};

/* Choose how the source finds pages written during the migration.  Without a tracker the
 * session sends every page once (the memory must not change).  Owner, after the blocks are
 * registered and before connect/open. */
MFD_API int mfd_session_track_uffd(struct mfd_session *s);	/* userfaultfd write-protect */
MFD_API int mfd_session_track_kvm(struct mfd_session *s, int vm_fd, const struct mfd_kvm_slot *slots,
				  unsigned nslots);		/* KVM dirty log; slots copied */
MFD_API int mfd_session_track_manual(struct mfd_session *s);	/* mfd_session_mark_dirty */
/* Manual tracking: the embedder reports a write.  Any thread, lock-free, any time after
 * mfd_session_track_manual. */
MFD_API int mfd_session_mark_dirty(struct mfd_session *s, int block, uint64_t offset, uint64_t len);

/* What mfd_callbacks.event reports (more may come: ignore the ones you do not know). */
enum mfd_event {
	MFD_EVENT_STATUS = 1,	/* the status changed; value: the new one (enum mfd_status) */
	MFD_EVENT_ROUND = 2,	/* a precopy round (pass over the pages) began; value: its number,
				 * 1 for the first full pass (QEMU's MIGRATION_PASS) */
};

/* What the library asks of the embedder during a session.  Called from the thread that runs
 * mfd_session_run (but see event).  Every member may be NULL.  A struct that grows (see the top
 * of this header): members are only ever added at the end. */
struct mfd_callbacks {
	/* Switchover: stop the guest (vCPUs, devices) now.  0, or a negative code to abort. */
	int (*stop)(void *opaque);
	/* The migration failed after stop(): start the guest again on the source. */
	void (*resume)(void *opaque);
	/* Slow the guest down to (100 - pct)% of its speed; pct 0 lifts the throttle. */
	void (*throttle)(void *opaque, unsigned pct);
	void *opaque;
	/* Something the embedder may want in its log (a listening destination refused a
	 * connection, and why).  One line, no newline.  Any role. */
	void (*log)(void *opaque, const char *msg);
	/* Since 0.2.  Progress worth telling an operator (enum mfd_event), so that nobody needs
	 * to poll: every status change (setup, active, switchover, and the final one) and every
	 * precopy round.  Called on the thread that made the change: the one in
	 * mfd_session_connect, listen, open_file or run, or mfd_session_cancel's caller for a
	 * session canceled before it ran.  It may call mfd_session_get_stats; it must return
	 * quickly (the migration waits for it). */
	void (*event)(void *opaque, int event, uint64_t value);
};

/* Set the callbacks (owner, before connect/listen/open).  The struct is copied: it need not
 * outlive the call (opaque must outlive the session).  NULL clears them.  Returns 0,
 * MFD_ESTATE (too late), -EINVAL (size below the first release's struct) or -E2BIG (cb_size
 * larger than this library's struct, with a member it does not know set).  Through the macro,
 * cb_size is sizeof(struct mfd_callbacks) of the header the caller was built with. */
MFD_API int mfd_session_set_callbacks_sized(struct mfd_session *s, const struct mfd_callbacks *cb,
					    size_t cb_size);
#define mfd_session_set_callbacks(s, cb) \
	mfd_session_set_callbacks_sized((s), (cb), sizeof(struct mfd_callbacks))

/* ---- device state ------------------------------------------------------------------------- */

struct mfd_device_ops {
	/* Source, at switchover with the guest stopped: write the state into buf (cap bytes) and
	 * return its length; if it needs more than cap, return the length needed (the library calls
	 * again with a buffer that large); < 0 on error. */
	long (*save)(void *opaque, void *buf, size_t cap);
	/* Destination: load a state of len bytes that a source with `version` saved.  0 or < 0. */
	int (*load)(void *opaque, const void *buf, size_t len, uint32_t version);
};

/* Register a device on either side (owner, before connect/listen/open).  (name, instance)
 * identifies it; the destination accepts state from versions up to its own.  ops and opaque
 * must outlive the session; the callbacks run on the thread that runs mfd_session_run. */
MFD_API int mfd_device_add(struct mfd_session *s, const char *name, uint32_t instance,
			   uint32_t version, const struct mfd_device_ops *ops, void *opaque);

/* Optional, after mfd_device_add (owner, before connect/listen/open): what the device's state
 * depends on, as printable text of up to 255 bytes that must be equal on both sides ("vcpus=2
 * model=host"), and, when its state always has the same size, that size (0: it varies).
 * Before any page moves, a destination compares the source's device set with its own (names,
 * instances, versions, these descriptions) and refuses a migration it could not load
 * (MFD_EDEVICE, naming the device and both descriptions, reported on both sides).  A save of
 * another size than declared fails (MFD_EDEVICE).  Returns 0, -ENOENT (no such device),
 * -EINVAL (config too long or not printable) or MFD_ESTATE. */
MFD_API int mfd_device_describe(struct mfd_session *s, const char *name, uint32_t instance,
				const char *config, uint64_t fixed_size);

/* ---- statistics --------------------------------------------------------------------------- */

struct mfd_channel_stats {
	uint64_t bytes;		/* bytes on the wire, headers included */
	uint64_t packets;
};

/* A struct that grows (see the top of this header).  chan[] keeps its 65 entries: were
 * MFD_MAX_CHANNELS ever to grow, the channels past 64 would come through a call of their own. */
struct mfd_stats {
	int status;			/* enum mfd_status */
	uint64_t total_ms;		/* from run start to completion (or now) */
	uint64_t setup_ms;		/* connect + handshake + block table */
	uint64_t mem_bytes;		/* sum of registered block lengths */
	uint64_t wire_bytes;		/* all channels, headers included */
	uint64_t normal_pages;		/* pages sent (or received) with data */
	uint64_t zero_pages;		/* pages sent (or received) as zero */
	uint64_t packets;		/* all channels */
	unsigned channels;		/* data channels */
	struct mfd_channel_stats chan[MFD_MAX_CHANNELS + 1];	/* [0] main, [1..] data */
	bool verified;			/* MFD_OPT_VERIFY was on and the digests matched */
	uint64_t digest;		/* combined digest of all blocks when verify is on */
	/* Live migration (like QEMU's query-migrate): */
	uint64_t rounds;		/* precopy passes started (the first full pass is 1) */
	uint64_t dirty_sync_count;	/* dirty bitmap syncs */
	uint64_t remaining_bytes;	/* dirty bytes still to send, as of the last sync */
	uint64_t dirty_rate_bps;	/* bytes dirtied per second in the last round */
	uint64_t bandwidth_bps;		/* bytes sent per second in the last round */
	double mbps;			/* bandwidth_bps in megabits per second */
	uint64_t expected_downtime_ms;	/* downtime if the switchover happened now */
	uint64_t downtime_ms;		/* actual: from stop() to the destination's commit */
	uint64_t eta_ms;		/* estimated time to completion (0 when unknown) */
	unsigned throttle_pct;		/* current throttle */
	unsigned throttle_pct_max;	/* highest throttle asked for */
	uint64_t device_bytes;		/* device state sent (or received) */
	/* Snapshots: */
	uint64_t file_bytes;		/* size of the snapshot file */
	uint64_t ready_ms;		/* restore: from run start until memory and devices were
					 * usable (lazy: mapped; eager: read) */
	uint64_t rejected_connections;	/* destination: connections refused and closed while it
					 * waited (no hello in time, not a hello we take, another
					 * session's): strangers, or a source we cannot serve */
	/* Since 0.2: the current round (a precopy pass, or the only one), for a percentage. */
	uint64_t round_bytes;		/* memory the round covers: all of it for the first pass,
					 * the dirty set found by the sync before it after that */
	uint64_t round_done_bytes;	/* of those, bytes already sent or saved (zero pages count) */
	double cpu_s;			/* CPU time of the session's own threads (workers, the
					 * run thread, the main-channel reader), this side only */
	double cpu_s_per_gib;		/* cpu_s per GiB of registered memory */
};

enum mfd_status {
	MFD_STATUS_NONE = 0,
	MFD_STATUS_SETUP,
	MFD_STATUS_ACTIVE,
	MFD_STATUS_SWITCHOVER,		/* guest stopped, last pages and device state moving */
	MFD_STATUS_COMPLETED,
	MFD_STATUS_FAILED,
	MFD_STATUS_CANCELLED,
};

/* The name of a status as the JSON and the command print it: "none", "setup", "active",
 * "switchover", "completed", "failed", "cancelled"; "unknown" for any other value.  Static
 * string; any thread. */
MFD_API const char *mfd_status_name(int status);

/* A snapshot of the statistics into st (st_size bytes of it; see the top of this header).  Any
 * thread, at any time, also while the session runs. */
MFD_API void mfd_session_get_stats_sized(struct mfd_session *s, struct mfd_stats *st,
					 size_t st_size);
#define mfd_session_get_stats(s, st) \
	mfd_session_get_stats_sized((s), (st), sizeof(struct mfd_stats))

/* The version of the JSON that mfd_stats_json writes (its "schema" member), and the command's
 * JSON too (docs/json.md): it changes when a member is removed or changes meaning, not when
 * one is added. */
#define MFD_JSON_SCHEMA 1

/* The stats as one JSON object (no trailing newline), documented member by member in
 * docs/json.md.  Returns the length that the full object needs (like snprintf); the output is
 * truncated but NUL-terminated when len is too small (4096 bytes hold any object with up to 32
 * channels).  Any thread. */
MFD_API int mfd_stats_json_sized(const struct mfd_stats *st, size_t st_size, char *buf,
				 size_t len);
#define mfd_stats_json(st, buf, len) \
	mfd_stats_json_sized((st), sizeof(struct mfd_stats), (buf), (len))

/* ---- mapped-ram snapshots ------------------------------------------------------------------ */
/*
 * A snapshot file holds every registered RAM block at a fixed offset (page i of a block at
 * pages_offset + i * page_size), a little-endian bitmap of the pages present, the device states
 * and a trailer written last (docs/format.md, "mapped-ram file format").  Pages that are zero are
 * never written: they stay holes, so the file is at most the RAM size plus a little metadata.
 *
 * Save, with the guest stopped or running:
 *
 *     struct mfd_session *s = mfd_session_new(MFD_SAVE);
 *     mfd_session_set(s, MFD_OPT_CHANNELS, 4);                // workers, one file channel each
 *     mfd_ram_block_add(s, "ram0", host, len, 4096, 0);
 *     mfd_device_add(s, "cpu", 0, 1, &cpu_ops, vcpu);          // optional
 *     mfd_session_track_kvm(s, vm_fd, slots, n);               // live: any tracker, or none
 *     mfd_session_set_callbacks(s, &cb);                       // live: stop/resume/throttle
 *     mfd_session_open_file(s, "/var/snap/vm.snap", &err);
 *     mfd_session_run(s, &err);
 *
 * Without a tracker the memory must not change during the run (a stopped guest).  With one, the
 * save runs rounds as a live migration does (convergence, throttling, deadline, bandwidth cap):
 * pages written again are rewritten in place, a page that became zero is punched out, and the
 * last pass runs after cb.stop(), followed by the device states.  On success the guest is left
 * stopped, as after a migration: the embedder resumes it if it wants to keep running.  On
 * failure or cancel the guest is resumed (if it was stopped), tracking stops, and PATH is left as
 * it was: the save writes a temporary file beside it ("PATH.multifd-tmp.XXXXXX", locked while the
 * save runs; one a killed save left behind is removed by the next save to PATH) and renames it
 * over PATH only once everything is durable (pages, fdatasync, metadata, fdatasync, trailer,
 * fsync, rename, fsync of the directory).  A snapshot lazily restored from PATH can therefore be saved to PATH again.
 *
 * Restore, into memory the embedder allocated with the sizes the file records (read them with
 * mfd_snapshot_inspect):
 *
 *     struct mfd_session *s = mfd_session_new(MFD_RESTORE);
 *     mfd_ram_block_add(s, "ram0", host, len, 4096, MFD_BLOCK_ZEROED);
 *     mfd_device_add(s, "cpu", 0, 1, &cpu_ops, vcpu);
 *     mfd_session_open_file(s, "/var/snap/vm.snap", &err);     // validates, matches blocks
 *     mfd_session_run(s, &err);                                 // pages, then device loads
 *
 * Eager (default): the workers read the present pages into the block memory; absent pages are
 * left alone in MFD_BLOCK_ZEROED blocks and cleared in others.  Lazy (MFD_OPT_LAZY = 1): nothing
 * is read; each block's memory [host, host + len) is REPLACED by a private mapping of the file's
 * pages area at the same address (mmap MAP_PRIVATE | MAP_FIXED), so the guest can start at once
 * and pages are read from the file when first touched (holes read as zero, writes go to private
 * copies; the file is never written).  Consequences the embedder must accept: the memory is no
 * longer anonymous (a userfaultfd registration or madvise done before is gone: do those after the
 * restore; KVM memory slots keep working), and the file must not be truncated or rewritten in
 * place while the mapping lives (a save to the same path is fine: it replaces the file by
 * rename).  The mapping is the embedder's to munmap, like the memory it replaced.  Device states
 * are loaded in both modes before mfd_session_run returns; mfd_stats.ready_ms says when the guest
 * could start.  On failure the memory holds a partial restore that the embedder discards.
 *
 * MFD_OPT_DIRECT_IO uses O_DIRECT for page data (the block memory is page aligned, and so is
 * every page in the file), and a second, buffered descriptor for the metadata.  -EINVAL from
 * mfd_session_open_file means the file system refuses O_DIRECT.  MFD_OPT_VERIFY on a save stores
 * a digest of the memory as saved; on a restore it recomputes it and fails with MFD_EVERIFY if
 * they differ (lazy: that reads every page).
 */

/* Save: create the temporary file beside path (it becomes path at the end of a successful run).
 * Restore: open path, read and validate its metadata (header, block table, bitmaps, device
 * sections, trailer; the file is not trusted), and match its block table against the registered
 * blocks: same names, lengths and page sizes (MFD_EBLOCKTABLE, MFD_EPAGESIZE), and its devices
 * against the registered devices (MFD_EDEVICE).  Register blocks and devices, choose the
 * tracker and set options first: they are fixed from here.  Returns 0 or a negative code with
 * the reason in err.  Owner. */
MFD_API int mfd_session_open_file(struct mfd_session *s, const char *path, struct mfd_error *err);

/* The same on descriptors the embedder opened (a management layer that keeps the path away
 * from the VM process, as QEMU's fdsets do).  fd: the file, open read-write for a save (it is
 * truncated and written in place: no temporary file, no rename, so give it a new file and rename
 * it yourself once the run succeeded) or readable for a restore; it carries the metadata, and the
 * page data too when direct_fd is -1.  direct_fd: the same file opened with O_DIRECT, for page
 * data (this turns MFD_OPT_DIRECT_IO on), or -1.  The session owns both descriptors from the
 * call on, whatever it returns.  Errors as mfd_session_open_file, plus -EBADF (bad descriptor or
 * access mode) and -EINVAL (not a regular file, two different files, direct_fd without O_DIRECT,
 * or MFD_OPT_DIRECT_IO set without a direct_fd).  Owner. */
MFD_API int mfd_session_open_fds(struct mfd_session *s, int fd, int direct_fd, struct mfd_error *err);

struct mfd_snapshot_block {
	char name[MFD_MAX_NAME + 1];
	uint64_t length;		/* bytes */
	uint32_t page_size;
	uint64_t pages_present;		/* pages stored in the file (the others read as zero) */
	uint64_t bitmap_offset;		/* file offsets */
	uint64_t pages_offset;
	int status;			/* 0, or the error found in this block's bitmap */
};

struct mfd_snapshot_device {
	char name[MFD_MAX_NAME + 1];
	uint32_t instance;
	uint32_t version;
	uint64_t offset;		/* of the section in the file */
	uint64_t length;		/* bytes of state */
	int status;			/* 0, or the error found in this section (checksum) */
};

/* A struct that grows (see the top of this header). */
struct mfd_snapshot_info {
	/* Filled from the first check that passes (the header) on: */
	uint32_t version;		/* file format version */
	uint64_t features;		/* feature bits (docs/format.md) */
	char uuid[37];			/* snapshot id, text form */
	uint64_t created_unix_s;	/* wall-clock time of the save */
	bool live;			/* saved while the guest ran (with a dirty tracker) */
	uint32_t rounds;		/* passes over memory (1 for a stopped save) */
	uint64_t digest;		/* memory digest, when features has the digest bit */
	bool has_digest;
	uint64_t file_bytes;		/* size the header records */
	uint64_t mem_bytes;		/* sum of block lengths */
	uint64_t pages_present;		/* all blocks */
	uint64_t device_bytes;		/* all device states */
	uint32_t nblocks, ndevices;
	struct mfd_snapshot_block *blocks;	/* nblocks entries, owned by the info */
	struct mfd_snapshot_device *devices;	/* ndevices entries, owned by the info */
	/* Checksum status of each part: 1 checked and good, 0 bad or not reached. */
	bool header_ok, trailer_ok, blocks_ok, bitmaps_ok, devices_ok, metadata_ok;
	bool page_checksums;		/* the file has a checksum for every present page */
	/* mfd_snapshot_verify only: */
	uint64_t pages_checked;		/* present pages read and checked against their checksum */
	uint64_t pages_bad;		/* of those, pages that did not match */
	bool pages_ok;			/* every page checked and good */
	bool digest_ok;			/* the pages' digest equals the saved one */
};

/* Read and check a snapshot file without trusting it: every count, length, offset and checksum
 * is validated, memory use is bounded by the block and device counts (bitmaps and device states
 * are streamed, never held).  Returns 0 when the whole file is valid; otherwise the first error
 * (err says where), with info filled as far as the checks got (a bad bitmap or device checksum
 * is recorded in that entry's status and the check goes on, so every bad part is listed), or
 * -EINVAL when info_size is below the first release's struct.  Free info with
 * mfd_snapshot_info_free, whatever the result.  Any thread (the file is only read). */
MFD_API int mfd_snapshot_inspect_sized(const char *path, struct mfd_snapshot_info *info,
				       size_t info_size, struct mfd_error *err);
#define mfd_snapshot_inspect(path, info, err) \
	mfd_snapshot_inspect_sized((path), (info), sizeof(struct mfd_snapshot_info), (err))
/* Free what inspect or verify allocated in info (blocks, devices) and empty those members.
 * NULL is fine.  Any thread (not on an info another thread uses). */
MFD_API void mfd_snapshot_info_free_sized(struct mfd_snapshot_info *info, size_t info_size);
#define mfd_snapshot_info_free(info) \
	mfd_snapshot_info_free_sized((info), sizeof(struct mfd_snapshot_info))

/* mfd_snapshot_inspect, then every present page is read and checked against its checksum (a
 * file saved with MFD_OPT_PAGE_CHECKSUMS), and the digest of all pages against the saved one (a
 * file saved with MFD_OPT_VERIFY).  Memory stays bounded (pages are streamed).  The first bad
 * page is the error (MFD_ECHECKSUM, naming its block, page and file offset); info counts them
 * all.  It only reads the file, so it may run while a guest lazily restored from it runs: the
 * background scrub a lazy restore's embedder can run to learn of a corrupt page.  Any thread. */
MFD_API int mfd_snapshot_verify_sized(const char *path, struct mfd_snapshot_info *info,
				      size_t info_size, struct mfd_error *err);
#define mfd_snapshot_verify(path, info, err) \
	mfd_snapshot_verify_sized((path), (info), sizeof(struct mfd_snapshot_info), (err))

/* ---- utilities ------------------------------------------------------------------------- */

/* 64-bit digest of a buffer (not cryptographic; used by verify modes and tools).  Any thread. */
MFD_API uint64_t mfd_digest(const void *buf, size_t len, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif /* MULTIFD_H */
