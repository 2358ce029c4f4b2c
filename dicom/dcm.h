/*
 * dcm.h - plain-C interface to DCMTK: datasets, DICOM JSON, associations
 * (C-ECHO, C-FIND, C-MOVE, C-GET, C-STORE SCU) and a storage SCP.
 *
 * Everything behind this header is C++ (dicom/dcm_*.cc); no C++ type or
 * exception crosses it. Every fallible function returns an enum dcm_status
 * (DCM_OK = 0) and, when given a struct dcm_err, fills it with a one-line
 * reason. Handles are opaque; every *_free / *_close accepts NULL.
 */
#ifndef DRIMBOX_DCM_H
#define DRIMBOX_DCM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum dcm_status {
	DCM_OK = 0,
	DCM_ERR_ARG,         /* bad argument (programmer error or bad input) */
	DCM_ERR_NOMEM,       /* allocation failed */
	DCM_ERR_IO,          /* file system error */
	DCM_ERR_PARSE,       /* not a valid DICOM file / dataset */
	DCM_ERR_NOT_FOUND,   /* tag absent (dataset getters) */
	DCM_ERR_TOO_LONG,    /* value does not fit the caller's buffer */
	DCM_ERR_CONNECT,     /* TCP connection failed or timed out */
	DCM_ERR_REJECTED,    /* association rejected by the peer */
	DCM_ERR_NO_CONTEXT,  /* no acceptable presentation context */
	DCM_ERR_NETWORK,     /* DIMSE/network failure during an operation */
	DCM_ERR_FAILED,      /* the peer answered with a failure status */
	DCM_ERR_CANCELLED,   /* a callback asked to stop */
	DCM_ERR_INTERNAL,    /* unexpected DCMTK condition or C++ exception */
	DCM_ERR_UNSUPPORTED, /* no codec for this conversion */
};

/* A one-line reason, filled by fallible functions when non-NULL. */
struct dcm_err {
	char msg[256];
};

/* Returns a static name for a status code ("DCM_ERR_CONNECT" style text). */
const char *dcm_strerror(int status);

/*
 * Process-wide set-up: sets TCP_NODELAY=1 in the environment (DCMTK 3.6.7
 * only disables Nagle when it is set), checks the data dictionary, registers
 * the JPEG, JPEG-LS and RLE codecs. Call once before any other function and
 * before any thread is started; dcm_global_cleanup() at exit.
 */
int dcm_global_init(struct dcm_err *err);
void dcm_global_cleanup(void);

/* Builds a tag from group and element. */
#define DCM_TAG(g, e) ((uint32_t)(((uint32_t)(g) << 16) | (uint32_t)(e)))

/*
 * Finds a tag by its dictionary keyword ("PatientID") or as 8 hex digits
 * ("00100020"). DCM_ERR_NOT_FOUND when neither.
 */
int dcm_tag_lookup(const char *name, uint32_t *tag);

/* ---- datasets -------------------------------------------------------- */

struct dcm_ds;

/* A new empty dataset; NULL on allocation failure. */
struct dcm_ds *dcm_ds_new(void);
void dcm_ds_free(struct dcm_ds *ds);

/*
 * Reads a DICOM Part 10 file (or a raw dataset in implicit little endian when
 * there is no preamble). Element values longer than max_value_len bytes are
 * left on disk and loaded only if accessed (0 = load everything).
 * *out is set only on success; the caller frees it.
 */
int dcm_ds_read_file(const char *path, size_t max_value_len,
                     struct dcm_ds **out, struct dcm_err *err);

/* Same, from a Part 10 byte buffer (copied). */
int dcm_ds_read_mem(const void *buf, size_t len, struct dcm_ds **out,
                    struct dcm_err *err);

/*
 * Writes ds as a Part 10 file at path (meta header regenerated), in
 * transfer syntax ts_uid (NULL = keep the dataset's own). The file is written
 * in place: callers wanting atomicity write to a temp name and rename.
 */
int dcm_ds_write_file(struct dcm_ds *ds, const char *path, const char *ts_uid,
                      struct dcm_err *err);

/*
 * Copies the value of a top-level string-like element (AE AS CS DA DS DT IS
 * LO LT PN SH ST TM UC UI UR UT, and US/UL/SS/SL as decimal text) into buf,
 * NUL-terminated, trailing padding removed, text converted to UTF-8 from
 * the dataset's SpecificCharacterSet; multiple values are joined with
 * '\'. Returns DCM_ERR_NOT_FOUND when absent, DCM_ERR_TOO_LONG when the value
 * does not fit (buf then holds a truncated, terminated prefix). A present
 * but empty element gives DCM_OK and "".
 */
