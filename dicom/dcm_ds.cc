/*
 * dcm_ds.cc - dataset handles: read (file or memory), write, typed getters
 * and setters, transfer syntax and the instance facts used by the storage
 * path. DICOM JSON lives in dcm_json.cc.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm_internal.h"

#include "dcmtk/dcmdata/dcistrmb.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>

namespace dcmi
{

std::string ds_xfer(const dcm_ds *w)
{
	if (!w || !w->ds)
		return std::string();
	if (w->ff) {
		OFString ts;
		DcmMetaInfo *mi = w->ff->getMetaInfo();
		if (mi &&
		    mi->findAndGetOFString(DCM_TransferSyntaxUID, ts).good() &&
		    !ts.empty())
			return std::string(ts.c_str());
	}
	E_TransferSyntax x = w->ds->getOriginalXfer();
	if (x == EXS_Unknown)
		return std::string();
	return std::string(DcmXfer(x).getXferID());
}

/* UID syntax of PS3.5 9.1, lenient on leading zeros (seen in the wild). */
static bool valid_uid(const OFString &s)
{
	if (s.empty() || s.length() > 64)
		return false;
	bool need_digit = true;
	for (size_t i = 0; i < s.length(); i++) {
		char c = s[i];
		if (c == '.') {
			if (need_digit)
				return false;
			need_digit = true;
		} else if (c >= '0' && c <= '9') {
			need_digit = false;
		} else {
			return false;
		}
	}
	return !need_digit;
}

int instance_info(DcmDataset *ds, const std::string &xfer,
                  struct dcm_instance_info *info, struct dcm_err *err)
{
	struct {
		const DcmTagKey &tag;
		char *dst;
		const char *name;
	} uids[] = {
		{ DCM_SOPClassUID, info->sop_class_uid, "SOPClassUID" },
		{ DCM_SOPInstanceUID, info->sop_instance_uid,
		  "SOPInstanceUID" },
		{ DCM_StudyInstanceUID, info->study_uid, "StudyInstanceUID" },
		{ DCM_SeriesInstanceUID, info->series_uid,
		  "SeriesInstanceUID" },
	};
	memset(info, 0, sizeof(*info));
	for (auto &u : uids) {
		OFString v;
		if (ds->findAndGetOFString(u.tag, v).bad() || v.empty())
			return fail(err, DCM_ERR_PARSE, "missing %s", u.name);
		if (!valid_uid(v))
			return fail(err, DCM_ERR_PARSE, "invalid %s", u.name);
		copy_str(u.dst, 65, v.c_str());
	}
	copy_str(info->transfer_syntax, sizeof(info->transfer_syntax),
	         xfer.c_str());
	OFString pid;
	if (ds->findAndGetOFString(DCM_PatientID, pid).good())
		copy_str(info->patient_id, sizeof(info->patient_id),
		         pid.c_str());
	Sint32 frames = 0;
	if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).good() &&
	    frames > 0)
		info->number_of_frames = frames;
	else
		info->number_of_frames = 1;
	info->file_size = 0;
	return DCM_OK;
}

} // namespace dcmi

using dcmi::fail;

