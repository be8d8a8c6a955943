/* t_order — the destination accepts channels in any order: a hand-made source connects the main
 * and data channels in reverse order and in random orders (with the main channel last, first
 * or in the middle), runs a complete migration, and the memory must arrive intact. */
#include "fakepeer.h"
#include "pair.h"

#define NDATA 5
#define LEN (2u << 20)

/* listen NULL: a unix socket of this process */
static void one_order(const int *order, const char *listen)
{
	uint8_t *src = t_map(LEN), *dst = t_map(LEN);
	t_fill(src, LEN, 77);
	struct pair pr;	/* its source is the hand-made one below */
	pair_new(&pr);
	mfd_ram_block_add(pr.dst.s, "ram", dst, LEN, 4096, MFD_BLOCK_ZEROED);
	CHECK_CODE(pair_listen(&pr, listen ? listen : pair_unix(&pr, "t-order"), 0), 0);

	int fd[NDATA + 1];
	uint64_t seq[NDATA + 1] = { 0 };
	/* Connect and say hello in the given order. */
	for (int k = 0; k <= NDATA; k++) {
		int id = order[k];
		fd[id] = pair_dial(&pr);
		CHECK(fd[id] >= 0);
		struct mfd__hello h = fake_hello((uint16_t)id, NDATA + 1, 64);
		fake_send_hello(fd[id], &h);
		usleep(1000);	/* let the destination see this one first */
	}
	struct mfd__block_desc bd = { "ram", LEN, 4096 };
	fake_send_blocks(fd[0], &seq[0], &bd, 1);
	/* Pages spread over the data channels, in batches of 64, zero pages listed as such. */
	uint64_t pages = LEN / 4096, normal = 0, zero = 0;
	for (uint64_t p = 0, k = 0; p < pages; p += 64, k++) {
		uint64_t offs[64];
		uint32_t nn = 0, nz = 0;
		uint64_t zs[64];
		for (uint64_t i = p; i < p + 64; i++) {
			static const uint8_t zero_page[4096];
			if (!memcmp(src + i * 4096, zero_page, 4096))
				zs[nz++] = i * 4096;
			else
				offs[nn++] = i * 4096;
		}
		memcpy(offs + nn, zs, nz * 8);
		int ch = 1 + (int)(k % NDATA);
		fake_send_ram(fd[ch], &seq[ch], 0, nn, nz, offs, src);
		normal += nn;
		zero += nz;
	}
	for (int ch = NDATA; ch >= 1; ch--)
		fake_send_eos(fd[ch], &seq[ch]);
	fake_send_end(fd[0], &seq[0], normal, zero);
	pair_join(&pr);
	if (pr.dst.rc)
		fprintf(stderr, "destination: %s\n", pr.dst.err.msg);
	CHECK_CODE(pr.dst.rc, 0);
	CHECK(memcmp(src, dst, LEN) == 0);
	CHECK(zero > 0 && normal > 0);
	for (int i = 0; i <= NDATA; i++)
		close(fd[i]);
	pair_free(&pr);
	munmap(src, LEN);
	munmap(dst, LEN);
}

int main(void)
{
	int reverse[NDATA + 1], order[NDATA + 1];
	for (int i = 0; i <= NDATA; i++)
		reverse[i] = NDATA - i;
	one_order(reverse, "tcp:127.0.0.1:0");
	one_order(reverse, NULL);
	uint64_t st = 0xfeed;
	for (int round = 0; round < 6; round++) {
		for (int i = 0; i <= NDATA; i++)
			order[i] = i;
		for (int i = NDATA; i > 0; i--) {	/* Fisher-Yates */
			int j = (int)(t_rand(&st) % (uint64_t)(i + 1));
			int t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		one_order(order, round % 2 ? "tcp:127.0.0.1:0" : "tcp:[::1]:0");
	}
	return t_done("t_order");
}
