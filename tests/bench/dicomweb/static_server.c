/*
 * static_server: the bench's ceiling for a DICOMweb server.  Answers every
 * request with one pre-built body read from disk (sendfile, through
 * MHD_create_response_from_fd) and a fixed Content-Type; no parsing, no
 * index, no DICOM.  Loopback only; runs until killed.
 *
 * usage: static_server PORT BODY-FILE CONTENT-TYPE
 * build: cc -O2 -o static_server static_server.c \
 *            $(pkg-config --cflags --libs libmicrohttpd)
 */

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct MHD_Response *body;

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)state;
	return MHD_queue_response(conn, MHD_HTTP_OK, body);
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct stat st;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int fd;

	if (argc != 4 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
		fprintf(stderr,
		        "usage: static_server PORT BODY-FILE CONTENT-TYPE\n");
		return 2;
	}
	fd = open(argv[2], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		perror(argv[2]);
		return 1;
	}
	body = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
	if (body == NULL ||
	    MHD_add_response_header(body, MHD_HTTP_HEADER_CONTENT_TYPE,
	                            argv[3]) != MHD_YES) {
		fprintf(stderr, "static_server: cannot build the response\n");
		return 1;
	}
	addr.sin_port = htons((uint16_t)atoi(argv[1]));
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO, 0,
	                     NULL, NULL, answer, NULL, MHD_OPTION_SOCK_ADDR,
	                     (struct sockaddr *)&addr,
	                     MHD_OPTION_THREAD_POOL_SIZE,
	                     (unsigned int)(cpus > 0 ? cpus : 1),
	                     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)1024,
	                     MHD_OPTION_END) == NULL) {
		fprintf(stderr, "static_server: cannot listen on port %s\n",
		        argv[1]);
		return 1;
	}
	for (;;)
		pause();
}
