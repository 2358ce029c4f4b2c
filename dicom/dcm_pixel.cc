/*
 * dcm_pixel.cc - pixel data: which conversions the codecs allow, whole-file
 * transcoding into a memory buffer, and single frames (as stored, decoded
 * or re-encoded). DCMTK does JPEG, JPEG-LS, RLE and deflate; JPEG 2000 is
 * decoded here with OpenJPEG (never encoded). Nothing here is shared between
 * calls: each call loads its own DcmFileFormat, so calls may run on several
 * threads at once.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm_internal.h"

#include "dcmtk/dcmdata/dcfcache.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"

#include <openjpeg.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using dcmi::fail;

namespace
{

/* Values longer than this stay on disk until accessed (pixel data). */
constexpr Uint32 kLazyRead = 16 * 1024;

/* Hard cap on one decoded frame or one output buffer (2 GiB - 1). */
constexpr size_t kMaxBytes = 0x7FFFFFFFu;

bool is_native(E_TransferSyntax x)
{
	return x == EXS_LittleEndianImplicit || x == EXS_LittleEndianExplicit ||
	       x == EXS_BigEndianExplicit ||
	       x == EXS_DeflatedLittleEndianExplicit;
}

bool is_j2k(E_TransferSyntax x)
{
	return x == EXS_JPEG2000LosslessOnly || x == EXS_JPEG2000;
}

/* Encapsulated syntaxes DCMTK's registered codecs encode and decode. */
bool is_dcmtk_codec(E_TransferSyntax x)
{
	switch (x) {
	case EXS_JPEGProcess1:
	case EXS_JPEGProcess2_4:
	case EXS_JPEGProcess14:
	case EXS_JPEGProcess14SV1:
	case EXS_JPEGLSLossless:
	case EXS_JPEGLSLossy:
	case EXS_RLELossless:
		return true;
	default:
		return false;
	}
}

bool is_lossy(E_TransferSyntax x)
{
	return x == EXS_JPEGProcess1 || x == EXS_JPEGProcess2_4 ||
	       x == EXS_JPEGLSLossy || x == EXS_JPEG2000;
}

/*
 * DCMTK 3.6.7's near-lossless JPEG-LS encoder (the "cooked" one) pads an
 * odd-length codestream by writing into its input, past the end when the
 * codestream is longer than the frame: frames this small are not given
 * to it (see dcm_common.cc).
 */
constexpr size_t kJlsNearMinFrame = 4096;

int jls_near_refused(const dcmi::PixelInfo &pi, struct dcm_err *err)
{
	if (pi.frame_bytes() >= kJlsNearMinFrame)
		return DCM_OK;
	return fail(err, DCM_ERR_UNSUPPORTED,
	            "frame too small for near-lossless JPEG-LS");
}

/*
 * Bitstreams of `from` that are valid as `to` unchanged: a baseline JPEG
 * is an extended-process JPEG, a lossless SV1 JPEG a process 14 one.
 */
bool relabel(E_TransferSyntax from, E_TransferSyntax to)
{
	return (from == EXS_JPEGProcess1 && to == EXS_JPEGProcess2_4) ||
	       (from == EXS_JPEGProcess14SV1 && to == EXS_JPEGProcess14);
}

bool can_convert(E_TransferSyntax from, E_TransferSyntax to)
{
	if (from == EXS_Unknown || to == EXS_Unknown)
		return false;
	if (from == to || relabel(from, to))
		return true;
	bool dec = is_native(from) || is_dcmtk_codec(from) || is_j2k(from);
	bool enc = is_native(to) || is_dcmtk_codec(to);
	if (!dec || !enc)
		return false;
	/* Never add a second generation of loss. */
	return !(is_lossy(from) && is_lossy(to));
}

/* Big endian bytes of native little endian samples, in place. */
void swap_samples(std::vector<Uint8> &b, Uint16 bits_alloc)
{
	size_t w = bits_alloc / 8;
	if (w < 2)
		return;
	for (size_t i = 0; i + w <= b.size(); i += w)
		std::reverse(b.begin() + (long)i, b.begin() + (long)(i + w));
}

/* Colour-by-plane <-> colour-by-pixel for one frame. */
void replan(std::vector<Uint8> &b, const dcmi::PixelInfo &pi, bool to_planar)
{
	size_t sample = pi.bits_alloc / 8;
	size_t n = (size_t)pi.rows * pi.cols;
	if (pi.spp < 2 || b.size() < n * pi.spp * sample)
		return;
	std::vector<Uint8> o(b.size());
	for (size_t p = 0; p < n; p++)
		for (size_t s = 0; s < pi.spp; s++) {
			size_t pix = (p * pi.spp + s) * sample;
			size_t pln = (s * n + p) * sample;
			if (to_planar)
				memcpy(&o[pln], &b[pix], sample);
			else
				memcpy(&o[pix], &b[pln], sample);
		}
	b.swap(o);
}

/* ---- fragments and frames ---------------------------------------------- */

/* Half-open ranges [first, last) of pixel item indexes, one per frame. */
typedef std::vector<std::pair<unsigned long, unsigned long>> FrameMap;

/* First n bytes of a fragment without loading it. */
bool fragment_head(DcmPixelItem *it, Uint8 *buf, Uint32 n, DcmFileCache *fc)
{
	if (it->getLength() < n)
		return false;
	return it->getPartialValue(buf, 0, n, fc, EBO_LittleEndian).good();
}

/* Does a fragment open a frame of this syntax (SOI / SOC / JP2 box)? */
bool frame_start(E_TransferSyntax x, const Uint8 *h)
{
	static const Uint8 jp2[8] = { 0, 0, 0, 12, 'j', 'P', ' ', ' ' };
	if (is_j2k(x))
		return (h[0] == 0xFF && h[1] == 0x4F && h[2] == 0xFF &&
		        h[3] == 0x51) ||
		       memcmp(h, jp2, 4) == 0;
	return h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF;
}

