/*
 * mllp.h - the MLLP listener the RIS sends its HL7 v2 messages to: framing
 * (<VT> message <FS><CR>), one thread per connection, the answer of the
 * handler sent back on the same connection, in order.
 *
 * The framer is separate from the sockets so that it can be tested (and
 * fuzzed) alone: bytes go in as they are read, whole messages come out,
 * whatever the reads' boundaries.
 */
#ifndef DRIMBOX_MLLP_H
#define DRIMBOX_MLLP_H

#include <openssl/ssl.h>
#include <stddef.h>

#define MLLP_SB 0x0B /* start block */
#define MLLP_EB 0x1C /* end block, followed by a carriage return */

/* What the framer found. */
enum mllp_event {
	MLLP_NONE,     /* needs more bytes */
	MLLP_MESSAGE,  /* a whole message */
	MLLP_OVERSIZE, /* a whole frame over the limit: its start is kept */
	MLLP_CUT,      /* a frame cut short by the start of another */
};

struct mllp_framer {
	char *buf;
	size_t len, cap;
	size_t max;   /* largest message accepted */
	size_t keep;  /* bytes kept of an oversized one (for its MSH) */
	size_t total; /* bytes of the current frame so far */
	size_t stray; /* bytes seen outside any frame (ignored) */
	int in_frame, after_eb;
};

/* A framer accepting messages up to max bytes. */
void mllp_framer_init(struct mllp_framer *f, size_t max);
void mllp_framer_free(struct mllp_framer *f);

/*
 * Consumes bytes of data (up to len) until a frame ends; returns how many
 * were consumed. On an event, *msg and *msg_len hold the message (the kept
 * start of it for an oversized one; *total_len its whole size) until the
 * next call. Call again with the rest of data. Bytes outside frames are
 * ignored (counted in stray).
 * Returns (size_t)-1 when memory runs out.
 */
size_t mllp_feed(struct mllp_framer *f, const char *data, size_t len,
                 enum mllp_event *ev, const char **msg, size_t *msg_len,
                 size_t *total_len);

/* A message for the handler. */
struct mllp_msg {
	const char *data;
	size_t len;
	size_t total;        /* bytes received (more than len if oversized) */
	const char *peer;    /* "address:port" */
	const char *refusal; /* non-NULL: refused at framing, for this reason */
};

/*
 * Returns the answer (malloc'd, without framing; NULL sends nothing) to a
 * message. Called from the connection's thread; several connections call
 * it at once.
 */
typedef char *(*mllp_handler)(void *ctx, const struct mllp_msg *m,
                              size_t *answer_len);

struct mllp_config {
	const char *bind;
	int port;
	size_t max_message;
	int idle_timeout_s;  /* a silent connection is closed after this */
	int max_connections; /* more are refused (closed at once) */
	SSL_CTX *tls;        /* NULL: plain TCP; else TLS (see below) */
};

/*
 * A TLS server context (TLS 1.2 at least) from PEM files: the certificate
 * chain and its key; with ca, clients must present a certificate signed
 * by it. NULL with err on failure. The caller frees it (SSL_CTX_free)
 * after mllp_stop().
 */
SSL_CTX *mllp_tls_context(const char *cert, const char *key, const char *ca,
                          char *err, size_t errlen);

struct mllp_server;

/* Listens and serves until mllp_stop(). NULL with err on failure. */
struct mllp_server *mllp_start(const struct mllp_config *cfg,
                               mllp_handler handler, void *ctx, char *err,
                               size_t errlen);

/* The port listened on (useful when cfg->port was 0). */
int mllp_port(const struct mllp_server *s);

/* Closes the listener and every connection, waits for their threads. */
void mllp_stop(struct mllp_server *s);

#endif