/* Maps a failed load to IO (file system) or PARSE (content). */
static int load_status(const char *path, const OFCondition &c,
                       struct dcm_err *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return fail(err, DCM_ERR_IO, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(err, DCM_ERR_IO, "%s: not a regular file", path);
	return fail(err, DCM_ERR_PARSE, "%s: %s", path, c.text());
}

/*
 * DCMTK's auto-detection happily reads any byte soup as an implicit little
 * endian dataset when there is no preamble. Accept a raw dataset only if it
 * is not empty and every top-level element has a plausible tag (even group
 * or private group with a known-or-private element, ascending order is
 * guaranteed by DcmItem).
 */
static bool plausible(DcmFileFormat *ff)
{
	DcmDataset *ds = ff->getDataset();
	if (!ds || ds->card() == 0)
		return false;
	DcmMetaInfo *mi = ff->getMetaInfo();
	if (mi && mi->card() > 0)
		return true; /* had a valid Part 10 header */
	for (unsigned long i = 0; i < ds->card(); i++) {
		DcmElement *el = ds->getElement(i);
		const DcmTag &t = el->getTag();
		if (t.getGroup() < 0x0008 && t.getGroup() != 0x0002)
			return false;
		if (el->getVR() == EVR_UN && !t.isPrivate())
			return false; /* unknown public tag: garbage */
	}
	return true;
}

static Uint32 read_limit(size_t max_value_len)
{
	if (max_value_len == 0 || max_value_len >= UINT32_MAX)
		return UINT32_MAX;
	return (Uint32)max_value_len;
}

extern "C" struct dcm_ds *dcm_ds_new(void)
{
	try {
		auto *w = new dcm_ds;
		w->ff.reset(new DcmFileFormat);
		w->ds = w->ff->getDataset();
		return w;
	} catch (...) {
		return nullptr;
	}
}

extern "C" void dcm_ds_free(struct dcm_ds *ds)
{
	/* Borrowed handles are never given to the caller to free. */
	delete ds;
}

extern "C" int dcm_ds_read_file(const char *path, size_t max_value_len,
                                struct dcm_ds **out, struct dcm_err *err)
{
	if (!path || !out)
		return fail(err, DCM_ERR_ARG, "NULL argument");
	try {
		std::unique_ptr<dcm_ds> w(new dcm_ds);
		w->ff.reset(new DcmFileFormat);
		/*
		 * Never let a (corrupt) length field make DCMTK allocate more
		 * than the file holds: longer values stay on disk instead.
		 */
		Uint32 limit = read_limit(max_value_len);
		struct stat st;
		if (stat(path, &st) == 0 && (uint64_t)st.st_size < limit)
			limit = (Uint32)st.st_size;
		OFCondition c = w->ff->loadFile(path, EXS_Unknown, EGL_noChange,
		                                limit, ERM_autoDetect);
		if (c.bad())
			return load_status(path, c, err);
		if (!plausible(w->ff.get()))
			return fail(err, DCM_ERR_PARSE, "%s: not DICOM", path);
		w->ds = w->ff->getDataset();
		*out = w.release();
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception reading %s",
		            path);
	}
}

extern "C" int dcm_ds_read_mem(const void *buf, size_t len, struct dcm_ds **out,
                               struct dcm_err *err)
{
	if (!buf || !out || len == 0 || len > UINT32_MAX)
		return fail(err, DCM_ERR_ARG, "bad buffer");
	/* Part 10 only: DCMTK would allocate whatever a garbage length
	 * field of a raw buffer claims before noticing the buffer ends. */
	if (len < 132 || memcmp((const char *)buf + 128, "DICM", 4) != 0)
		return fail(err, DCM_ERR_PARSE, "not a DICOM Part 10 buffer");
	try {
		std::unique_ptr<dcm_ds> w(new dcm_ds);
		w->ff.reset(new DcmFileFormat);
		DcmInputBufferStream is;
		is.setBuffer(buf, (offile_off_t)len);
		is.setEos();
		w->ff->transferInit();
		OFCondition c =
		        w->ff->read(is, EXS_Unknown, EGL_noChange, (Uint32)len);
		w->ff->transferEnd();
		if (c.bad())
			return fail(err, DCM_ERR_PARSE, "%s", c.text());
		/* Values were copied out of buf: nothing refers to it now. */
		if (!plausible(w->ff.get()))
			return fail(err, DCM_ERR_PARSE, "not DICOM");
		w->ds = w->ff->getDataset();
		*out = w.release();
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception parsing buffer");
	}
}

extern "C" int dcm_ds_write_file(struct dcm_ds *ds, const char *path,
                                 const char *ts_uid, struct dcm_err *err)
{
	if (!ds || !ds->ds || !path)
		return fail(err, DCM_ERR_ARG, "NULL argument");
	try {
		if (!ds->ff)
			return fail(err, DCM_ERR_ARG, "borrowed dataset");
		E_TransferSyntax x;
		if (ts_uid) {
			x = DcmXfer(ts_uid).getXfer();
			if (x == EXS_Unknown)
				return fail(err, DCM_ERR_ARG,
				            "unknown transfer syntax %s",
				            ts_uid);
		} else {
			std::string cur = dcmi::ds_xfer(ds);
			x = cur.empty() ? EXS_LittleEndianExplicit
			                : DcmXfer(cur.c_str()).getXfer();
			if (x == EXS_Unknown)
				x = EXS_LittleEndianExplicit;
		}
		DcmDataset *d = ds->ds;
		/* Values left on disk must be in memory before a rewrite. */
		d->loadAllDataIntoMemory();
		OFCondition c = d->chooseRepresentation(x, nullptr);
		if (c.bad() || !d->canWriteXfer(x))
			return fail(err, DCM_ERR_ARG,
			            "cannot convert to %s: %s",
			            DcmXfer(x).getXferName(), c.text());
		c = ds->ff->saveFile(path, x, EET_ExplicitLength, EGL_recalcGL,
		                     EPD_noChange, 0, 0, EWM_createNewMeta);
		if (c.bad())
			return fail(err, DCM_ERR_IO, "%s: %s", path, c.text());
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception writing %s",
		            path);
	}
}