/*
 * Maps frames to fragment offsets: offs[k] is the byte position of frame
 * k's first item relative to the first item after the offset table.
 */
bool map_by_offsets(DcmPixelSequence *seq, const std::vector<Uint64> &offs,
                    FrameMap &map)
{
	unsigned long n = seq->card();
	std::vector<Uint64> pos;
	Uint64 p = 0;
	for (unsigned long i = 1; i < n; i++) {
		DcmPixelItem *it = nullptr;
		if (seq->getItem(it, i).bad())
			return false;
		pos.push_back(p);
		p += 8 + (Uint64)it->getLength();
	}
	map.clear();
	size_t k = 0;
	for (size_t f = 0; f < offs.size(); f++) {
		while (k < pos.size() && pos[k] < offs[f])
			k++;
		if (k >= pos.size() || pos[k] != offs[f])
			return false;
		if (f > 0)
			map.back().second = k + 1;
		map.push_back({ k + 1, n });
	}
	for (auto &r : map)
		if (r.first >= r.second)
			return false;
	return true;
}

/*
 * Fragment ranges of every frame, in order of preference: the Basic Offset
 * Table, the Extended Offset Table, one fragment per frame, all fragments
 * for a single frame, else a scan of each fragment's first bytes for the
 * codec's start marker (JPEG/JPEG-LS SOI FFD8FF, J2K SOC+SIZ FF4FFF51 or a
 * JP2 signature box); the scan must find exactly one start per frame.
 */
int map_frames(DcmDataset *ds, DcmPixelSequence *seq, E_TransferSyntax x,
               Uint32 frames, FrameMap &map, struct dcm_err *err)
{
	unsigned long n = seq->card();
	if (n < 2)
		return fail(err, DCM_ERR_PARSE, "no pixel data fragments");
	unsigned long nfrag = n - 1;
	DcmPixelItem *bot = nullptr;
	if (seq->getItem(bot, 0).good() && bot->getLength() >= 4 &&
	    bot->getLength() / 4 == frames) {
		Uint8 *v = nullptr;
		if (bot->getUint8Array(v).good() && v) {
			std::vector<Uint64> offs;
			for (Uint32 f = 0; f < frames; f++) {
				const Uint8 *q = v + 4 * f;
				offs.push_back((Uint64)q[0] |
				               (Uint64)q[1] << 8 |
				               (Uint64)q[2] << 16 |
				               (Uint64)q[3] << 24);
			}
			if (map_by_offsets(seq, offs, map))
				return DCM_OK;
		}
	}
	DcmElement *eot = nullptr;
	if (ds->findAndGetElement(DCM_ExtendedOffsetTable, eot).good() &&
	    eot->getLength() == 8ul * frames) {
		Uint8 *v = nullptr;
		if (eot->getUint8Array(v).good() && v) {
			std::vector<Uint64> offs;
			for (Uint32 f = 0; f < frames; f++) {
				Uint64 o = 0;
				for (int b = 7; b >= 0; b--)
					o = o << 8 | v[8 * f + (Uint32)b];
				offs.push_back(o);
			}
			if (map_by_offsets(seq, offs, map))
				return DCM_OK;
		}
	}
	map.clear();
	if (nfrag == frames) {
		for (unsigned long i = 1; i < n; i++)
			map.push_back({ i, i + 1 });
		return DCM_OK;
	}
	if (frames == 1) {
		map.push_back({ 1, n });
		return DCM_OK;
	}
	if (nfrag < frames)
		return fail(err, DCM_ERR_PARSE, "%lu fragments for %u frames",
		            nfrag, (unsigned)frames);
	DcmFileCache fc;
	for (unsigned long i = 1; i < n; i++) {
		DcmPixelItem *it = nullptr;
		Uint8 h[4];
		if (seq->getItem(it, i).bad())
			return fail(err, DCM_ERR_PARSE, "bad fragment %lu", i);
		bool start = fragment_head(it, h, 4, &fc) && frame_start(x, h);
		if (i == 1 && !start)
			return fail(err, DCM_ERR_PARSE,
			            "first fragment is not a frame start");
		if (start) {
			if (!map.empty())
				map.back().second = i;
			map.push_back({ i, n });
		}
	}
	if (map.size() != frames)
		return fail(err, DCM_ERR_PARSE,
		            "cannot map %lu fragments to %u frames", nfrag,
		            (unsigned)frames);
	return DCM_OK;
}

/* Joins the fragments of one frame without their item headers. */
int join_fragments(DcmPixelSequence *seq,
                   const std::pair<unsigned long, unsigned long> &r,
                   std::vector<Uint8> &out, struct dcm_err *err)
{
	size_t total = 0;
	for (unsigned long i = r.first; i < r.second; i++) {
		DcmPixelItem *it = nullptr;
		if (seq->getItem(it, i).bad())
			return fail(err, DCM_ERR_PARSE, "bad fragment %lu", i);
		total += it->getLength();
		if (total > kMaxBytes)
			return fail(err, DCM_ERR_PARSE, "frame too large");
	}
	out.resize(total);
	DcmFileCache fc;
	size_t at = 0;
	for (unsigned long i = r.first; i < r.second; i++) {
		DcmPixelItem *it = nullptr;
		seq->getItem(it, i);
		Uint32 len = it->getLength();
		if (len == 0)
			continue;
		OFCondition c = it->getPartialValue(&out[at], 0, len, &fc,
		                                    EBO_LittleEndian);
		if (c.bad())
			return fail(err, DCM_ERR_IO, "fragment %lu: %s", i,
			            c.text());
		at += len;
	}
	return DCM_OK;
}

