/*
 * mllp.c - see mllp.h. An accept thread and one thread per connection;
 * every thread also polls a pipe that mllp_stop() writes to, so that
 * stopping never waits for a client.
 */
#include "mllp.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define KEEP_OF_OVERSIZE (64 * 1024)

/* ---- framing --------------------------------------------------------- */

void mllp_framer_init(struct mllp_framer *f, size_t max)
{
	memset(f, 0, sizeof(*f));
	f->max = max;
	f->keep = max < KEEP_OF_OVERSIZE ? max : KEEP_OF_OVERSIZE;
}

void mllp_framer_free(struct mllp_framer *f)
{
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

static int append(struct mllp_framer *f, const char *p, size_t n)
{
	if (f->len + n > f->cap) {
		size_t cap = f->cap ? f->cap : 4096;
		char *b;

		while (cap < f->len + n)
			cap *= 2;
		b = realloc(f->buf, cap);
		if (b == NULL)
			return -1;
		f->buf = b;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, p, n);
	f->len += n;
	return 0;
}

size_t mllp_feed(struct mllp_framer *f, const char *data, size_t len,
                 enum mllp_event *ev, const char **msg, size_t *msg_len,
                 size_t *total_len)
{
	size_t i = 0;

	*ev = MLLP_NONE;
	while (i < len) {
		const char *end;
		size_t run;

		if (f->after_eb) { /* the <CR> after <FS>, if it came */
			f->after_eb = 0;
			if (data[i] == '\r')
				i++;
			continue;
		}
		if (!f->in_frame) {
			if (data[i] == MLLP_SB) {
				f->in_frame = 1;
				f->len = f->total = 0;
			} else if (data[i] != '\r' && data[i] != '\n') {
				f->stray++;
			}
			i++;
			continue;
		}
		/* inside a frame: take the run up to the next control byte */
		end = data + i;
		while (end < data + len && *end != MLLP_EB && *end != MLLP_SB)
			end++;
		run = (size_t)(end - (data + i));
		if (run > 0) {
			size_t take = run;

			if (f->total + run >
			    f->max) { /* oversized: its start */
				if (f->len > f->keep)
					f->len = f->keep;
				take = f->keep - f->len < run ? f->keep - f->len
				                              : run;
			}
			if (take > 0 && append(f, data + i, take) != 0)
				return (size_t)-1;
			f->total += run;
			i += run;
			continue;
		}
		/* <FS> ends the frame; a <VT> inside one starts a new frame
		 * and the one before, cut short, is reported as such */
		if (data[i] == MLLP_EB) {
			f->in_frame = 0;
			f->after_eb = 1;
			*ev = f->total > f->max ? MLLP_OVERSIZE : MLLP_MESSAGE;
		} else {
			*ev = MLLP_CUT;
		}
		i++;
		*msg = f->buf ? f->buf : "";
		*msg_len = f->len;
		*total_len = f->total;
		f->len = f->total =
		        0; /* the buffer is reused from the next call */
		return i;
	}
	return i;
}

/* ---- server ---------------------------------------------------------- */

struct mllp_server {
	struct mllp_config cfg;
	mllp_handler handler;
	void *ctx;
	int listen_fd, port;
	int wake[2]; /* written once by mllp_stop: every poll wakes up */
	pthread_t acceptor;
	pthread_mutex_t lock;
	pthread_cond_t gone; /* a connection thread ended */
	int connections;     /* guarded by lock */
};

struct conn {
	struct mllp_server *s;
	int fd;
	SSL *ssl; /* NULL: plain TCP */
	char peer[64];
};

static int write_all(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k =
		        c->ssl ? SSL_write(c->ssl, p,
		                           (int)(n > INT32_MAX ? INT32_MAX : n))
		               : send(c->fd, p, n, MSG_NOSIGNAL);

		if (k < 0 && c->ssl == NULL && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Reads what is there; as recv() (-1 with errno EINTR to retry). */
static ssize_t read_some(struct conn *c, char *buf, size_t cap)
{
	int n, e;

	if (c->ssl == NULL)
		return recv(c->fd, buf, cap, 0);
	n = SSL_read(c->ssl, buf, (int)cap);
	if (n > 0)
		return n;
	e = SSL_get_error(c->ssl, n);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		errno = EINTR; /* a TLS record not complete yet: poll again */
		return -1;
	}
	return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

/*
 * The TLS handshake, bounded by the idle timeout; 0, or -1 (logged: a
 * client without an acceptable certificate, or speaking plain MLLP).
 */
static int handshake(struct conn *c, SSL_CTX *tls, int timeout_s)
{
	struct timeval tv = { timeout_s, 0 }, none = { 0, 0 };
	unsigned long e;
	char why[256];

	c->ssl = SSL_new(tls);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		goto fail;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (SSL_accept(c->ssl) != 1)
		goto fail;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
	return 0;
fail:
	e = ERR_get_error();
	ERR_error_string_n(e, why, sizeof(why));
	log_warn(LOGC_HL7, "TLS handshake with %s failed: %s", c->peer,
	         e ? why : "connection closed or timed out");
	ERR_clear_error();
	return -1;
}

/* Hands a message to the handler; sends its answer, framed. */
static int answer(struct conn *c, const char *data, size_t len, size_t total,
                  const char *refusal)
{
	struct mllp_msg m = { data, len, total, c->peer, refusal };
	size_t n = 0;
	char *ack = c->s->handler(c->s->ctx, &m, &n), *framed;
	int rc = 0;

	if (ack == NULL)
		return 0;
	framed = malloc(n + 3);
	if (framed == NULL) {
		free(ack);
		return -1;
	}
	framed[0] = MLLP_SB;
	memcpy(framed + 1, ack, n);
	framed[n + 1] = MLLP_EB;
	framed[n + 2] = '\r';
	if (write_all(c, framed, n + 3) != 0) {
		log_warn(LOGC_HL7, "peer=%s: the answer could not be sent: %s",
		         c->peer, strerror(errno));
		rc = -1;
	}
	free(framed);
	free(ack);
	return rc;
}

static int on_event(struct conn *c, enum mllp_event ev, const char *msg,
                    size_t len, size_t total)
{
	char why[128];

	switch (ev) {
	case MLLP_MESSAGE:
		return answer(c, msg, len, total, NULL);
	case MLLP_OVERSIZE:
		snprintf(why, sizeof(why),
		         "message of %zu bytes, over the limit of %zu", total,
		         c->s->cfg.max_message);
		return answer(c, msg, len, total, why);
	case MLLP_CUT:
		return answer(c, msg, len, total,
		              "frame cut short: a new frame began before "
		              "its end");
	case MLLP_NONE:
		break;
	}
	return 0;
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct mllp_server *s = c->s;
	struct mllp_framer f;
	char buf[64 * 1024], ctx[80];

	snprintf(ctx, sizeof(ctx), "mllp=%s", c->peer);
	log_set_context(ctx);
	log_info(LOGC_HL7, "connection from %s%s", c->peer,
	         s->cfg.tls ? " (TLS)" : "");
	mllp_framer_init(&f, s->cfg.max_message);
	if (s->cfg.tls && handshake(c, s->cfg.tls, s->cfg.idle_timeout_s) != 0)
		goto out;
	for (;;) {
		struct pollfd p[2] = { { c->fd, POLLIN, 0 },
			               { s->wake[0], POLLIN, 0 } };
		/* bytes already decrypted inside OpenSSL: no poll */
		int r = c->ssl && SSL_pending(c->ssl) > 0
		                ? 1
		                : poll(p, 2, s->cfg.idle_timeout_s * 1000);
		ssize_t n;
		size_t off = 0;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || p[1].revents)
			break;
		if (r == 0) {
			if (f.in_frame && f.total > 0)
				answer(c, f.buf, f.len, f.total,
				       "incomplete frame: no end block before "
				       "the idle timeout");
			log_info(LOGC_HL7, "idle for %d s: closed",
			         s->cfg.idle_timeout_s);
			break;
		}
		n = read_some(c, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (f.in_frame && f.total > 0)
				log_warn(LOGC_HL7,
				         "connection closed in the middle of "
				         "a frame (%zu bytes): dropped",
				         f.total);
			break;
		}
		while (off < (size_t)n) {
			enum mllp_event ev;
			const char *msg = NULL;
			size_t len = 0, total = 0;
			size_t k = mllp_feed(&f, buf + off, (size_t)n - off,
			                     &ev, &msg, &len, &total);

			if (k == (size_t)-1) {
				log_error(LOGC_HL7, "out of memory");
				goto out;
			}
			off += k;
			if (on_event(c, ev, msg, len, total) != 0)
				goto out;
		}
	}
out:
	if (f.stray > 0)
		log_warn(LOGC_HL7, "%zu bytes outside MLLP frames ignored",
		         f.stray);
	mllp_framer_free(&f);
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	close(c->fd);
	free(c);
	pthread_mutex_lock(&s->lock);
	s->connections--;
	pthread_cond_broadcast(&s->gone);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void *accept_thread(void *arg)
{
	struct mllp_server *s = arg;

	log_set_context("mllp");
	for (;;) {
		struct pollfd p[2] = { { s->listen_fd, POLLIN, 0 },
			               { s->wake[0], POLLIN, 0 } };
		struct sockaddr_in sa;
		socklen_t salen = sizeof(sa);
		struct conn *c;
		pthread_attr_t attr;
		pthread_t t;
		char ip[INET_ADDRSTRLEN];
		struct timeval send_timeout = { s->cfg.idle_timeout_s, 0 };
		int fd, one = 1, full;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &salen,
		             SOCK_CLOEXEC);
		if (fd < 0) {
			/* out of descriptors or memory: the listener stays
			 * readable, so wait instead of spinning */
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				log_warn(LOGC_HL7, "accept: %s",
				         strerror(errno));
				poll(&p[1], 1, 100);
			}
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		/* a client that does not read its ACKs cannot block a thread
		 * (and the shutdown) for longer than the idle timeout */
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout,
		           sizeof(send_timeout));
		pthread_mutex_lock(&s->lock);
		full = s->connections >= s->cfg.max_connections;
		if (!full)
			s->connections++;
		pthread_mutex_unlock(&s->lock);
		inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
		if (full) {
			log_warn(LOGC_HL7,
			         "connection from %s:%d refused: %d already "
			         "open",
			         ip, ntohs(sa.sin_port),
			         s->cfg.max_connections);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c != NULL) {
			c->s = s;
			c->fd = fd;
			snprintf(c->peer, sizeof(c->peer), "%s:%d", ip,
			         ntohs(sa.sin_port));
			pthread_attr_init(&attr);
			pthread_attr_setdetachstate(&attr,
			                            PTHREAD_CREATE_DETACHED);
			if (pthread_create(&t, &attr, conn_thread, c) != 0) {
				free(c);
				c = NULL;
			}
			pthread_attr_destroy(&attr);
		}
		if (c == NULL) {
			log_error(LOGC_HL7, "no thread for %s: closed", ip);
			close(fd);
			pthread_mutex_lock(&s->lock);
			s->connections--;
			pthread_mutex_unlock(&s->lock);
		}
	}
	return NULL;
}

struct mllp_server *mllp_start(const struct mllp_config *cfg,
                               mllp_handler handler, void *ctx, char *err,
                               size_t errlen)
{
	struct mllp_server *s = calloc(1, sizeof(*s));
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);
	int one = 1;

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = *cfg;
	s->handler = handler;
	s->ctx = ctx;
	s->wake[0] = s->wake[1] = -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)cfg->port);
	if (inet_pton(AF_INET, cfg->bind, &sa.sin_addr) != 1) {
		snprintf(err, errlen, "'%s' is not an IPv4 address", cfg->bind);
		free(s);
		return NULL;
	}
	s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0 ||
	    setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one,
	               sizeof(one)) != 0 ||
	    bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(s->listen_fd, 64) != 0 ||
	    getsockname(s->listen_fd, (struct sockaddr *)&sa, &salen) != 0 ||
	    pipe2(s->wake, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "MLLP listener on %s:%d: %s", cfg->bind,
		         cfg->port, strerror(errno));
		goto fail;
	}
	s->port = ntohs(sa.sin_port);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->gone, NULL);
	if (pthread_create(&s->acceptor, NULL, accept_thread, s) != 0) {
		snprintf(err, errlen, "cannot start the MLLP thread");
		pthread_cond_destroy(&s->gone);
		pthread_mutex_destroy(&s->lock);
		goto fail;
	}
	return s;