int dcm_ds_get_string(const struct dcm_ds *ds, uint32_t tag, char *buf,
                      size_t cap);

/*
 * The same for an element inside sequences: path is tags and item indexes
 * (from 0), e.g. "0040A043/0/00080100". dcm_ds_items() gives the number of
 * items of the sequence at a path (0 when absent).
 */
int dcm_ds_get_path(const struct dcm_ds *ds, const char *path, char *buf,
                    size_t cap);
long dcm_ds_items(const struct dcm_ds *ds, const char *path);

/* Reads an integer element (US UL SS SL IS) or its first value. */
int dcm_ds_get_long(const struct dcm_ds *ds, uint32_t tag, long *out);

/*
 * Sets (or creates) a top-level element with its dictionary VR from text
 * (multiple values separated by '\'). value "" creates an empty element,
 * which is how C-FIND return keys are asked for.
 */
int dcm_ds_set_string(struct dcm_ds *ds, uint32_t tag, const char *value);

/* Transfer syntax UID of a dataset read from a file or received. */
int dcm_ds_transfer_syntax(const struct dcm_ds *ds, char *buf, size_t cap);

/*
 * Converts the dataset to DICOM JSON (PS3.18 F.2): one object, tags as
 * 8 uppercase hex digits in ascending order, PN as {"Alphabetic": ...},
 * IS/DS as JSON numbers (a value that is not a valid number is emitted as
 * a string rather than producing invalid JSON), SQ as nested objects, text
 * always valid UTF-8 (decoded from SpecificCharacterSet). Binary values (OB
 * OD OF OL OV OW UN) and any value longer than bulk_threshold bytes become
 * {"vr":..,"BulkDataURI": bulk_prefix + path} where path is the tag path
 * ("7FE00010", or "00540016/0/00181072" inside sequences) when bulk_prefix is
 * non-NULL, or are omitted (vr only) when bulk_prefix is NULL. Pixel Data is
 * never inlined. *out is a malloc'd NUL-terminated string the caller frees.
 */
int dcm_ds_to_json(const struct dcm_ds *ds, size_t bulk_threshold,
                   const char *bulk_prefix, char **out, size_t *out_len,
                   struct dcm_err *err);

/* ---- instance facts --------------------------------------------------- */

/* The identifying facts of one stored instance. */
struct dcm_instance_info {
	char sop_class_uid[65];
	char sop_instance_uid[65];
	char study_uid[65];
	char series_uid[65];
	char transfer_syntax[65];
	char patient_id[65];
	long number_of_frames; /* 1 when absent */
	uint64_t file_size;    /* bytes of the Part 10 file */
};

/*
 * Fills info from a dataset (file_size is left 0). Returns DCM_ERR_PARSE,
 * with the reason in err, when SOP class, SOP instance, study or series UID
 * is missing or is not a valid UID.
 */
int dcm_ds_instance_info(const struct dcm_ds *ds,
                         struct dcm_instance_info *info, struct dcm_err *err);

/* ---- pixel data: frames, transcoding, rendering ------------------------ */

/*
 * True (1) when DICOM can convert pixel data from transfer syntax `from` to
 * `to` with the codecs available (DCMTK's JPEG, JPEG-LS, RLE, deflate both
 * ways; JPEG 2000 decoding through OpenJPEG), 0 otherwise. Identity is 1.
 */
int dcm_can_transcode(const char *from, const char *to);

/*
 * Writes the Part 10 file at path converted to transfer syntax ts_uid into
 * a new buffer (*out, malloc'd, the caller frees; *len its size). The
 * dataset is otherwise unchanged; the meta header is regenerated.
 * DCM_ERR_UNSUPPORTED when no codec can do it.
 */
int dcm_transcode_file(const char *path, const char *ts_uid, void **out,
                       size_t *len, struct dcm_err *err);

/*
 * One frame (1-based) of the instance at path, in transfer syntax ts_uid
 * (NULL = as stored). As stored: native frames are their raw bytes
 * (Rows x Columns x SamplesPerPixel x BitsAllocated/8, planar as stored),
 * encapsulated frames are that frame's fragments joined without item
 * tags. Otherwise the frame is decompressed to native (ts_uid an
 * uncompressed syntax) or compressed. *out malloc'd (caller frees);
 * ts_out (65 bytes) receives the syntax of the bytes returned.
 * DCM_ERR_NOT_FOUND for a frame number out of range, DCM_ERR_ARG when the
 * instance has no pixel data, DCM_ERR_UNSUPPORTED when no codec.
 */