/* The encapsulated pixel sequence of pd as stored. */
DcmPixelSequence *stored_sequence(DcmPixelData *pd, E_TransferSyntax x)
{
	DcmPixelSequence *seq = nullptr;
	if (!pd || pd->getEncapsulatedRepresentation(x, nullptr, seq).bad())
		return nullptr;
	return seq;
}

/* ---- JPEG 2000 through OpenJPEG ---------------------------------------- */

struct MemSrc {
	const Uint8 *p;
	size_t len, pos;
};

OPJ_SIZE_T mem_read(void *buf, OPJ_SIZE_T n, void *ud)
{
	MemSrc *m = static_cast<MemSrc *>(ud);
	if (m->pos >= m->len)
		return (OPJ_SIZE_T)-1;
	size_t k = std::min((size_t)n, m->len - m->pos);
	memcpy(buf, m->p + m->pos, k);
	m->pos += k;
	return k;
}

OPJ_OFF_T mem_skip(OPJ_OFF_T n, void *ud)
{
	MemSrc *m = static_cast<MemSrc *>(ud);
	if (n < 0) {
		if ((size_t)-n > m->pos)
			return -1;
		m->pos -= (size_t)-n;
		return n;
	}
	m->pos = std::min(m->len, m->pos + (size_t)n);
	return n;
}

OPJ_BOOL mem_seek(OPJ_OFF_T n, void *ud)
{
	MemSrc *m = static_cast<MemSrc *>(ud);
	if (n < 0 || (size_t)n > m->len)
		return OPJ_FALSE;
	m->pos = (size_t)n;
	return OPJ_TRUE;
}

/* OpenJPEG message sink: keeps the first error, ignores the rest. */
void opj_error(const char *msg, void *ud)
{
	std::string *s = static_cast<std::string *>(ud);
	if (s->empty() && msg)
		s->assign(msg, strcspn(msg, "\n"));
}

void opj_quiet(const char *, void *)
{
}

/* Owner of the OpenJPEG objects of one decode. */
struct OpjDecode {
	opj_stream_t *stream = nullptr;
	opj_codec_t *codec = nullptr;
	opj_image_t *image = nullptr;
	~OpjDecode()
	{
		if (image)
			opj_image_destroy(image);
		if (codec)
			opj_destroy_codec(codec);
		if (stream)
			opj_stream_destroy(stream);
	}
};

/*
 * Decodes one J2K codestream or JP2 file into native little endian
 * samples laid out for pi (planar as pi.planar says). The component
 * count, size and precision must match the DICOM header.
 */
int j2k_decode(const std::vector<Uint8> &in, const dcmi::PixelInfo &pi,
               std::vector<Uint8> &out, struct dcm_err *err)
{
	static const Uint8 jp2[4] = { 0, 0, 0, 12 };
	if (in.size() < 12)
		return fail(err, DCM_ERR_PARSE, "JPEG 2000 frame too short");
	bool is_jp2 = memcmp(in.data(), jp2, 4) == 0;
	if (!is_jp2 && !(in[0] == 0xFF && in[1] == 0x4F))
		return fail(err, DCM_ERR_PARSE, "not a JPEG 2000 codestream");
	MemSrc src = { in.data(), in.size(), 0 };
	std::string msg;
	OpjDecode d;
	d.stream = opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE);
	d.codec = opj_create_decompress(is_jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
	if (!d.stream || !d.codec)
		return fail(err, DCM_ERR_NOMEM, "OpenJPEG set-up failed");
	opj_stream_set_user_data(d.stream, &src, nullptr);
	opj_stream_set_user_data_length(d.stream, in.size());
	opj_stream_set_read_function(d.stream, mem_read);
	opj_stream_set_skip_function(d.stream, mem_skip);
	opj_stream_set_seek_function(d.stream, mem_seek);
	opj_set_error_handler(d.codec, opj_error, &msg);
	opj_set_warning_handler(d.codec, opj_quiet, nullptr);
	opj_set_info_handler(d.codec, opj_quiet, nullptr);
	opj_dparameters_t par;
	opj_set_default_decoder_parameters(&par);
	if (!opj_setup_decoder(d.codec, &par) ||
	    !opj_read_header(d.stream, d.codec, &d.image) ||
	    !opj_decode(d.codec, d.stream, d.image) ||
	    !opj_end_decompress(d.codec, d.stream))
		return fail(err, DCM_ERR_PARSE, "JPEG 2000 decode failed: %s",
		            msg.c_str());
	opj_image_t *im = d.image;
	if (im->numcomps != pi.spp)
		return fail(err, DCM_ERR_PARSE,
		            "JPEG 2000 has %u components, header says %u",
		            im->numcomps, (unsigned)pi.spp);
	size_t n = (size_t)pi.rows * pi.cols;
	size_t sample = pi.bits_alloc / 8;
	for (unsigned c = 0; c < im->numcomps; c++) {
		const opj_image_comp_t &cp = im->comps[c];
		if (cp.w != pi.cols || cp.h != pi.rows || !cp.data ||
		    cp.prec > pi.bits_alloc)
			return fail(err, DCM_ERR_PARSE,
			            "JPEG 2000 component %u does not match the "
			            "header",
			            c);
	}
	if (sample < 1 || sample > 4)
		return fail(err, DCM_ERR_UNSUPPORTED, "BitsAllocated %u",
		            (unsigned)pi.bits_alloc);
	out.assign(n * pi.spp * sample, 0);
	for (unsigned c = 0; c < pi.spp; c++) {
		const OPJ_INT32 *v = im->comps[c].data;
		for (size_t p = 0; p < n; p++) {
			size_t at = pi.planar ? (c * n + p) * sample
			                      : (p * pi.spp + c) * sample;
			Uint32 u = (Uint32)v[p];
			for (size_t b = 0; b < sample; b++)
				out[at + b] = (Uint8)(u >> (8 * b));
		}
	}
	return DCM_OK;
}

