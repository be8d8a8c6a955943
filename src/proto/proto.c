/* proto — encoders and validating decoders of the v1 wire format; see proto.h and
 * docs/format.md.  Decoders never trust a length before checking it against both the bytes
 * actually present and the hard bounds. */
#include <string.h>
#include "core/err.h"
#include "proto/proto.h"

/* ---- handshake ------------------------------------------------------------------------- */

bool mfd__valid_code(int32_t code)
{
	bool errno_code = code < 0 && code > -MFD_EBASE;
	bool our_code = code < -MFD_EBASE && code > MFD_ELAST;
	return errno_code || our_code;
}

void mfd__hello_encode(uint8_t b[MFD_HELLO_LEN], const struct mfd__hello *h)
{
	memset(b, 0, MFD_HELLO_LEN);
	mfd__put32(b + 0, MFD_HELLO_MAGIC);
	mfd__put16(b + 4, h->version);
	mfd__put16(b + 6, h->min_version);
	memcpy(b + 8, h->session, MFD_UUID_LEN);
	mfd__put16(b + 24, h->channel_id);
	mfd__put16(b + 26, h->channel_count);
	mfd__put32(b + 28, h->page_size);
	mfd__put64(b + 32, h->features);
	b[40] = h->codec;
	mfd__put32(b + 44, h->batch_pages);
	mfd__put32(b + 60, mfd__crc32c(0, b, 60));
}

static bool all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

int mfd__hello_decode(const uint8_t *b, size_t len, struct mfd__hello *h, struct mfd_error *err)
{
	if (len < MFD_HELLO_LEN)
		return mfd__err_set(err, MFD_ETRUNC, -1, "handshake of %zu bytes", len);
	if (mfd__get32(b) != MFD_HELLO_MAGIC)
		return mfd__err_set(err, MFD_EMAGIC, -1, "handshake magic 0x%08x", mfd__get32(b));
	if (mfd__get32(b + 60) != mfd__crc32c(0, b, 60))
		return mfd__err_set(err, MFD_ECHECKSUM, -1, "handshake");
	h->version = mfd__get16(b + 4);
	h->min_version = mfd__get16(b + 6);
	if (h->min_version > MFD_PROTO_VERSION || h->version < MFD_PROTO_MIN_VERSION ||
	    h->min_version > h->version)
		return mfd__err_set(err, MFD_EVERSION, -1,
				    "peer speaks versions %u..%u, we speak %u..%u", h->min_version,
				    h->version, MFD_PROTO_MIN_VERSION, MFD_PROTO_VERSION);
	memcpy(h->session, b + 8, MFD_UUID_LEN);
	h->channel_id = mfd__get16(b + 24);
	h->channel_count = mfd__get16(b + 26);
	h->page_size = mfd__get32(b + 28);
	h->features = mfd__get64(b + 32);
	h->codec = b[40];
	h->batch_pages = mfd__get32(b + 44);
	if (h->channel_count < 2 || h->channel_count > MFD_MAX_CHANNELS + 1)
		return mfd__err_set(err, MFD_ECHANCOUNT, -1, "channel count %u", h->channel_count);
	if (h->channel_id >= h->channel_count)
		return mfd__err_set(err, MFD_ECHANID, -1, "channel id %u with %u channels",
				    h->channel_id, h->channel_count);
	if (!mfd__is_pow2(h->page_size) || h->page_size < MFD_MIN_PAGE_SIZE ||
	    h->page_size > MFD_MAX_PAGE_SIZE)
		return mfd__err_set(err, MFD_EPAGESIZE, h->channel_id, "page size %u", h->page_size);
	if (h->batch_pages == 0 || h->batch_pages > MFD_MAX_BATCH_PAGES)
		return mfd__err_set(err, MFD_EPAGES, h->channel_id, "batch of %u pages", h->batch_pages);
	if (h->features & ~MFD_FEAT_KNOWN)
		return mfd__err_set(err, MFD_EFEATURE, h->channel_id, "features 0x%llx",
				    (unsigned long long)(h->features & ~MFD_FEAT_KNOWN));
	if (b[41] || b[42] || b[43] || !all_zero(b + 48, 12))
		return mfd__err_set(err, MFD_EFEATURE, h->channel_id, "reserved handshake bytes set");
	return 0;
}