int dcm_frame(const char *path, unsigned frame, const char *ts_uid, void **out,
              size_t *len, char *ts_out, struct dcm_err *err);

/* What dcm_render() should produce. */
struct dcm_render_opts {
	unsigned frame;        /* 1-based */
	int has_window;        /* use center/width below */
	double center, width;  /* VOI window, in modality units */
	unsigned max_w, max_h; /* fit within (aspect kept); 0 = as is */
};

/*
 * Renders one frame to 8-bit pixels for display: Modality LUT (rescale),
 * VOI (the window given, else the first window of the file, else the
 * min-max of the frame), MONOCHROME1 inverted, colour converted to RGB,
 * scaled down to fit max_w x max_h. *pixels malloc'd (caller frees), rows
 * top to bottom, *channels 1 (grey) or 3 (RGB). DCM_ERR_NOT_FOUND for a
 * frame out of range, DCM_ERR_UNSUPPORTED when the pixel data cannot be
 * decoded.
 */
int dcm_render(const char *path, const struct dcm_render_opts *opts,
               unsigned char **pixels, unsigned *width, unsigned *height,
               int *channels, struct dcm_err *err);

/*
 * The value of the element at tag_path in the Part 10 file at path, as
 * dcm_ds_to_json names bulk data ("7FE00010", "00540016/0/00181072":
 * tag, item index from 0, tag...): its bytes in little endian. *out
 * malloc'd (caller frees). DCM_ERR_NOT_FOUND when there is no such
 * element, DCM_ERR_ARG for a malformed path or a sequence,
 * DCM_ERR_UNSUPPORTED for encapsulated pixel data (use dcm_frame).
 */
int dcm_bulk(const char *path, const char *tag_path, void **out, size_t *len,
             struct dcm_err *err);

/* ---- associations (SCU) ----------------------------------------------- */

struct dcm_peer {
	const char *host;
	int port;
	const char *called_aet;  /* the peer's AE title */
	const char *calling_aet; /* ours */
	int timeout_s;           /* connect, ACSE and DIMSE timeout */
};

/* What an association is opened for; several may be OR'ed. */
enum dcm_service {
	DCM_SVC_ECHO = 1 << 0,
	DCM_SVC_FIND = 1 << 1,  /* Study Root FIND */
	DCM_SVC_MOVE = 1 << 2,  /* Study Root MOVE */
	DCM_SVC_GET = 1 << 3,   /* Study Root GET + SCP role for storage */
	DCM_SVC_STORE = 1 << 4, /* every storage SOP class */
};

struct dcm_assoc;

/*
 * Opens an association proposing the services asked for (storage with
 * native and compressed transfer syntaxes). *out set only on success.
 */
int dcm_assoc_open(const struct dcm_peer *peer, unsigned services,
                   struct dcm_assoc **out, struct dcm_err *err);

/* Releases the association (aborts it after a failure) and frees it. */
void dcm_assoc_close(struct dcm_assoc *as);

/* C-ECHO. */
int dcm_echo(struct dcm_assoc *as, struct dcm_err *err);

enum dcm_level {
	DCM_LEVEL_STUDY,
	DCM_LEVEL_SERIES,
	DCM_LEVEL_IMAGE,
};

/*
 * Called for each C-FIND match; the dataset is valid only during the call.
 * Return 0 to continue, non-zero to cancel the query (C-FIND returns
 * DCM_ERR_CANCELLED after a C-CANCEL).
 */
typedef int (*dcm_find_cb)(void *ctx, const struct dcm_ds *match);

/*
 * C-FIND (Study Root) at the given level; query holds the matching and
 * return keys; QueryRetrieveLevel is set by this function.
 */
int dcm_find(struct dcm_assoc *as, enum dcm_level level,
             const struct dcm_ds *query, dcm_find_cb cb, void *ctx,
             struct dcm_err *err);

/* Sub-operation counters of a C-MOVE or C-GET response. */
struct dcm_progress {
	int remaining, completed, failed, warning;
};

/* Called on each pending C-MOVE/C-GET response; non-zero cancels. */
typedef int (*dcm_progress_cb)(void *ctx, const struct dcm_progress *p);

/*
 * The selection of a retrieval: study_uid always, series_uid to narrow to
 * one series, sop_uid to one instance (series_uid then required).
 */
struct dcm_selection {
	const char *study_uid;
	const char *series_uid;
	const char *sop_uid;
};