/* Photometric interpretation of decoded J2K samples (MCT undone). */
OFString j2k_photometric(const OFString &pi)
{
	if (pi == "YBR_RCT" || pi == "YBR_ICT")
		return "RGB";
	return pi;
}

/* ---- encoding and decoding one frame through DCMTK --------------------- */

/* Copies the pixel module of pi into a new single-frame dataset. */
void put_pixel_module(DcmDataset &d, const dcmi::PixelInfo &pi,
                      const OFString &photometric, Uint16 planar, DcmItem *orig)
{
	OFString s;
	if (orig && orig->findAndGetOFString(DCM_SOPClassUID, s).good())
		d.putAndInsertString(DCM_SOPClassUID, s.c_str());
	if (orig && orig->findAndGetOFString(DCM_SOPInstanceUID, s).good())
		d.putAndInsertString(DCM_SOPInstanceUID, s.c_str());
	d.putAndInsertUint16(DCM_Rows, pi.rows);
	d.putAndInsertUint16(DCM_Columns, pi.cols);
	d.putAndInsertUint16(DCM_SamplesPerPixel, pi.spp);
	d.putAndInsertString(DCM_PhotometricInterpretation,
	                     photometric.c_str());
	d.putAndInsertUint16(DCM_BitsAllocated, pi.bits_alloc);
	d.putAndInsertUint16(DCM_BitsStored, pi.bits_stored);
	d.putAndInsertUint16(DCM_HighBit, pi.high_bit);
	d.putAndInsertUint16(DCM_PixelRepresentation, pi.pixel_rep);
	if (pi.spp > 1)
		d.putAndInsertUint16(DCM_PlanarConfiguration, planar);
	d.putAndInsertString(DCM_NumberOfFrames, "1");
}

/* A native pixel data element holding bytes (little endian). */
DcmPixelData *native_element(const std::vector<Uint8> &b, Uint16 bits_alloc)
{
	std::unique_ptr<DcmPixelData> pd(new DcmPixelData(
	        DcmTag(DCM_PixelData, bits_alloc > 8 ? EVR_OW : EVR_OB)));
	OFCondition c;
	if (bits_alloc > 8) {
		std::vector<Uint16> w(b.size() / 2);
		for (size_t i = 0; i < w.size(); i++)
			w[i] = (Uint16)(b[2 * i] | b[2 * i + 1] << 8);
		c = pd->putUint16Array(w.data(), w.size());
	} else {
		c = pd->putUint8Array(b.data(), b.size());
	}
	return c.good() ? pd.release() : nullptr;
}

/* Native bytes of pd's current (native) representation, little endian. */
bool native_bytes(DcmPixelData *pd, std::vector<Uint8> &out)
{
	Uint32 len = pd->getLength(EXS_LittleEndianExplicit);
	Uint8 *p = nullptr;
	if (pd->getUint8Array(p).bad() || !p)
		return false;
	if (pd->getVR() == EVR_OW && gLocalByteOrder != EBO_LittleEndian)
		return false; /* only little endian hosts are supported */
	out.assign(p, p + len);
	return true;
}

/*
 * Decodes one frame's joined fragments (stored in x) with DCMTK into
 * native bytes; *photometric receives the decoded colour model and
 * *planar the planar configuration of the result.
 */
int dcmtk_decode(const std::vector<Uint8> &frag, E_TransferSyntax x,
                 const dcmi::PixelInfo &pi, DcmItem *orig,
                 std::vector<Uint8> &out, OFString *photometric, Uint16 *planar,
                 struct dcm_err *err)
{
	DcmDataset d;
	put_pixel_module(d, pi, pi.photometric, pi.planar, orig);
	std::unique_ptr<DcmPixelSequence> seq(
	        new DcmPixelSequence(DcmTag(DCM_PixelData, EVR_OB)));
	seq->insert(new DcmPixelItem(DcmTag(DCM_Item, EVR_OB)));
	std::unique_ptr<DcmPixelItem> it(
	        new DcmPixelItem(DcmTag(DCM_Item, EVR_OB)));
	std::vector<Uint8> even(frag);
	if (even.size() & 1)
		even.push_back(0);
	if (it->putUint8Array(even.data(), even.size()).bad())
		return fail(err, DCM_ERR_NOMEM, "fragment copy failed");
	seq->insert(it.release());
	DcmPixelData *pd = new DcmPixelData(DcmTag(DCM_PixelData, EVR_OB));
	pd->putOriginalRepresentation(x, nullptr, seq.release());
	d.insert(pd, OFTrue);
	OFCondition c =
	        d.chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
	if (c.bad() || !pd->canWriteXfer(EXS_LittleEndianExplicit, x))
		return fail(err, DCM_ERR_UNSUPPORTED, "cannot decode %s: %s",
		            DcmXfer(x).getXferName(), c.text());
	if (!native_bytes(pd, out))
		return fail(err, DCM_ERR_INTERNAL, "no decoded pixel data");
	OFString pm;
	if (d.findAndGetOFString(DCM_PhotometricInterpretation, pm).bad())
		pm = pi.photometric;
	*photometric = pm;
	Uint16 pc = 0;
	if (d.findAndGetUint16(DCM_PlanarConfiguration, pc).bad())
		pc = 0;
	*planar = pc;
	return DCM_OK;
}