void mfd__accept_encode(uint8_t b[MFD_ACCEPT_LEN], const struct mfd__accept *a)
{
	memset(b, 0, MFD_ACCEPT_LEN);
	mfd__put32(b, MFD_ACCEPT_MAGIC);
	mfd__put16(b + 4, a->version);
	mfd__put32(b + 8, (uint32_t)a->status);
	mfd__put64(b + 16, a->features);
	mfd__put32(b + 28, mfd__crc32c(0, b, 28));
}

int mfd__accept_decode(const uint8_t *b, size_t len, struct mfd__accept *a, int chan,
		       struct mfd_error *err)
{
	if (len < MFD_ACCEPT_LEN)
		return mfd__err_set(err, MFD_ETRUNC, chan, "handshake reply of %zu bytes", len);
	if (mfd__get32(b) != MFD_ACCEPT_MAGIC)
		return mfd__err_set(err, MFD_EMAGIC, chan, "handshake reply magic 0x%08x", mfd__get32(b));
	if (mfd__get32(b + 28) != mfd__crc32c(0, b, 28))
		return mfd__err_set(err, MFD_ECHECKSUM, chan, "handshake reply");
	a->version = mfd__get16(b + 4);
	a->status = (int32_t)mfd__get32(b + 8);
	a->features = mfd__get64(b + 16);
	/* 0, a -errno, or one of our codes; anything else is garbage. */
	if (a->status != 0 && !mfd__valid_code(a->status))
		return mfd__err_set(err, MFD_EREJECTED, chan, "reply status %d", a->status);
	if (mfd__get16(b + 6) || mfd__get32(b + 12) || mfd__get32(b + 24))
		return mfd__err_set(err, MFD_EFEATURE, chan, "reserved reply bytes set");
	if (a->status == 0 && a->version != MFD_PROTO_VERSION)
		return mfd__err_set(err, MFD_EVERSION, chan, "peer chose version %u", a->version);
	if (a->features & ~MFD_FEAT_KNOWN)
		return mfd__err_set(err, MFD_EFEATURE, chan, "peer accepted unknown features");
	return 0;
}

/* ---- packets ------------------------------------------------------------------------------ */

static bool known_type(uint8_t t)
{
	switch (t) {
	case MFD_PKT_RAM: case MFD_PKT_SYNC: case MFD_PKT_EOS: case MFD_PKT_ZERO: case MFD_PKT_BLOCKS:
	case MFD_PKT_BLOCKS_ACK: case MFD_PKT_END: case MFD_PKT_COMMIT: case MFD_PKT_ERROR:
	case MFD_PKT_DEVICE: case MFD_PKT_PING: case MFD_PKT_DEVICES: case MFD_PKT_ROUND_ACK:
		return true;
	}
	return t >= MFD_PKT_PRIVATE_FIRST;
}

void mfd__pkt_hdr_encode(uint8_t b[MFD_PKT_HDR_LEN], const struct mfd__pkt_hdr *h, const void *meta)
{
	mfd__put32(b, MFD_PACKET_MAGIC);
	b[4] = h->type;
	b[5] = h->flags;
	mfd__put16(b + 6, 0);
	mfd__put64(b + 8, h->seq);
	mfd__put32(b + 16, h->meta_len);
	mfd__put32(b + 20, h->data_len);
	mfd__put32(b + 24, h->round);
	uint32_t crc = mfd__crc32c(0, b, 28);
	if (h->meta_len)
		crc = mfd__crc32c(crc, meta, h->meta_len);
	mfd__put32(b + 28, crc);
}

