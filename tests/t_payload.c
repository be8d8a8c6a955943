/* t_payload — the payload table is a real seam: this test registers a payload type of its own,
 * opaque buffers ("blobs") in a private-use packet type, on both sides of a migration, without
 * any change under src/migrate/.  The source's blobs are planned, sent by the workers over the
 * data channels beside the RAM pages, and received into the destination's table; they must
 * arrive whole, each once, spread over the channels.  A destination that refuses a blob makes
 * the migration fail with its reason on both sides, and the blobs still queued on the source are
 * dropped and released (ASan's leak check sees any that is not).  A blob type the destination
 * does not know is refused as an unknown packet type. */
#include "migrate/session.h"
#include "pair.h"

#define BLOB_TYPE MFD_PKT_PRIVATE_FIRST
#define NBLOBS 64
#define BLOB_MAX (64u << 10)

/* What a blob job carries: an owned buffer (freed by send, or by drop). */
struct blob_job {
	uint8_t *buf;
	uint32_t len;
	uint32_t id;
};

struct blobs {
	pthread_mutex_t lock;		/* destination: protects got[], len[], by_chan[] */
	uint8_t *got[NBLOBS];
	uint32_t len[NBLOBS];
	unsigned by_chan[MFD_MAX_CHANNELS + 1];
	unsigned refuse_id;		/* destination: refuse the blob with this id (0: none) */
	unsigned created, sent, dropped, freed;	/* source: atomic */
};

static uint32_t blob_len(uint32_t id)
{
	return 1 + (id * 7919u) % BLOB_MAX;
}

static uint8_t blob_byte(uint32_t id, uint32_t i)
{
	return (uint8_t)(id * 31u + i * 7u + (i >> 8));
}

static int blob_send(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	struct blobs *b = p->ctx;
	struct blob_job bj;
	memcpy(&bj, j->args, sizeof(bj));
	uint8_t meta[8];
	mfd__put32(meta, bj.id);
	mfd__put32(meta + 4, bj.len);
	int rc = mfd__frame_send_buf(w->chan, &w->seq, BLOB_TYPE, j->round, meta, sizeof(meta), bj.buf,
				     bj.len);
	free(bj.buf);	/* the job owned it */
	__atomic_fetch_add(&b->freed, 1, __ATOMIC_RELAXED);
	if (rc)
		mfd__errbox_set(w->errbox, rc, w->chan_id, "sending blob %u", bj.id);
	else
		__atomic_fetch_add(&b->sent, 1, __ATOMIC_RELAXED);
	return rc;
}

static void blob_drop(const struct mfd__payload *p, const struct mfd__job *j)
{
	struct blobs *b = p->ctx;
	struct blob_job bj;
	memcpy(&bj, j->args, sizeof(bj));
	free(bj.buf);
	__atomic_fetch_add(&b->dropped, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&b->freed, 1, __ATOMIC_RELAXED);
}

/* Round 0 (the only round without a tracker): queue every blob. */
static int blob_plan(const struct mfd__payload *p, const struct mfd__plan *plan)
{
	struct blobs *b = p->ctx;
	if (plan->round != 0)
		return 0;
	struct mfd__job j = { .payload = p->index, .verb = plan->verb, .round = plan->round };
	for (uint32_t id = 0; id < NBLOBS; id++) {
		struct blob_job bj = { .buf = malloc(blob_len(id)), .len = blob_len(id), .id = id };
		if (!bj.buf)
			return -ENOMEM;
		for (uint32_t i = 0; i < bj.len; i++)
			bj.buf[i] = blob_byte(id, i);
		memcpy(j.args, &bj, sizeof(bj));
		int rc = mfd__pool_submit(plan->pool, &j);
		if (rc) {
			free(bj.buf);	/* never queued: still ours */
			return rc;
		}
		__atomic_fetch_add(&b->created, 1, __ATOMIC_RELAXED);
	}
	return 0;
}

static int blob_recv(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__pkt_hdr *h,
		     const uint8_t *meta)
{
	struct blobs *b = p->ctx;
	if (h->meta_len != 8) {
		mfd__errbox_set(w->errbox, MFD_ELENGTH, w->chan_id, "blob meta of %u bytes", h->meta_len);
		return MFD_ELENGTH;
	}
	uint32_t id = mfd__get32(meta), len = mfd__get32(meta + 4);
	/* Every field checked before use: the sender is not trusted. */
	if (id >= NBLOBS || len != h->data_len || len > BLOB_MAX) {
		mfd__errbox_set(w->errbox, MFD_ELENGTH, w->chan_id, "blob %u of %u bytes", id, len);
		return MFD_ELENGTH;
	}
	if (b->refuse_id && id == b->refuse_id) {
		mfd__errbox_set(w->errbox, MFD_EREJECTED, w->chan_id, "blob %u refused on purpose", id);
		return MFD_EREJECTED;
	}
	uint8_t *buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	struct iovec v = { buf, len };
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc = mfd__frame_read_data(w->chan, &v, 1, "a blob", &e);
	if (rc) {
		free(buf);
		mfd__errbox_setv(w->errbox, &e);
		return rc;
	}
	pthread_mutex_lock(&b->lock);
	bool twice = b->got[id] != NULL;
	if (!twice) {
		b->got[id] = buf;
		b->len[id] = len;
		b->by_chan[w->chan_id]++;
	}
	pthread_mutex_unlock(&b->lock);
	if (twice) {
		free(buf);
		mfd__errbox_set(w->errbox, MFD_EDEVICE, w->chan_id, "blob %u arrived twice", id);
		return MFD_EDEVICE;
	}
	return 0;
}