/*
 * DCMTK 3.6.7's JPEG-LS encoder leaves the pad byte of an odd-length
 * codestream (after the EOI marker) uninitialised: output that differs
 * from run to run and a byte of heap memory in the file. Zero it.
 */
void zero_jls_padding(DcmPixelData *pd, E_TransferSyntax to)
{
	DcmPixelSequence *seq = nullptr;

	if (pd->getEncapsulatedRepresentation(to, nullptr, seq).bad() || !seq)
		return;
	for (unsigned long i = 1; i < seq->card(); i++) {
		DcmPixelItem *it = nullptr;
		Uint8 *b = nullptr;
		Uint32 n;

		if (seq->getItem(it, i).bad() || it == nullptr ||
		    it->getUint8Array(b).bad() || b == nullptr)
			continue;
		n = it->getLength();
		if (n >= 3 && b[n - 3] == 0xFF && b[n - 2] == 0xD9)
			b[n - 1] = 0;
	}
}

OFCondition choose_representation(DcmDataset &d, E_TransferSyntax to)
{
	OFCondition c = d.chooseRepresentation(to, nullptr);
	DcmElement *el = nullptr;

	if (c.good() && (to == EXS_JPEGLSLossless || to == EXS_JPEGLSLossy) &&
	    d.findAndGetElement(DCM_PixelData, el).good() && el != nullptr)
		zero_jls_padding(OFstatic_cast(DcmPixelData *, el), to);
	return c;
}

/* Encodes one native frame to x; out receives its fragments joined. */
int dcmtk_encode(const std::vector<Uint8> &native, const dcmi::PixelInfo &pi,
                 const OFString &photometric, DcmItem *orig, E_TransferSyntax x,
                 std::vector<Uint8> &out, struct dcm_err *err)
{
	if (x == EXS_JPEGLSLossy && jls_near_refused(pi, err) != DCM_OK)
		return DCM_ERR_UNSUPPORTED;
	DcmDataset d;
	put_pixel_module(d, pi, photometric, pi.planar, orig);
	DcmPixelData *pd = native_element(native, pi.bits_alloc);
	if (!pd)
		return fail(err, DCM_ERR_NOMEM, "pixel copy failed");
	d.insert(pd, OFTrue);
	OFCondition c = choose_representation(d, x);
	DcmPixelSequence *seq = nullptr;
	if (c.good())
		c = pd->getEncapsulatedRepresentation(x, nullptr, seq);
	if (c.bad() || !seq)
		return fail(err, DCM_ERR_UNSUPPORTED, "cannot encode %s: %s",
		            DcmXfer(x).getXferName(), c.text());
	return join_fragments(seq, { 1, seq->card() }, out, err);
}

/* ---- whole files -------------------------------------------------------- */

/* The stored transfer syntax of a loaded file. */
E_TransferSyntax stored_xfer(DcmFileFormat &ff)
{
	OFString ts;
	DcmMetaInfo *mi = ff.getMetaInfo();
	if (mi && mi->findAndGetOFString(DCM_TransferSyntaxUID, ts).good() &&
	    !ts.empty()) {
		E_TransferSyntax x = DcmXfer(ts.c_str()).getXfer();
		if (x != EXS_Unknown)
			return x;
	}
	return ff.getDataset()->getOriginalXfer();
}

/* Reads a whole Part 10 file (identity transcoding). */
int slurp(const char *path, void **out, size_t *len, struct dcm_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, DCM_ERR_IO, "%s: %s", path, strerror(errno));
	struct stat st;
	int rc = DCM_OK;
	unsigned char *buf = nullptr;
	size_t got = 0;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size > kMaxBytes) {
		rc = fail(err, DCM_ERR_IO, "%s: cannot size file", path);
		goto out;
	}
	buf = static_cast<unsigned char *>(malloc((size_t)st.st_size + 1));
	if (!buf) {
		rc = fail(err, DCM_ERR_NOMEM, "out of memory");
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = fail(err, DCM_ERR_IO, "%s: read failed", path);
			goto out;
		}
		got += (size_t)n;
	}
	*out = buf;
	*len = got;
	buf = nullptr;
out:
	free(buf);
	close(fd);
	return rc;
}

/* A malloc'd byte buffer that grows; released unless taken. */
struct Growable {
	unsigned char *p = nullptr;
	size_t n = 0, cap = 0;
	~Growable()
	{
		free(p);
	}
	bool append(const void *src, size_t k)
	{
		if (k > kMaxBytes - n)
			return false;
		if (n + k > cap) {
			size_t c = std::max(n + k, cap * 2);
			void *q = realloc(p, c);
			if (!q)
				return false;
			p = static_cast<unsigned char *>(q);
			cap = c;
		}
		memcpy(p + n, src, k);
		n += k;
		return true;
	}
};

/* Serialises ff as a Part 10 file in x into a new malloc'd buffer. */
int write_mem(DcmFileFormat &ff, E_TransferSyntax x, size_t hint, void **out,
              size_t *len, struct dcm_err *err)
{
	constexpr size_t kChunk = 1 << 20;
	std::unique_ptr<Uint8[]> chunk(new Uint8[kChunk]);
	Growable g;
	g.cap = std::min(hint, kMaxBytes);
	g.p = static_cast<unsigned char *>(malloc(g.cap ? g.cap : 1));
	if (!g.p)
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	DcmOutputBufferStream os(chunk.get(), kChunk);
	ff.transferInit();
	OFCondition c;
	bool done = false;
	while (!done) {
		c = ff.write(os, x, EET_ExplicitLength, nullptr, EGL_recalcGL,
		             EPD_noChange, 0, 0, 0, EWM_createNewMeta);
		if (c.good()) {
			os.flush();
			done = os.isFlushed();
		} else if (c != EC_StreamNotifyClient) {
			break;
		}
		void *p = nullptr;
		offile_off_t n = 0;
		os.flushBuffer(p, n);
		if (n > 0 && !g.append(p, (size_t)n)) {
			ff.transferEnd();
			return fail(err, DCM_ERR_NOMEM, "output too large");
		}
	}
	ff.transferEnd();
	if (!done)
		return fail(err, DCM_ERR_INTERNAL, "write failed: %s",
		            c.text());
	*out = g.p;
	*len = g.n;
	g.p = nullptr;
	return DCM_OK;
}