/*
 * C-MOVE of the selection to dest_aet. final receives the last counters.
 * DCM_ERR_FAILED when any sub-operation failed (final tells how many).
 */
int dcm_move(struct dcm_assoc *as, const struct dcm_selection *sel,
             const char *dest_aet, dcm_progress_cb cb, void *ctx,
             struct dcm_progress *final, struct dcm_err *err);

/*
 * Storage handler, shared by the storage SCP and C-GET.
 *
 * The bridge receives each instance bit-preserving into a new file in
 * tmp_dir (dataset bytes exactly as sent, with a Part 10 meta header), then
 * parses it (values over 4 KiB left on disk) and, if that succeeds and the
 * instance facts are valid, calls stored(). The handler owns tmp_path from
 * then on: it renames or unlinks it. Its return value is the DIMSE status
 * sent back (0x0000 success, 0xA700 out of resources, 0xC000 cannot
 * understand, ...). If parsing fails the bridge unlinks the file, calls
 * rejected() (may be NULL) with the reason, and answers 0xC000.
 * Both may be called from several association threads at once.
 */
struct dcm_store_handler {
	void *ctx;
	unsigned (*stored)(void *ctx, const struct dcm_ds *ds,
	                   const struct dcm_instance_info *info,
	                   const char *tmp_path, const char *calling_aet);
	void (*rejected)(void *ctx, const char *calling_aet,
	                 const char *reason);
	const char *tmp_dir;
};

/* C-GET of the selection; instances arrive through h on this thread. */
int dcm_get(struct dcm_assoc *as, const struct dcm_selection *sel,
            const struct dcm_store_handler *h, dcm_progress_cb cb, void *ctx,
            struct dcm_progress *final, struct dcm_err *err);

/*
 * C-STORE of one Part 10 file, sent in its own transfer syntax when the peer
 * accepted it, else transcoded to one it accepted (decompressed if needed).
 * *dimse_status receives the peer's status (may be NULL).
 */
int dcm_store_file(struct dcm_assoc *as, const char *path,
                   unsigned *dimse_status, struct dcm_err *err);

/*
 * The patient identifiers an instance is filed under when it is sent
 * (import reconciliation, IHE IRWF.b): PatientID becomes patient_id,
 * issued by issuer (IssuerOfPatientID, and its qualifiers as an ISO
 * universal entity when it is an OID); the identifiers it carried, and
 * keep_id (issued by keep_issuer), are kept in OtherPatientIDsSequence.
 * issuer, keep_id and keep_issuer may be NULL or "".
 */
struct dcm_patient_ids {
	const char *patient_id, *issuer;
	const char *keep_id, *keep_issuer;
};

/* dcm_store_file, the instance filed under ids (NULL: as it is). */
int dcm_store_file_as(struct dcm_assoc *as, const char *path,
                      const struct dcm_patient_ids *ids, unsigned *dimse_status,
                      struct dcm_err *err);

/* ---- storage SCP -------------------------------------------------------- */

/*
 * Decides on each association request: return 0 to accept, non-zero to
 * reject (calling AE not recognised). May be called from several threads.
 */
typedef int (*dcm_accept_cb)(void *ctx, const char *calling_aet,
                             const char *called_aet, const char *peer_addr);

/*
 * Query/retrieve (Study Root and Patient Root FIND, MOVE, GET): the caller
 * answers from what it holds. Each callback returns 0, or non-zero with
 * err (the request then fails with status C000, err as its comment).
 */
struct dcm_qr_handler {
	/* C-FIND: emit() each answer to the identifier (QueryRetrieveLevel
	 * says the level); emit copies it. */
	int (*find)(void *ctx, const char *calling_aet,
	            const struct dcm_ds *query,
	            void (*emit)(void *ectx, const struct dcm_ds *answer),
	            void *ectx, struct dcm_err *err);
	/* C-MOVE, C-GET: the Part 10 files the identifier selects (*paths
	 * and each path malloc'd, freed by the SCP). */
	int (*select)(void *ctx, const char *calling_aet,
	              const struct dcm_ds *query, char ***paths, size_t *n,
	              struct dcm_err *err);
	/* C-MOVE: host and port of destination AE dest (host into a buffer
	 * of hostcap bytes); non-zero when it is not a known destination. */
	int (*destination)(void *ctx, const char *calling_aet, const char *dest,
	                   char *host, size_t hostcap, int *port);
	void *ctx;
};