int mfd__pkt_hdr_decode(const uint8_t b[MFD_PKT_HDR_LEN], struct mfd__pkt_hdr *h, int chan,
			struct mfd_error *err)
{
	if (mfd__get32(b) != MFD_PACKET_MAGIC)
		return mfd__err_set(err, MFD_EMAGIC, chan, "packet magic 0x%08x", mfd__get32(b));
	h->type = b[4];
	h->flags = b[5];
	h->seq = mfd__get64(b + 8);
	h->meta_len = mfd__get32(b + 16);
	h->data_len = mfd__get32(b + 20);
	h->round = mfd__get32(b + 24);
	if (!known_type(h->type))
		return mfd__err_set(err, MFD_ETYPE, chan, "packet type %u", h->type);
	if (h->flags || mfd__get16(b + 6))
		return mfd__err_set(err, MFD_EFEATURE, chan, "packet flags 0x%x", h->flags);
	if (h->meta_len > MFD_PROTO_MAX_META)
		return mfd__err_set(err, MFD_ELENGTH, chan, "meta length %u over %u", h->meta_len,
				    MFD_PROTO_MAX_META);
	if (h->data_len > MFD_PROTO_MAX_DATA)
		return mfd__err_set(err, MFD_ELENGTH, chan, "data length %u over %u", h->data_len,
				    MFD_PROTO_MAX_DATA);
	if (h->type != MFD_PKT_RAM && h->type != MFD_PKT_DEVICE && h->type != MFD_PKT_DEVICES &&
	    h->type < MFD_PKT_PRIVATE_FIRST && h->data_len != 0)
		return mfd__err_set(err, MFD_ELENGTH, chan, "data length %u on packet type %u",
				    h->data_len, h->type);
	return 0;
}

int mfd__pkt_check(const uint8_t hdr[MFD_PKT_HDR_LEN], const void *meta, uint32_t meta_len,
		   int chan, struct mfd_error *err)
{
	uint32_t crc = mfd__crc32c(0, hdr, 28);
	if (meta_len)
		crc = mfd__crc32c(crc, meta, meta_len);
	if (crc != mfd__get32(hdr + 28))
		return mfd__err_set(err, MFD_ECHECKSUM, chan, "packet header");
	return 0;
}

/* ---- main-channel records ----------------------------------------------------------------- */

uint32_t mfd__blocks_encode(uint8_t *m, const struct mfd__block_desc *b, uint32_t n)
{
	uint32_t p = 8;
	mfd__put32(m, n);
	mfd__put32(m + 4, 0);
	for (uint32_t i = 0; i < n; i++) {
		uint16_t nl = (uint16_t)strlen(b[i].name);
		mfd__put16(m + p, nl);
		memcpy(m + p + 2, b[i].name, nl);
		p += 2 + nl;
		mfd__put32(m + p, b[i].page_size);
		mfd__put64(m + p + 4, b[i].length);
		p += 12;
	}
	return p;
}

