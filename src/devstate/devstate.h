/* devstate — the device handlers of a session: names, versions, save and load callbacks.
 *
 * For now every device's state travels as one DEVICE record on the main channel at switchover.
 * The destination bounds what it accepts: one state and the total of all states are limited by
 * MFD_OPT_DEVICE_MAX_BYTES, so a hostile source cannot make it allocate without bound. */
#ifndef MFD_DEVSTATE_H
#define MFD_DEVSTATE_H

#include <stddef.h>
#include <stdint.h>
#include "multifd.h"

struct mfd__device {
	char name[MFD_MAX_NAME + 1];
	uint32_t instance;
	uint32_t version;
	struct mfd_device_ops ops;
	void *opaque;
	uint64_t fixed_size;	/* 0: the state's size varies (mfd_device_describe) */
	char config[256];	/* what the state depends on; "" when undescribed */
	bool loaded;		/* incoming: state arrived */
};

struct mfd__devices {
	struct mfd__device *v;	/* set before start, then read-only (but `loaded`, run thread only) */
	uint32_t n, cap;
};

#define MFD_MAX_DEVICES 1024

int mfd__devices_add(struct mfd__devices *d, const char *name, uint32_t instance, uint32_t version,
		     const struct mfd_device_ops *ops, void *opaque, struct mfd_error *err);
struct mfd__device *mfd__devices_find(struct mfd__devices *d, const char *name, uint32_t instance);
void mfd__devices_free(struct mfd__devices *d);

/* Set what a device's state depends on and its fixed size (see mfd_device_describe). */
int mfd__devices_describe(struct mfd__devices *d, const char *name, uint32_t instance,
			  const char *config, uint64_t fixed_size);

/* Run dev's save callback into *buf (grown as needed, up to max bytes).  Returns the length. */
long mfd__device_save(const struct mfd__device *dev, uint8_t **buf, size_t *cap, size_t max,
		      struct mfd_error *err);

#endif