struct dcm_scp_config {
	const char *aet;  /* our AE title; other called AEs are rejected */
	const char *bind; /* address to listen on ("0.0.0.0", "127.0.0.1") */
	int port;         /* 0 = ephemeral; see dcm_scp_port() */
	int max_associations;
	int timeout_s; /* ACSE/DIMSE idle timeout */
	dcm_accept_cb accept;
	void *accept_ctx;
	struct dcm_store_handler store; /* copied; tmp_dir must outlive scp */
	struct dcm_qr_handler qr;       /* copied; find NULL: no Q/R */
};

struct dcm_scp;

/*
 * Listens and serves in background threads: C-ECHO and C-STORE of every
 * storage SOP class in the native, deflate, JPEG (baseline, extended,
 * lossless), JPEG-LS, JPEG 2000 and RLE transfer syntaxes; with a Q/R
 * handler, C-FIND, C-MOVE (to the destination the handler names) and
 * C-GET. Returns once the socket is listening. *out set only on success.
 */
int dcm_scp_start(const struct dcm_scp_config *cfg, struct dcm_scp **out,
                  struct dcm_err *err);

/* The port actually listened on. */
int dcm_scp_port(const struct dcm_scp *scp);

/* Stops listening, waits for running associations to end, frees. */
void dcm_scp_stop(struct dcm_scp *scp);

/* ---- KOS manifest (Key Object Selection, IHE XDS-I.b / DRIM-M) ---------- */

struct dcm_kos_instance {
	const char *sop_class, *sop_uid;
};

struct dcm_kos_series {
	const char *uid;
	const char *retrieve_url; /* this series' WADO-RS resource */
	const struct dcm_kos_instance *inst;
	size_t ninst;
};

/* A ReferencedRequestSequence item: the order the exam answers. */
struct dcm_kos_request {
	const char *accession, *accession_oid; /* issuer: ISO OID, or NULL */
	const char *placer_order, *placer_oid;
};

struct dcm_kos {
	/* patient: the INS, its issuer's name and OID (ISO) */
	const char *patient_id, *patient_issuer, *patient_issuer_oid;
	const char *patient_name, *birth_date, *sex;
	/* the exam, as the PACS describes it */
	const char *study_uid, *study_date, *study_time, *study_id;
	const char *study_description, *referring, *accession;
	/* the manifest itself; NULL UIDs are generated */
	const char *sop_uid, *series_uid;
	long series_number, instance_number;
	const char *description; /* Key Object Description, or NULL */
	const char *manufacturer, *institution;
	const struct dcm_kos_request *req;
	size_t nreq;
	const struct dcm_kos_series *series;
	size_t nseries;
};

/*
 * Writes the manifest as a Part 10 file (Explicit VR Little Endian, UTF-8):
 * Key Object Selection Document (1.2.840.10008.5.1.4.1.1.88.59), root
 * CONTAINER (113030, DCM, "Manifest") with template TID 2010, one IMAGE
 * item per instance, Current Requested Procedure Evidence with a
 * RetrieveURL per series, the requests, and the patient's INS with its
 * issuer qualifiers, repeated in OtherPatientIDsSequence. sop_out (65
 * bytes) gets its SOP Instance UID.
 */
int dcm_kos_write(const struct dcm_kos *k, const char *path, char *sop_out,
                  struct dcm_err *err);

/* An instance a manifest references, as read by dcm_kos_read. */
struct dcm_manifest_instance {
	char sop_class[65], sop_uid[65];
};

/* A series a manifest references. */
struct dcm_manifest_series {
	char study_uid[65], uid[65];
	char retrieve_url[1025]; /* its WADO-RS resource at the source */
	char retrieve_aet[65];
	size_t ninst;
	struct dcm_manifest_instance *inst;
};

/* A KOS manifest, as a consumer reads it (dcm_kos_read). */
struct dcm_manifest {
	char sop_uid[65];
	char patient_id[65], patient_issuer[65], patient_issuer_oid[65];
	char patient_name[325];
	char study_uid[65], accession[65], study_date[9], description[65];
	size_t nseries;
	struct dcm_manifest_series *series;
};

/*
 * Reads a KOS manifest (a Part 10 buffer, as ITI-43 returns it): its
 * Current Requested Procedure Evidence, series by series with their
 * RetrieveURL. At most 10,000 series and 1,000,000 instances. *out is
 * freed with dcm_manifest_free. DCM_ERR_PARSE when the buffer is not a
 * KOS or references nothing.
 */
int dcm_kos_read(const void *buf, size_t len, struct dcm_manifest **out,
                 struct dcm_err *err);
void dcm_manifest_free(struct dcm_manifest *m);

#ifdef __cplusplus
}
#endif

#endif
