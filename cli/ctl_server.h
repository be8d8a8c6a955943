/* cli/ctl_server — the control socket's server: JSON lines on a unix stream socket, every
 * client served concurrently by one thread and one poll loop, so that no client — silent, slow
 * to read, hanging up, or sending garbage — can hold up another or hurt the process.
 *
 * Each client has a bounded input buffer (one line of CTL_MAX_LINE bytes) and a bounded output
 * buffer; a client that does not read its replies stops being read until it does, so it costs
 * nothing but its slot.  A line over the bound gets an error reply and the client is closed.
 * When every slot is taken, a new client takes the slot of the one idle the longest.
 * Replies are sent without blocking and with MSG_NOSIGNAL: a client that went away is closed.
 *
 * Descriptors passed with SCM_RIGHTS belong to the request line in which the bytes that
 * carried them end (send each request and its descriptors in one sendmsg).  The handler gets
 * them with the line; those it keeps it takes out of the array (-1), the server closes the rest
 * once the handler returns.  More than CTL_MAX_FDS with one request, or descriptors the kernel
 * had to drop, and the request is refused with all its descriptors closed.
 *
 * The handler runs on the server thread, one request at a time: it must not block for long
 * (anything long runs in a thread of its own), since every client waits for it.
 *
 * Events: a handler may subscribe the client that sent the request; from then on every line
 * given to ctl_server_broadcast (from any thread) goes to it too, between its replies, in the
 * order broadcast.  A subscriber whose output buffer cannot take the next event (it stopped
 * reading) is disconnected, so it never holds events back from the others. */
#ifndef MFD_CLI_CTL_SERVER_H
#define MFD_CLI_CTL_SERVER_H

#include <stddef.h>
#include "ctl_json.h"
#include "ctl_request.h"

#define CTL_MAX_CLIENTS 16
#define CTL_MAX_REPLY 16384	/* bytes of one reply or event, newline included */
#define CTL_EVENT_QUEUE 65536	/* events broadcast but not yet handed to the clients */

/* Handle one request line (len bytes, no newline) that came with fds[0..nfds).  Write the reply
 * object (without newline) into reply; a reply cut at the bound is replaced by an error.  Set
 * *subscribe to make the client a subscriber of events (after this reply). */
typedef void (*ctl_handler_fn)(void *opaque, const char *line, size_t len, int *fds,
			       unsigned nfds, struct ctl_out *reply, bool *subscribe);

struct ctl_server;

/* Create the socket at path (a stale socket there is replaced) and start serving.  Returns 0,
 * or a negative errno with the reason in err. */
int ctl_server_start(struct ctl_server **out, const char *path, ctl_handler_fn handler,
		     void *opaque, char *err, size_t errlen);
/* Stop serving: join the thread, close every client and the socket, remove path.  Broadcasts
 * stay harmless (dropped) until the free.  Once; NULL is fine. */
void ctl_server_stop(struct ctl_server *srv);
/* Stop (if not yet) and free.  No broadcast may come during or after it.  NULL is fine. */
void ctl_server_free(struct ctl_server *srv);
/* Send a line (len bytes, no newline, at most CTL_MAX_REPLY - 1) to every subscriber.  Any
 * thread; never blocks on a client.  A line that does not fit the queue is dropped. */
void ctl_server_broadcast(struct ctl_server *srv, const char *line, size_t len);

#endif