/*
 * Replaces the JPEG 2000 pixel data of ds by its native decoding
 * (colour by pixel, photometric RGB when an MCT was undone).
 */
int j2k_to_native(DcmDataset *ds, E_TransferSyntax x, struct dcm_err *err)
{
	dcmi::PixelInfo pi;
	int rc = dcmi::px_info(ds, pi, err);
	if (rc != DCM_OK)
		return rc;
	size_t fb = pi.frame_bytes();
	if (fb == 0 || (uint64_t)fb * pi.frames > kMaxBytes)
		return fail(err, DCM_ERR_UNSUPPORTED, "unsupported geometry");
	dcmi::PixelInfo dec = pi;
	dec.planar = 0; /* colour by pixel */
	DcmElement *el = nullptr;
	ds->findAndGetElement(DCM_PixelData, el);
	DcmPixelSequence *seq =
	        stored_sequence(dynamic_cast<DcmPixelData *>(el), x);
	if (!seq)
		return fail(err, DCM_ERR_PARSE, "no encapsulated pixel data");
	FrameMap map; /* once: a marker scan per frame would be quadratic */
	rc = map_frames(ds, seq, x, pi.frames, map, err);
	if (rc != DCM_OK)
		return rc;
	std::vector<Uint8> all;
	all.reserve(fb * pi.frames);
	for (Uint32 f = 0; f < pi.frames; f++) {
		std::vector<Uint8> frag, one;
		rc = join_fragments(seq, map[f], frag, err);
		if (rc == DCM_OK)
			rc = j2k_decode(frag, dec, one, err);
		if (rc != DCM_OK)
			return rc;
		all.insert(all.end(), one.begin(), one.end());
	}
	if (all.size() & 1)
		all.push_back(0);
	DcmPixelData *pd = native_element(all, pi.bits_alloc);
	if (!pd)
		return fail(err, DCM_ERR_NOMEM, "pixel copy failed");
	ds->insert(pd, OFTrue);
	ds->putAndInsertString(DCM_PhotometricInterpretation,
	                       j2k_photometric(pi.photometric).c_str());
	if (pi.spp > 1)
		ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
	return DCM_OK;
}

/* Puts the stored fragments of pd under the compatible syntax `to`. */
int relabel_pixels(DcmPixelData *pd, E_TransferSyntax from, E_TransferSyntax to,
                   struct dcm_err *err)
{
	DcmPixelSequence *seq = stored_sequence(pd, from);
	if (!seq)
		return fail(err, DCM_ERR_PARSE, "no encapsulated pixel data");
	std::unique_ptr<DcmPixelSequence> copy(new DcmPixelSequence(*seq));
	pd->putOriginalRepresentation(to, nullptr, copy.release());
	return DCM_OK;
}

int transcode(const char *path, const char *ts_uid, void **out, size_t *len,
              struct dcm_err *err)
{
	E_TransferSyntax to = DcmXfer(ts_uid).getXfer();
	if (to == EXS_Unknown)
		return fail(err, DCM_ERR_UNSUPPORTED,
		            "unknown transfer syntax %s", ts_uid);
	DcmFileFormat ff;
	E_TransferSyntax from = EXS_Unknown;
	/*
	 * Everything is read now, in one pass: a lazily loaded value would be
	 * read again by name later, and the file may be renamed or evicted
	 * in between.
	 */
	int rc = dcmi::px_load(path, OFnumeric_limits<Uint32>::max(), ff, &from,
	                       err);
	if (rc != DCM_OK)
		return rc;
	DcmMetaInfo *mi = ff.getMetaInfo();
	if (from == to && mi && mi->card() > 0)
		return slurp(path, out, len, err);
	if (!can_convert(from, to))
		return fail(err, DCM_ERR_UNSUPPORTED, "cannot convert %s to %s",
		            DcmXfer(from).getXferName(),
		            DcmXfer(to).getXferName());
	DcmDataset *ds = ff.getDataset();
	size_t hint = 0;
	struct stat st;
	if (stat(path, &st) == 0)
		hint = (size_t)st.st_size + 4096;
	DcmElement *el = nullptr;
	DcmPixelData *pd = nullptr;
	if (ds->findAndGetElement(DCM_PixelData, el).good())
		pd = dynamic_cast<DcmPixelData *>(el);
	if (pd && is_native(to)) {
		dcmi::PixelInfo pi;
		if (dcmi::px_info(ds, pi, nullptr) == DCM_OK)
			hint += pi.frame_bytes() * pi.frames;
	}
	if (pd && to == EXS_JPEGLSLossy) {
		dcmi::PixelInfo pi;
		rc = dcmi::px_info(ds, pi, err);
		if (rc == DCM_OK)
			rc = jls_near_refused(pi, err);
		if (rc != DCM_OK)
			return rc;
	}
	if (pd && is_j2k(from)) {
		rc = j2k_to_native(ds, from, err);
		if (rc != DCM_OK)
			return rc;
	} else if (pd && relabel(from, to)) {
		rc = relabel_pixels(pd, from, to, err);
		if (rc != DCM_OK)
			return rc;
	}
	OFCondition c = choose_representation(*ds, to);
	if (c.bad() || !ds->canWriteXfer(to))
		return fail(err, DCM_ERR_UNSUPPORTED,
		            "cannot convert %s to %s: %s",
		            DcmXfer(from).getXferName(),
		            DcmXfer(to).getXferName(), c.text());
	/* DCMTK's JPEG-LS encoder does not flag near-lossless output. */
	if (pd && to == EXS_JPEGLSLossy && !is_lossy(from)) {
		ds->putAndInsertString(DCM_LossyImageCompression, "01");
		ds->putAndInsertString(DCM_LossyImageCompressionMethod,
		                       "ISO_14495_1");
	}
	return write_mem(ff, to, hint, out, len, err);
}