static bool text_vr(DcmEVR vr)
{
	switch (vr) {
	case EVR_AE:
	case EVR_AS:
	case EVR_CS:
	case EVR_DA:
	case EVR_DS:
	case EVR_DT:
	case EVR_IS:
	case EVR_LO:
	case EVR_LT:
	case EVR_PN:
	case EVR_SH:
	case EVR_ST:
	case EVR_TM:
	case EVR_UC:
	case EVR_UI:
	case EVR_UR:
	case EVR_UT:
	case EVR_US:
	case EVR_UL:
	case EVR_SS:
	case EVR_SL:
		return true;
	default:
		return false;
	}
}

/* Top-level element of ds, NULL when absent. Loads it if left on disk. */
static DcmElement *find_el(const struct dcm_ds *ds, uint32_t tag)
{
	DcmElement *el = nullptr;
	DcmTagKey key((Uint16)(tag >> 16), (Uint16)(tag & 0xffff));
	if (ds->ds->findAndGetElement(key, el, OFFalse).bad())
		return nullptr;
	return el;
}

/* A text element's value as dcm_ds_get_string() gives it. */
static int element_text(const struct dcm_ds *ds, DcmElement *el, char *buf,
                        size_t cap)
{
	if (!text_vr(el->getVR()))
		return DCM_ERR_ARG;
	OFString v;
	if (el->getLength() > 0 && el->getOFStringArray(v, OFTrue).bad())
		return DCM_ERR_PARSE;
	/* normalisation strips per-value padding; strip the tail */
	size_t n = v.length();
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\0'))
		n--;
	v.erase(n);
	std::string u = dcmi::text_utf8(ds->ds, v, el->getVR());
	return dcmi::copy_str(buf, cap, u.c_str()) ? DCM_OK : DCM_ERR_TOO_LONG;
}

extern "C" int dcm_ds_get_string(const struct dcm_ds *ds, uint32_t tag,
                                 char *buf, size_t cap)
{
	if (!ds || !ds->ds || !buf || cap == 0)
		return DCM_ERR_ARG;
	buf[0] = '\0';
	try {
		DcmElement *el = find_el(ds, tag);
		if (!el)
			return DCM_ERR_NOT_FOUND;
		return element_text(ds, el, buf, cap);
	} catch (...) {
		return DCM_ERR_INTERNAL;
	}
}

/*
 * Walks "TAG/i/TAG/j/.../TAG" from ds: the item holding the last tag, and
 * that tag in *last; NULL when a sequence or item is missing.
 */
static DcmItem *walk(DcmItem *item, const char *path, DcmTagKey *last)
{
	for (;;) {
		char *end;
		unsigned long tag = std::strtoul(path, &end, 16);

		if (end - path != 8)
			return nullptr;
		*last = DcmTagKey((Uint16)(tag >> 16), (Uint16)(tag & 0xffff));
		if (*end == '\0')
			return item;
		if (*end != '/')
			return nullptr;
		path = end + 1;
		long index = std::strtol(path, &end, 10);
		if (end == path || *end != '/' || index < 0)
			return nullptr;
		DcmItem *next = nullptr;
		if (item->findAndGetSequenceItem(*last, next, (int)index)
		            .bad() ||
		    next == nullptr)
			return nullptr;
		item = next;
		path = end + 1;
	}
}

extern "C" int dcm_ds_get_path(const struct dcm_ds *ds, const char *path,
                               char *buf, size_t cap)
{
	if (!ds || !ds->ds || !path || !buf || cap == 0)
		return DCM_ERR_ARG;
	buf[0] = '\0';
	try {
		DcmTagKey key;
		DcmItem *item = walk(ds->ds, path, &key);
		DcmElement *el = nullptr;
		if (!item || item->findAndGetElement(key, el, OFFalse).bad() ||
		    !el)
			return DCM_ERR_NOT_FOUND;
		return element_text(ds, el, buf, cap);
	} catch (...) {
		return DCM_ERR_INTERNAL;
	}
}