fail:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->wake[0] >= 0) {
		close(s->wake[0]);
		close(s->wake[1]);
	}
	free(s);
	return NULL;
}

int mllp_port(const struct mllp_server *s)
{
	return s->port;
}

void mllp_stop(struct mllp_server *s)
{
	if (s == NULL)
		return;
	if (write(s->wake[1], "x", 1) != 1)
		log_error(LOGC_HL7, "cannot wake the MLLP threads: %s",
		          strerror(errno));
	pthread_join(s->acceptor, NULL);
	pthread_mutex_lock(&s->lock);
	while (s->connections > 0)
		pthread_cond_wait(&s->gone, &s->lock);
	pthread_mutex_unlock(&s->lock);
	close(s->listen_fd);
	close(s->wake[0]);
	close(s->wake[1]);
	pthread_cond_destroy(&s->gone);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

SSL_CTX *mllp_tls_context(const char *cert, const char *key, const char *ca,
                          char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	unsigned long e;

	if (ctx == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 ||
	    (ca && ca[0] && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1))
		goto fail;
	if (ca && ca[0]) /* the RIS must show a certificate from this CA */
		SSL_CTX_set_verify(
		        ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
		        NULL);
	return ctx;
fail:
	e = ERR_get_error();
	snprintf(err, errlen, "HL7 TLS (%s, %s%s%s): %s", cert, key,
	         ca && ca[0] ? ", " : "", ca && ca[0] ? ca : "",
	         e ? ERR_reason_error_string(e) : "cannot set up");
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}