/* ---- frames -------------------------------------------------------------- */

/* The syntax "as stored" frames are returned in. */
E_TransferSyntax frame_xfer(E_TransferSyntax stored)
{
	if (stored == EXS_BigEndianExplicit ||
	    stored == EXS_DeflatedLittleEndianExplicit)
		return EXS_LittleEndianExplicit; /* bytes returned LE */
	return stored;
}

int get_frame(const char *path, unsigned n, const char *ts_uid,
              std::vector<Uint8> &bytes, E_TransferSyntax *ts_out,
              struct dcm_err *err)
{
	DcmFileFormat ff;
	E_TransferSyntax from = EXS_Unknown;
	int rc = dcmi::px_load(path, kLazyRead, ff, &from, err);
	if (rc != DCM_OK)
		return rc;
	E_TransferSyntax to = frame_xfer(from);
	if (ts_uid) {
		to = DcmXfer(ts_uid).getXfer();
		if (to == EXS_Unknown)
			return fail(err, DCM_ERR_UNSUPPORTED,
			            "unknown transfer syntax %s", ts_uid);
	}
	DcmDataset *ds = ff.getDataset();
	dcmi::PixelInfo pi;
	rc = dcmi::px_info(ds, pi, err);
	if (rc != DCM_OK)
		return rc;
	if (n < 1 || n > pi.frames)
		return fail(err, DCM_ERR_NOT_FOUND, "frame %u of %u", n,
		            (unsigned)pi.frames);
	if (!can_convert(from, to) && !(is_native(from) && is_native(to)))
		return fail(err, DCM_ERR_UNSUPPORTED, "cannot convert %s to %s",
		            DcmXfer(from).getXferName(),
		            DcmXfer(to).getXferName());
	bool native_from = is_native(from);
	if (!native_from && (to == from || relabel(from, to))) {
		DcmElement *el = nullptr;
		ds->findAndGetElement(DCM_PixelData, el);
		DcmPixelSequence *seq =
		        stored_sequence(dynamic_cast<DcmPixelData *>(el), from);
		if (!seq)
			return fail(err, DCM_ERR_PARSE,
			            "no encapsulated pixel data");
		FrameMap map;
		rc = map_frames(ds, seq, from, pi.frames, map, err);
		if (rc == DCM_OK)
			rc = join_fragments(seq, map[n - 1], bytes, err);
		*ts_out = to;
		return rc;
	}
	OFString pm;
	rc = dcmi::px_native_frame(ds, from, pi, n, bytes, &pm, err);
	if (rc != DCM_OK)
		return rc;
	if (is_native(to)) {
		if (to == EXS_BigEndianExplicit)
			swap_samples(bytes, pi.bits_alloc);
		*ts_out = to == EXS_DeflatedLittleEndianExplicit
		                  ? EXS_LittleEndianExplicit
		                  : to;
		return DCM_OK;
	}
	std::vector<Uint8> enc;
	rc = dcmtk_encode(bytes, pi, pm, ds, to, enc, err);
	if (rc != DCM_OK)
		return rc;
	bytes.swap(enc);
	*ts_out = to;
	return DCM_OK;
}

} // namespace

namespace dcmi
{

size_t PixelInfo::frame_bytes() const
{
	if (bits_alloc != 8 && bits_alloc != 16 && bits_alloc != 32)
		return 0;
	return (size_t)rows * cols * spp * (bits_alloc / 8);
}

int px_load(const char *path, Uint32 max_read, DcmFileFormat &ff,
            E_TransferSyntax *xfer, struct dcm_err *err)
{
	OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange, max_read,
	                            ERM_autoDetect);
	if (c.bad()) {
		struct stat st;
		if (stat(path, &st) != 0)
			return fail(err, DCM_ERR_IO, "%s: %s", path,
			            strerror(errno));
		return fail(err, DCM_ERR_PARSE, "%s: %s", path, c.text());
	}
	*xfer = stored_xfer(ff);
	if (*xfer == EXS_Unknown)
		return fail(err, DCM_ERR_PARSE, "%s: unknown transfer syntax",
		            path);
	return DCM_OK;
}