int mfd__blocks_decode(const uint8_t *m, uint32_t len, struct mfd__block_desc *b, uint32_t *n,
		       struct mfd_error *err)
{
	if (len < 8)
		return mfd__err_set(err, MFD_ELENGTH, 0, "block table of %u bytes", len);
	uint32_t count = mfd__get32(m);
	if (count == 0 || count > MFD_MAX_BLOCKS)
		return mfd__err_set(err, MFD_EBLOCKTABLE, 0, "%u blocks (1..%u allowed)", count,
				    MFD_MAX_BLOCKS);
	if (mfd__get32(m + 4))
		return mfd__err_set(err, MFD_EFEATURE, 0, "reserved block table bytes set");
	uint32_t p = 8;
	for (uint32_t i = 0; i < count; i++) {
		if (len - p < 2)
			return mfd__err_set(err, MFD_ELENGTH, 0, "block table ends in entry %u", i);
		uint16_t nl = mfd__get16(m + p);
		if (nl == 0 || nl > MFD_MAX_NAME)
			return mfd__err_set(err, MFD_ELENGTH, 0, "block %u name of %u bytes", i, nl);
		if (len - p - 2 < (uint32_t)nl + 12)
			return mfd__err_set(err, MFD_ELENGTH, 0, "block table ends in entry %u", i);
		memcpy(b[i].name, m + p + 2, nl);
		b[i].name[nl] = '\0';
		if (memchr(b[i].name, '\0', nl))
			return mfd__err_set(err, MFD_EBLOCKTABLE, 0, "block %u name has a NUL byte", i);
		p += 2 + nl;
		b[i].page_size = mfd__get32(m + p);
		b[i].length = mfd__get64(m + p + 4);
		p += 12;
		if (!mfd__is_pow2(b[i].page_size) || b[i].page_size < MFD_MIN_PAGE_SIZE ||
		    b[i].page_size > MFD_MAX_PAGE_SIZE)
			return mfd__err_set(err, MFD_EPAGESIZE, 0, "block '%s' page size %u",
					    b[i].name, b[i].page_size);
		if (b[i].length == 0 || b[i].length % b[i].page_size)
			return mfd__err_set(err, MFD_ELENGTH, 0, "block '%s' length %llu", b[i].name,
					    (unsigned long long)b[i].length);
		for (uint32_t k = 0; k < i; k++)
			if (!strcmp(b[k].name, b[i].name))
				return mfd__err_set(err, MFD_EBLOCKTABLE, 0, "block '%s' listed twice",
						    b[i].name);
	}
	if (p != len)
		return mfd__err_set(err, MFD_ELENGTH, 0, "block table has %u trailing bytes", len - p);
	*n = count;
	return 0;
}

void mfd__status_encode(uint8_t m[MFD_STATUS_REC_LEN], const struct mfd__status_rec *r)
{
	mfd__put32(m, (uint32_t)r->status);
	mfd__put32(m + 4, r->flags);
	mfd__put64(m + 8, r->digest);
}

int mfd__status_decode(const uint8_t *m, uint32_t len, struct mfd__status_rec *r, int chan,
		       struct mfd_error *err)
{
	if (len != MFD_STATUS_REC_LEN)
		return mfd__err_set(err, MFD_ELENGTH, chan, "status record of %u bytes", len);
	r->status = (int32_t)mfd__get32(m);
	r->flags = mfd__get32(m + 4);
	r->digest = mfd__get64(m + 8);
	if (r->status != 0 && !mfd__valid_code(r->status))
		return mfd__err_set(err, MFD_EREJECTED, chan, "status %d", r->status);
	if (r->flags)
		return mfd__err_set(err, MFD_EFEATURE, chan, "status record flags 0x%x", r->flags);
	return 0;
}

void mfd__round_ack_encode(uint8_t m[MFD_ROUND_ACK_LEN], uint32_t round)
{
	mfd__put32(m, round);
	mfd__put32(m + 4, 0);
}

int mfd__round_ack_decode(const uint8_t *m, uint32_t len, uint32_t *round, struct mfd_error *err)
{
	if (len != MFD_ROUND_ACK_LEN)
		return mfd__err_set(err, MFD_ELENGTH, 0, "round acknowledgement of %u bytes", len);
	if (mfd__get32(m + 4))
		return mfd__err_set(err, MFD_EFEATURE, 0, "round acknowledgement reserved bytes 0x%x",
				    mfd__get32(m + 4));
	*round = mfd__get32(m);
	return 0;
}

void mfd__end_encode(uint8_t m[MFD_END_REC_LEN], const struct mfd__end_rec *r)
{
	mfd__put64(m, r->normal_pages);
	mfd__put64(m + 8, r->zero_pages);
	mfd__put64(m + 16, r->digest);
	mfd__put32(m + 24, r->flags);
	mfd__put32(m + 28, r->rounds);
}

