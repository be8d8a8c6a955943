/* fuzz/fuzz_hello — the channel handshake decoders: mfd__hello_decode (64-byte hello, read by
 * the destination) and mfd__accept_decode (32-byte reply, read by the source).
 *
 * Every input goes through both decoders.  After a successful decode the target checks what
 * the decoder promises (docs/format.md, "Handshake"): every bound it enforces holds, and the
 * decoded fields re-encode to exactly the bytes that were read (so no field or reserved byte
 * that the decoder accepted was ignored).  A violation aborts: that is how the fuzzer reports
 * a validation gap rather than only memory errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/util.h"
#include "proto/proto.h"

#define FAIL(...)                                                   \
	do {                                                        \
		fprintf(stderr, "fuzz_hello: invariant: " __VA_ARGS__); \
		fprintf(stderr, "\n");                              \
		abort();                                            \
	} while (0)

static void check_err(const struct mfd_error *e, int rc)
{
	if (rc >= 0)
		FAIL("decoder returned %d", rc);
	if (e->code != rc)
		FAIL("error record code %d, returned %d", e->code, rc);
	if (!memchr(e->msg, '\0', sizeof(e->msg)) || !e->msg[0])
		FAIL("error message missing or not terminated");
}

static void hello(const uint8_t *data, size_t size)
{
	struct mfd__hello h;
	struct mfd_error e;
	mfd_error_clear(&e);
	memset(&h, 0xa5, sizeof(h));
	int rc = mfd__hello_decode(data, size, &h, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	if (size < MFD_HELLO_LEN)
		FAIL("hello accepted from %zu bytes", size);
	if (h.min_version > h.version || h.min_version > MFD_PROTO_VERSION ||
	    h.version < MFD_PROTO_MIN_VERSION)
		FAIL("hello versions %u..%u accepted", h.min_version, h.version);
	if (h.channel_count < 2 || h.channel_count > MFD_MAX_CHANNELS + 1)
		FAIL("channel count %u", h.channel_count);
	if (h.channel_id >= h.channel_count)
		FAIL("channel id %u of %u", h.channel_id, h.channel_count);
	if (!mfd__is_pow2(h.page_size) || h.page_size < MFD_MIN_PAGE_SIZE ||
	    h.page_size > MFD_MAX_PAGE_SIZE)
		FAIL("page size %u", h.page_size);
	if (h.batch_pages == 0 || h.batch_pages > MFD_MAX_BATCH_PAGES)
		FAIL("batch pages %u", h.batch_pages);
	if (h.features & ~MFD_FEAT_KNOWN)
		FAIL("unknown features 0x%llx", (unsigned long long)h.features);
	uint8_t again[MFD_HELLO_LEN];
	mfd__hello_encode(again, &h);
	if (memcmp(again, data, MFD_HELLO_LEN))
		FAIL("accepted hello does not re-encode to its own bytes");
}

/* Byte ranges of the reply that v1 defines; the rest is reserved (see docs/format.md). */
static void mask_accept_reserved(uint8_t b[MFD_ACCEPT_LEN])
{
	memset(b + 6, 0, 2);
	memset(b + 12, 0, 4);
	memset(b + 24, 0, 4);
}

static void accept_reply(const uint8_t *data, size_t size)
{
	struct mfd__accept a;
	struct mfd_error e;
	mfd_error_clear(&e);
	memset(&a, 0xa5, sizeof(a));
	int rc = mfd__accept_decode(data, size, &a, 3, &e);
	if (rc) {
		check_err(&e, rc);
		if (e.channel != 3)
			FAIL("reply error names channel %d, not 3", e.channel);
		return;
	}
	if (size < MFD_ACCEPT_LEN)
		FAIL("reply accepted from %zu bytes", size);
	if (a.status > 0)
		FAIL("positive reply status %d", a.status);
	if (a.status == 0 && a.version != MFD_PROTO_VERSION)
		FAIL("reply chose version %u", a.version);
	if (a.status < 0 && !(a.status > -MFD_EBASE && a.status > -4096) &&
	    !(a.status < -MFD_EBASE && a.status > MFD_ELAST))
		FAIL("reply status %d is neither -errno nor an MFD_E code", a.status);
	if (a.features & ~MFD_FEAT_KNOWN)
		FAIL("reply features 0x%llx", (unsigned long long)a.features);
	/* v1's accept decoder does not insist that reserved bytes are zero (docs/format.md notes
	 * it); compare everything else. */
	uint8_t again[MFD_ACCEPT_LEN], in[MFD_ACCEPT_LEN];
	mfd__accept_encode(again, &a);
	memcpy(in, data, MFD_ACCEPT_LEN);
	mask_accept_reserved(in);
	if (memcmp(again, in, 28))
		FAIL("accepted reply does not re-encode to its own bytes");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	hello(data, size);
	accept_reply(data, size);
	return 0;
}