static const struct mfd__payload_ops blob_ops = {
	.name = "blob",
	.pkt_type = BLOB_TYPE,
	.job = { [MFD_JOB_SEND] = blob_send },
	.recv = blob_recv,
	.plan = blob_plan,
	.drop = blob_drop,
};

#define RAM_LEN (8u << 20)

struct run {
	struct blobs src, dst;
	struct pair p;
	uint8_t *sm, *dm;
};

/* Source hook: data-channel writes take 2 ms, so the planner keeps the queues full and a
 * failure finds jobs still queued (which must be dropped, their buffers released). */
static int slow_writes(void *ctx, int chan, bool writing, size_t len)
{
	(void)ctx, (void)len;
	if (writing && chan > 0)
		usleep(2000);
	return 0;
}

static void run_pair(struct run *r, bool dst_knows, unsigned refuse_id, unsigned channels)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->dst.lock, NULL);
	r->dst.refuse_id = refuse_id;
	struct mfd__test_knobs slow = { .hook = slow_writes };
	r->sm = t_map(RAM_LEN);
	r->dm = t_map(RAM_LEN);
	t_fill(r->sm, RAM_LEN, 77);
	pair_new(&r->p);
	mfd_session_set(r->p.src.s, MFD_OPT_CHANNELS, channels);
	mfd_session_set(r->p.src.s, MFD_OPT_BATCH_PAGES, 64);
	mfd_session_set(r->p.src.s, MFD_OPT_VERIFY, 1);
	mfd_session_set(r->p.src.s, MFD_OPT_QUEUE_DEPTH, 2);	/* blobs queue behind each other */
	CHECK_EQ(mfd_ram_block_add(r->p.src.s, "ram", r->sm, RAM_LEN, 4096, 0), 0);
	CHECK_EQ(mfd_ram_block_add(r->p.dst.s, "ram", r->dm, RAM_LEN, 4096, MFD_BLOCK_ZEROED), 0);
	/* The payload table: a test-only entry on each side, through the session's own API. */
	CHECK(mfd__session_add_payload(r->p.src.s, &blob_ops, &r->src) >= 0);
	if (refuse_id)
		mfd__session_set_test_knobs(r->p.src.s, &slow);
	if (dst_knows)
		CHECK(mfd__session_add_payload(r->p.dst.s, &blob_ops, &r->dst) >= 0);
	CHECK_CODE(pair_listen(&r->p, NULL, channels), 0);
	pair_run(&r->p);
}

static void run_free(struct run *r)
{
	pair_free(&r->p);
	for (unsigned i = 0; i < NBLOBS; i++)
		free(r->dst.got[i]);
	pthread_mutex_destroy(&r->dst.lock);
	munmap(r->sm, RAM_LEN);
	munmap(r->dm, RAM_LEN);
}

static void blobs_travel(void)
{
	struct run r;
	run_pair(&r, true, 0, 4);
	if (r.p.src.rc || r.p.dst.rc)
		pair_print(&r.p, "blobs");
	CHECK_CODE(r.p.src.rc, 0);
	CHECK_CODE(r.p.dst.rc, 0);
	CHECK(memcmp(r.sm, r.dm, RAM_LEN) == 0);	/* the RAM beside them */
	CHECK_EQ(r.src.sent, NBLOBS);
	CHECK_EQ(r.src.dropped, 0);
	CHECK_EQ(r.src.freed, NBLOBS);
	unsigned chans_used = 0, total = 0;
	for (unsigned id = 0; id < NBLOBS; id++) {
		CHECK(r.dst.got[id] != NULL);
		if (!r.dst.got[id])
			continue;
		CHECK_EQ(r.dst.len[id], blob_len(id));
		bool same = true;
		for (uint32_t i = 0; i < r.dst.len[id]; i++)
			same &= r.dst.got[id][i] == blob_byte(id, i);
		CHECK(same);
	}
	for (unsigned c = 0; c <= MFD_MAX_CHANNELS; c++) {
		chans_used += r.dst.by_chan[c] != 0;
		total += r.dst.by_chan[c];
	}
	CHECK_EQ(r.dst.by_chan[0], 0);	/* data channels only */
	CHECK_EQ(total, NBLOBS);
	CHECK(chans_used >= 2);		/* the pool spread them */
	fprintf(stderr, "blobs: %u over %u channels\n", total, chans_used);
	run_free(&r);
}

static void blob_refused(void)
{
	struct run r;
	run_pair(&r, true, 5, 1);	/* one channel: blobs after #5 are still queued */
	CHECK_CODE(r.p.src.rc, MFD_EREJECTED);
	CHECK_CODE(r.p.dst.rc, MFD_EREJECTED);
	CHECK(strstr(r.p.src.err.msg, "refused on purpose") != NULL);	/* the reason travelled */
	CHECK(strstr(r.p.dst.err.msg, "refused on purpose") != NULL);
	/* Every blob queued was released once, by its send or by the drop: none leaked. */
	CHECK_EQ(r.src.freed, r.src.created);
	CHECK(r.src.sent < r.src.created);
	CHECK(r.src.dropped > 0);
	fprintf(stderr, "refused: %s; created %u, sent %u, dropped %u\n", r.p.src.err.msg,
		r.src.created, r.src.sent, r.src.dropped);
	run_free(&r);
}

static void blob_unknown_to_destination(void)
{
	struct run r;
	run_pair(&r, false, 0, 2);
	CHECK_CODE(r.p.dst.rc, MFD_ETYPE);
	CHECK_CODE(r.p.src.rc, MFD_ETYPE);
	CHECK(strstr(r.p.dst.err.msg, "packet type 240") != NULL);
	run_free(&r);
}

int main(void)
{
	blobs_travel();
	blob_refused();
	blob_unknown_to_destination();
	return t_done("t_payload");
}
