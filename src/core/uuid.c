/* core/uuid — random (version 4) session ids. */
#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include "core/util.h"

int mfd__uuid_generate(uint8_t out[MFD_UUID_LEN])
{
	size_t got = 0;
	while (got < MFD_UUID_LEN) {
		ssize_t n = getrandom(out + got, MFD_UUID_LEN - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
	out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
	return 0;
}

void mfd__uuid_format(const uint8_t id[MFD_UUID_LEN], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	char *p = out;
	for (int i = 0; i < MFD_UUID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[id[i] >> 4];
		*p++ = hex[id[i] & 15];
	}
	*p = '\0';
}