int mfd__end_decode(const uint8_t *m, uint32_t len, struct mfd__end_rec *r, struct mfd_error *err)
{
	if (len != MFD_END_REC_LEN)
		return mfd__err_set(err, MFD_ELENGTH, 0, "end record of %u bytes", len);
	r->normal_pages = mfd__get64(m);
	r->zero_pages = mfd__get64(m + 8);
	r->digest = mfd__get64(m + 16);
	r->flags = mfd__get32(m + 24);
	r->rounds = mfd__get32(m + 28);
	if (r->flags & ~(uint32_t)MFD_FEAT_KNOWN)
		return mfd__err_set(err, MFD_EFEATURE, 0, "end record flags 0x%x", r->flags);
	return 0;
}

uint32_t mfd__device_meta_encode(uint8_t *m, const struct mfd__device_id *d)
{
	uint16_t nl = (uint16_t)strlen(d->name);
	mfd__put16(m, nl);
	memcpy(m + 2, d->name, nl);
	mfd__put32(m + 2 + nl, d->instance);
	mfd__put32(m + 6 + nl, d->version);
	return 10u + nl;
}

int mfd__device_meta_decode(const uint8_t *m, uint32_t len, struct mfd__device_id *d,
			    struct mfd_error *err)
{
	if (len < 2)
		return mfd__err_set(err, MFD_ELENGTH, 0, "device record of %u bytes", len);
	uint16_t nl = mfd__get16(m);
	if (nl == 0 || nl > MFD_MAX_NAME || len != 10u + nl)
		return mfd__err_set(err, MFD_ELENGTH, 0, "device record of %u bytes, name of %u", len, nl);
	memcpy(d->name, m + 2, nl);
	d->name[nl] = '\0';
	if (memchr(d->name, '\0', nl))
		return mfd__err_set(err, MFD_EDEVICE, 0, "device name has a NUL byte");
	d->instance = mfd__get32(m + 2 + nl);
	d->version = mfd__get32(m + 6 + nl);
	return 0;
}

void mfd__devices_meta_encode(uint8_t m[MFD_DEVICES_META_LEN], uint32_t count)
{
	mfd__put32(m, count);
	mfd__put32(m + 4, 0);
}

int mfd__devices_meta_decode(const uint8_t *m, uint32_t len, uint32_t data_len, uint32_t *count,
			     struct mfd_error *err)
{
	if (len != MFD_DEVICES_META_LEN)
		return mfd__err_set(err, MFD_ELENGTH, 0, "device table meta of %u bytes", len);
	if (mfd__get32(m + 4))
		return mfd__err_set(err, MFD_EFEATURE, 0, "reserved device table bytes set");
	*count = mfd__get32(m);
	if (*count > MFD_DEVICES_MAX)
		return mfd__err_set(err, MFD_ECOUNT, 0, "%u devices (at most %u)", *count,
				    MFD_DEVICES_MAX);
	/* Bounded before anything is allocated for it. */
	if ((uint64_t)data_len > (uint64_t)*count * MFD_DEVICES_ENTRY_MAX)
		return mfd__err_set(err, MFD_ELENGTH, 0, "device table of %u bytes for %u devices",
				    data_len, *count);
	return 0;
}

uint32_t mfd__devices_encode(uint8_t *data, const struct mfd__device_desc *d, uint32_t n)
{
	uint32_t p = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint16_t nl = (uint16_t)strlen(d[i].name), cl = (uint16_t)strlen(d[i].config);
		mfd__put16(data + p, nl);
		memcpy(data + p + 2, d[i].name, nl);
		p += 2 + nl;
		mfd__put32(data + p, d[i].instance);
		mfd__put32(data + p + 4, d[i].version);
		mfd__put64(data + p + 8, d[i].fixed_size);
		mfd__put16(data + p + 16, cl);
		memcpy(data + p + 18, d[i].config, cl);
		p += 18 + cl;
	}
	return p;
}