int px_info(DcmItem *ds, PixelInfo &pi, struct dcm_err *err)
{
	if (!ds->tagExists(DCM_PixelData))
		return fail(err, DCM_ERR_ARG, "no pixel data");
	if (ds->findAndGetUint16(DCM_Rows, pi.rows).bad() ||
	    ds->findAndGetUint16(DCM_Columns, pi.cols).bad() ||
	    ds->findAndGetUint16(DCM_BitsAllocated, pi.bits_alloc).bad() ||
	    pi.rows == 0 || pi.cols == 0 || pi.bits_alloc == 0)
		return fail(err, DCM_ERR_PARSE, "incomplete pixel module");
	if (ds->findAndGetUint16(DCM_SamplesPerPixel, pi.spp).bad() ||
	    pi.spp == 0)
		pi.spp = 1;
	if (ds->findAndGetUint16(DCM_BitsStored, pi.bits_stored).bad())
		pi.bits_stored = pi.bits_alloc;
	if (ds->findAndGetUint16(DCM_HighBit, pi.high_bit).bad())
		pi.high_bit = (Uint16)(pi.bits_stored - 1);
	if (ds->findAndGetUint16(DCM_PixelRepresentation, pi.pixel_rep).bad())
		pi.pixel_rep = 0;
	if (ds->findAndGetUint16(DCM_PlanarConfiguration, pi.planar).bad())
		pi.planar = 0;
	Sint32 f = 0;
	if (ds->findAndGetSint32(DCM_NumberOfFrames, f).good() && f > 0)
		pi.frames = (Uint32)f;
	else
		pi.frames = 1;
	if (ds->findAndGetOFString(DCM_PhotometricInterpretation,
	                           pi.photometric)
	            .bad() ||
	    pi.photometric.empty())
		pi.photometric = pi.spp == 1 ? "MONOCHROME2" : "RGB";
	return DCM_OK;
}

int px_native_frame(DcmDataset *ds, E_TransferSyntax xfer, const PixelInfo &pi,
                    unsigned frame, std::vector<Uint8> &out,
                    OFString *photometric, struct dcm_err *err)
{
	if (frame < 1 || frame > pi.frames)
		return fail(err, DCM_ERR_NOT_FOUND, "frame %u of %u", frame,
		            (unsigned)pi.frames);
	size_t fb = pi.frame_bytes();
	if (fb == 0 || fb > kMaxBytes)
		return fail(err, DCM_ERR_UNSUPPORTED, "BitsAllocated %u",
		            (unsigned)pi.bits_alloc);
	DcmElement *el = nullptr;
	DcmPixelData *pd = nullptr;
	if (ds->findAndGetElement(DCM_PixelData, el).good())
		pd = dynamic_cast<DcmPixelData *>(el);
	if (!pd)
		return fail(err, DCM_ERR_ARG, "no pixel data");
	*photometric = pi.photometric;
	if (is_native(xfer)) {
		uint64_t off = (uint64_t)fb * (frame - 1);
		if (off + fb > pd->getLength())
			return fail(err, DCM_ERR_PARSE,
			            "pixel data shorter than frame %u", frame);
		out.resize(fb);
		DcmFileCache fc;
		OFCondition c =
		        pd->getPartialValue(out.data(), (Uint32)off, (Uint32)fb,
		                            &fc, EBO_LittleEndian);
		if (c.bad())
			return fail(err, DCM_ERR_IO, "pixel data: %s",
			            c.text());
		return DCM_OK;
	}
	if (!is_j2k(xfer) && !is_dcmtk_codec(xfer))
		return fail(err, DCM_ERR_UNSUPPORTED, "no decoder for %s",
		            DcmXfer(xfer).getXferName());
	DcmPixelSequence *seq = stored_sequence(pd, xfer);
	if (!seq)
		return fail(err, DCM_ERR_PARSE, "no encapsulated pixel data");
	FrameMap map;
	int rc = map_frames(ds, seq, xfer, pi.frames, map, err);
	std::vector<Uint8> frag;
	if (rc == DCM_OK)
		rc = join_fragments(seq, map[frame - 1], frag, err);
	if (rc != DCM_OK)
		return rc;
	if (is_j2k(xfer)) {
		*photometric = j2k_photometric(pi.photometric);
		return j2k_decode(frag, pi, out, err);
	}
	Uint16 planar = 0;
	rc = dcmtk_decode(frag, xfer, pi, ds, out, photometric, &planar, err);
	if (rc != DCM_OK)
		return rc;
	if (out.size() < fb)
		return fail(err, DCM_ERR_PARSE, "frame %u decodes short",
		            frame);
	out.resize(fb);
	if (pi.spp > 1 && planar != pi.planar)
		replan(out, pi, pi.planar == 1);
	return DCM_OK;
}

} // namespace dcmi

extern "C" int dcm_can_transcode(const char *from, const char *to)
{
	if (!from || !to)
		return 0;
	try {
		if (strcmp(from, to) == 0)
			return 1;
		return can_convert(DcmXfer(from).getXfer(),
		                   DcmXfer(to).getXfer())
		               ? 1
		               : 0;
	} catch (...) {
		return 0;
	}
}

extern "C" int dcm_transcode_file(const char *path, const char *ts_uid,
                                  void **out, size_t *len, struct dcm_err *err)
{
	if (!path || !ts_uid || !out || !len)
		return fail(err, DCM_ERR_ARG, "NULL argument");
	try {
		return transcode(path, ts_uid, out, len, err);
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception transcoding %s",
		            path);
	}
}

extern "C" int dcm_frame(const char *path, unsigned frame, const char *ts_uid,
                         void **out, size_t *len, char *ts_out,
                         struct dcm_err *err)
{
	if (!path || !out || !len || !ts_out)
		return fail(err, DCM_ERR_ARG, "NULL argument");
	try {
		std::vector<Uint8> bytes;
		E_TransferSyntax x = EXS_Unknown;
		int rc = get_frame(path, frame, ts_uid, bytes, &x, err);
		if (rc != DCM_OK)
			return rc;
		void *p = malloc(bytes.empty() ? 1 : bytes.size());
		if (!p)
			return fail(err, DCM_ERR_NOMEM, "out of memory");
		if (!bytes.empty())
			memcpy(p, bytes.data(), bytes.size());
		dcmi::copy_str(ts_out, 65, DcmXfer(x).getXferID());
		*out = p;
		*len = bytes.size();
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception reading %s",
		            path);
	}
}
