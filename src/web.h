/*
 * web.h - the pages drimboxd serves beside DICOMweb: the viewer's files
 * under /viewer/ (from viewer_dir) and the report link
 * /IHEInvokeImageDisplay (IHE IID), which opens the viewer on a study this
 * drimbox published.
 */
#ifndef DRIMBOX_WEB_H
#define DRIMBOX_WEB_H

#include <microhttpd.h>

struct http_env;

/* 1 when url is one of the pages of this module. */
int web_handles(const char *url);

/* Answers a GET or HEAD of one of those pages. */
enum MHD_Result web_handle(const struct http_env *env,
                           struct MHD_Connection *conn, const char *url);

#endif