extern "C" long dcm_ds_items(const struct dcm_ds *ds, const char *path)
{
	if (!ds || !ds->ds || !path)
		return 0;
	try {
		DcmTagKey key;
		DcmItem *item = walk(ds->ds, path, &key);
		DcmSequenceOfItems *seq = nullptr;
		if (!item || item->findAndGetSequence(key, seq).bad() || !seq)
			return 0;
		return (long)seq->card();
	} catch (...) {
		return 0;
	}
}

extern "C" int dcm_ds_get_long(const struct dcm_ds *ds, uint32_t tag, long *out)
{
	if (!ds || !ds->ds || !out)
		return DCM_ERR_ARG;
	try {
		DcmElement *el = find_el(ds, tag);
		if (!el)
			return DCM_ERR_NOT_FOUND;
		if (el->getLength() == 0)
			return DCM_ERR_NOT_FOUND;
		switch (el->getVR()) {
		case EVR_US: {
			Uint16 v;
			if (el->getUint16(v, 0).bad())
				return DCM_ERR_PARSE;
			*out = v;
			return DCM_OK;
		}
		case EVR_SS: {
			Sint16 v;
			if (el->getSint16(v, 0).bad())
				return DCM_ERR_PARSE;
			*out = v;
			return DCM_OK;
		}
		case EVR_UL: {
			Uint32 v;
			if (el->getUint32(v, 0).bad())
				return DCM_ERR_PARSE;
			*out = (long)v;
			return DCM_OK;
		}
		case EVR_SL: {
			Sint32 v;
			if (el->getSint32(v, 0).bad())
				return DCM_ERR_PARSE;
			*out = v;
			return DCM_OK;
		}
		case EVR_IS: {
			OFString s;
			if (el->getOFString(s, 0, OFTrue).bad())
				return DCM_ERR_PARSE;
			if (s.empty())
				return DCM_ERR_NOT_FOUND;
			errno = 0;
			char *end = nullptr;
			long v = strtol(s.c_str(), &end, 10);
			if (errno != 0 || end == s.c_str() || *end != '\0')
				return DCM_ERR_PARSE;
			*out = v;
			return DCM_OK;
		}
		default:
			return DCM_ERR_ARG;
		}
	} catch (...) {
		return DCM_ERR_INTERNAL;
	}
}

extern "C" int dcm_ds_set_string(struct dcm_ds *ds, uint32_t tag,
                                 const char *value)
{
	if (!ds || !ds->ds || !value)
		return DCM_ERR_ARG;
	try {
		DcmTag t((Uint16)(tag >> 16), (Uint16)(tag & 0xffff));
		DcmEVR vr = t.getEVR();
		if (vr == EVR_UN || vr == EVR_SQ || vr == EVR_UNKNOWN ||
		    (tag & 0xffff) == 0)
			return DCM_ERR_ARG;
		OFCondition c = ds->ds->putAndInsertString(t, value, OFTrue);
		return c.good() ? DCM_OK : DCM_ERR_ARG;
	} catch (const std::bad_alloc &) {
		return DCM_ERR_NOMEM;
	} catch (...) {
		return DCM_ERR_INTERNAL;
	}
}

extern "C" int dcm_ds_transfer_syntax(const struct dcm_ds *ds, char *buf,
                                      size_t cap)
{
	if (!ds || !buf || cap == 0)
		return DCM_ERR_ARG;
	try {
		std::string x = dcmi::ds_xfer(ds);
		if (x.empty()) {
			buf[0] = '\0';
			return DCM_ERR_NOT_FOUND;
		}
		return dcmi::copy_str(buf, cap, x.c_str()) ? DCM_OK
		                                           : DCM_ERR_TOO_LONG;
	} catch (...) {
		return DCM_ERR_INTERNAL;
	}
}

extern "C" int dcm_ds_instance_info(const struct dcm_ds *ds,
                                    struct dcm_instance_info *info,
                                    struct dcm_err *err)
{
	if (!ds || !ds->ds || !info)
		return fail(err, DCM_ERR_ARG, "NULL argument");
	try {
		return dcmi::instance_info(ds->ds, dcmi::ds_xfer(ds), info,
		                           err);
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception");
	}
}