int mfd__devices_decode(const uint8_t *data, uint32_t len, uint32_t count, struct mfd__device_desc *d,
			struct mfd_error *err)
{
	uint32_t p = 0;
	for (uint32_t i = 0; i < count; i++) {
		if (len - p < 2)
			return mfd__err_set(err, MFD_ELENGTH, 0, "device table ends in entry %u", i);
		uint16_t nl = mfd__get16(data + p);
		if (nl == 0 || nl > MFD_MAX_NAME)
			return mfd__err_set(err, MFD_ELENGTH, 0, "device %u name of %u bytes", i, nl);
		if (len - p - 2 < (uint32_t)nl + 18)
			return mfd__err_set(err, MFD_ELENGTH, 0, "device table ends in entry %u", i);
		memcpy(d[i].name, data + p + 2, nl);
		d[i].name[nl] = '\0';
		if (memchr(d[i].name, '\0', nl))
			return mfd__err_set(err, MFD_EDEVICE, 0, "device %u name has a NUL byte", i);
		p += 2 + nl;
		d[i].instance = mfd__get32(data + p);
		d[i].version = mfd__get32(data + p + 4);
		d[i].fixed_size = mfd__get64(data + p + 8);
		uint16_t cl = mfd__get16(data + p + 16);
		p += 18;
		if (cl > MFD_DEVICE_CONFIG_MAX || len - p < cl)
			return mfd__err_set(err, MFD_ELENGTH, 0, "device %s.%u: configuration of %u bytes",
					    d[i].name, d[i].instance, cl);
		for (uint16_t k = 0; k < cl; k++)
			if (data[p + k] < 0x20 || data[p + k] > 0x7e)
				return mfd__err_set(err, MFD_EDEVICE, 0, "device %s.%u: configuration "
						    "not printable", d[i].name, d[i].instance);
		memcpy(d[i].config, data + p, cl);
		d[i].config[cl] = '\0';
		p += cl;
		if (d[i].fixed_size > MFD_PROTO_MAX_DATA)
			return mfd__err_set(err, MFD_ELENGTH, 0, "device %s.%u: fixed size %llu",
					    d[i].name, d[i].instance,
					    (unsigned long long)d[i].fixed_size);
		for (uint32_t k = 0; k < i; k++)
			if (d[k].instance == d[i].instance && !strcmp(d[k].name, d[i].name))
				return mfd__err_set(err, MFD_EDEVICE, 0, "device %s.%u listed twice",
						    d[i].name, d[i].instance);
	}
	if (p != len)
		return mfd__err_set(err, MFD_ELENGTH, 0, "device table has %u trailing bytes", len - p);
	return 0;
}

uint32_t mfd__errrec_encode(uint8_t *m, int code, const char *msg)
{
	size_t n = strnlen(msg, MFD_ERROR_MSG_MAX - 1);
	mfd__put32(m, (uint32_t)code);
	mfd__put32(m + 4, (uint32_t)n);
	memcpy(m + 8, msg, n);
	return 8 + (uint32_t)n;
}

int mfd__errrec_decode(const uint8_t *m, uint32_t len, int *code, char *msg, size_t msgcap,
		       int chan, struct mfd_error *err)
{
	if (len < 8)
		return mfd__err_set(err, MFD_ELENGTH, chan, "error record of %u bytes", len);
	uint32_t n = mfd__get32(m + 4);
	if (n > MFD_ERROR_MSG_MAX - 1 || len != 8 + n)
		return mfd__err_set(err, MFD_ELENGTH, chan, "error record message of %u bytes", n);
	*code = (int32_t)mfd__get32(m);
	if (!mfd__valid_code(*code))	/* never let a peer pick an arbitrary number for us */
		*code = MFD_EREJECTED;
	size_t k = n < msgcap - 1 ? n : msgcap - 1;
	for (size_t i = 0; i < k; i++)	/* keep it printable */
		msg[i] = (m[8 + i] >= 0x20 && m[8 + i] < 0x7f) ? (char)m[8 + i] : '?';
	msg[k] = '\0';
	return 0;
}
