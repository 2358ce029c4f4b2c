/*
 * web.h - the pages drimboxd serves beside DICOMweb: the viewer's files
 * under /viewer/ (from viewer_dir) and the report link
 * /IHEInvokeImageDisplay (IHE IID), which opens the viewer on a study this
 * drimbox published.
 */
#ifndef DRIMBOX_WEB_H
#define DRIMBOX_WEB_H

#include <jansson.h>
#include <microhttpd.h>

struct http_env;
struct index;

/* 1 when url is one of the pages of this module. */
int web_handles(const char *url);

/* Answers a GET or HEAD of one of those pages. */
enum MHD_Result web_handle(const struct http_env *env,
                           struct MHD_Connection *conn, const char *url);

/*
 * A path below a page's directory that may name a file: no empty, "." or
 * ".." segment, nothing hidden, no backslash. "" is index.html.
 */
int web_safe_path(const char *rel);

/*
 * Sends the file dir/name (name checked by web_safe_path), or its .br /
 * .gz twin when the client accepts it, with an ETag. When there is no such
 * file, sends nothing and sets *missing.
 */
enum MHD_Result web_file(struct MHD_Connection *conn, const char *dir,
                         const char *name, int *missing);

/* An empty response with a Location. */
enum MHD_Result web_redirect(struct MHD_Connection *conn, unsigned status,
                             const char *location);

/* The live index row (tokens) of that hash and kind, its data parsed. */
json_t *web_token_row(struct index *ix, const char *hash, const char *kind);

/*
 * The live index row (tokens: kind) of the request's cookie named name,
 * its data parsed, and the hash it is kept under in hash; NULL when there
 * is none.
 */
json_t *web_cookie_row(struct index *ix, struct MHD_Connection *conn,
                       const char *name, const char *kind, char hash[65]);

/* An HTML page (taken over: freed here) with Cache-Control cache. */
enum MHD_Result web_send_page(struct MHD_Connection *conn, unsigned status,
                              char *page, size_t len, const char *cache);

#endif
