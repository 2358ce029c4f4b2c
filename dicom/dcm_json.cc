/*
 * dcm_json.cc - DICOM JSON model (PS3.18 F.2) writer over DcmItem. Written
 * by hand rather than with DcmDataset::writeJson so that DS/IS values that
 * are not valid numbers, odd character sets and bulk data are handled the
 * way dcm.h documents. Output is always valid JSON and valid UTF-8.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm_internal.h"

#include "dcmtk/dcmdata/dcspchrs.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace
{

/* Appends s as UTF-8, mapping each byte of an invalid sequence from
 * Latin-1 so that the output is always valid UTF-8. */
void append_utf8(std::string &out, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t len = 0;
		if (c < 0x80)
			len = 1;
		else if (c >= 0xC2 && c <= 0xDF)
			len = 2;
		else if (c >= 0xE0 && c <= 0xEF)
			len = 3;
		else if (c >= 0xF0 && c <= 0xF4)
			len = 4;
		bool ok = len > 0 && i + len <= n;
		for (size_t k = 1; ok && k < len; k++)
			ok = (p[i + k] & 0xC0) == 0x80;
		if (ok && len == 3) {
			/* overlongs and surrogates */
			if ((c == 0xE0 && p[i + 1] < 0xA0) ||
			    (c == 0xED && p[i + 1] >= 0xA0))
				ok = false;
		}
		if (ok && len == 4) {
			if ((c == 0xF0 && p[i + 1] < 0x90) ||
			    (c == 0xF4 && p[i + 1] >= 0x90))
				ok = false;
		}
		if (ok) {
			out.append(s + i, len);
			i += len;
		} else {
			out.push_back((char)(0xC0 | (c >> 6)));
			out.push_back((char)(0x80 | (c & 0x3F)));
			i++;
		}
	}
}

/* Appends a JSON string literal (quotes included) of UTF-8 text. */
void append_json_str(std::string &out, const std::string &utf8)
{
	out.push_back('"');
	for (unsigned char c : utf8) {
		switch (c) {
		case '"':
			out.append("\\\"");
			break;
		case '\\':
			out.append("\\\\");
			break;
		case '\b':
			out.append("\\b");
			break;
		case '\f':
			out.append("\\f");
			break;
		case '\n':
			out.append("\\n");
			break;
		case '\r':
			out.append("\\r");
			break;
		case '\t':
			out.append("\\t");
			break;
		default:
			if (c < 0x20) {
				char b[8];
				snprintf(b, sizeof(b), "\\u%04x", c);
				out.append(b);
			} else {
				out.push_back((char)c);
			}
		}
	}
	out.push_back('"');
}

std::string trim(const std::string &s)
{
	size_t b = 0, e = s.size();
	while (b < e && (s[b] == ' ' || s[b] == '\0'))
		b++;
	while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\0'))
		e--;
	return s.substr(b, e - b);
}

std::vector<std::string> split(const std::string &s, char sep)
{
	std::vector<std::string> v;
	size_t start = 0;
	for (;;) {
		size_t p = s.find(sep, start);
		if (p == std::string::npos) {
			v.push_back(s.substr(start));
			return v;
		}
		v.push_back(s.substr(start, p - start));
		start = p + 1;
	}
}

bool all_digits(const std::string &s, size_t b, size_t e)
{
	if (b >= e)
		return false;
	for (size_t i = b; i < e; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * Turns an IS/DS value into JSON number text. Accepts
 * [+-]? digits? (. digits?)? ([eE] [+-]? digits)? with at least one mantissa
 * digit (DS), or [+-]? digits (IS). Returns false if not a number.
 */
bool json_number(const std::string &v, bool integer, std::string &out)
{
	size_t i = 0, n = v.size();
	bool neg = false;
	if (i < n && (v[i] == '+' || v[i] == '-'))
		neg = v[i++] == '-';
	size_t ib = i;
	while (i < n && v[i] >= '0' && v[i] <= '9')
		i++;
	std::string ip = v.substr(ib, i - ib), fp, ex;
	bool exneg = false;
	if (!integer && i < n && v[i] == '.') {
		size_t fb = ++i;
		while (i < n && v[i] >= '0' && v[i] <= '9')
			i++;
		fp = v.substr(fb, i - fb);
	}
	if (ip.empty() && fp.empty())
		return false;
	if (!integer && i < n && (v[i] == 'e' || v[i] == 'E')) {
		i++;
		if (i < n && (v[i] == '+' || v[i] == '-'))
			exneg = v[i++] == '-';
		size_t eb = i;
		while (i < n && v[i] >= '0' && v[i] <= '9')
			i++;
		ex = v.substr(eb, i - eb);
		if (!all_digits(ex, 0, ex.size()))
			return false;
	}
	if (i != n)
		return false;
	size_t z = 0;
	while (z + 1 < ip.size() && ip[z] == '0')
		z++;
	ip = ip.empty() ? "0" : ip.substr(z);
	out.clear();
	if (neg)
		out.push_back('-');
	out += ip;
	if (!fp.empty())
		out += "." + fp;
	if (!ex.empty())
		out += std::string("e") + (exneg ? "-" : "") + ex;
	return true;
}

class JsonWriter
{
      public:
	JsonWriter(size_t threshold, const char *prefix)
	    : threshold_(threshold), prefix_(prefix)
	{
	}
	std::string out;
	void item(DcmItem *it, const std::string &path,
	          DcmSpecificCharacterSet *parent_cs);

      private:
	size_t threshold_;
	const char *prefix_;
	void element(DcmElement *el, const std::string &path,
	             DcmSpecificCharacterSet *cs);
	std::string text(const OFString &raw, DcmEVR vr,
	                 DcmSpecificCharacterSet *cs);
};

bool is_binary(DcmEVR vr)
{
	switch (vr) {
	case EVR_OB:
	case EVR_OD:
	case EVR_OF:
	case EVR_OL:
	case EVR_OV:
	case EVR_OW:
	case EVR_UN:
	case EVR_ox:
	case EVR_px:
	case EVR_lt:
	case EVR_pixelSQ:
	case EVR_UNKNOWN:
	case EVR_UNKNOWN2B:
		return true;
	default:
		return false;
	}
}

bool charset_vr(DcmEVR vr)
{
	switch (vr) {
	case EVR_LO:
	case EVR_LT:
	case EVR_PN:
	case EVR_SH:
	case EVR_ST:
	case EVR_UC:
	case EVR_UT:
		return true;
	default:
		return false;
	}
}

/* Raw bytes of a text value of VR vr, in the character set cs (NULL =
 * default repertoire), as valid UTF-8: bytes that cannot be converted are
 * taken as Latin-1. */
std::string to_utf8(const OFString &raw, DcmEVR vr, DcmSpecificCharacterSet *cs)
{
	std::string out;
	OFString conv;
	const OFString *src = &raw;
	if (cs && charset_vr(vr)) {
		const char *delim =
		        vr == EVR_PN ? "\\^="
		        : (vr == EVR_LT || vr == EVR_ST || vr == EVR_UT)
		                ? "\r\n\t\f"
		                : "\\";
		if (cs->convertString(raw, conv, OFString(delim)).good())
			src = &conv;
	}
	append_utf8(out, src->c_str(), src->length());
	return out;
}

/* Raw bytes of a text value converted to UTF-8 (best effort). */
std::string JsonWriter::text(const OFString &raw, DcmEVR vr,
                             DcmSpecificCharacterSet *cs)
{
	return to_utf8(raw, vr, cs);
}

void JsonWriter::item(DcmItem *it, const std::string &path,
                      DcmSpecificCharacterSet *parent_cs)
{
	/* An item may carry its own Specific Character Set. */
	std::unique_ptr<DcmSpecificCharacterSet> own;
	DcmSpecificCharacterSet *cs = parent_cs;
	OFString scs;
	if (it->findAndGetOFStringArray(DCM_SpecificCharacterSet, scs, OFFalse)
	            .good()) {
		own.reset(new DcmSpecificCharacterSet);
		if (own->selectCharacterSet(scs, "ISO_IR 192").good())
			cs = own.get();
		else
			cs = nullptr; /* unknown: Latin-1 fallback */
	}
	out.push_back('{');
	bool first = true;
	for (unsigned long i = 0; i < it->card(); i++) {
		DcmElement *el = it->getElement(i);
		const DcmTag &t = el->getTag();
		if (t.getGroup() == 0x0002 || t.getElement() == 0x0000)
			continue;
		if (!first)
			out.push_back(',');
		first = false;
		char key[16];
		snprintf(key, sizeof(key), "\"%04X%04X\":", t.getGroup(),
		         t.getElement());
		out.append(key);
		std::string p = path;
		if (!p.empty())
			p.push_back('/');
		p.append(key + 1, 8);
		element(el, p, cs);
	}
	out.push_back('}');
}

void JsonWriter::element(DcmElement *el, const std::string &path,
                         DcmSpecificCharacterSet *cs)
{
	DcmEVR evr = el->getVR();
	DcmVR vr(evr);
	const char *vrname = vr.getValidVRName();
	if (evr == EVR_ox || evr == EVR_px || evr == EVR_pixelSQ)
		vrname = "OB";
	else if (evr == EVR_xs)
		vrname = "US";
	else if (evr == EVR_lt)
		vrname = "OW";
	out.append("{\"vr\":\"");
	out.append(vrname);
	out.push_back('"');

	const DcmTag &t = el->getTag();
	if (evr == EVR_SQ) {
		auto *sq = static_cast<DcmSequenceOfItems *>(el);
		if (sq->card() > 0) {
			out.append(",\"Value\":[");
			for (unsigned long i = 0; i < sq->card(); i++) {
				if (i)
					out.push_back(',');
				item(sq->getItem(i),
				     path + "/" + std::to_string(i), cs);
			}
			out.push_back(']');
		}
		out.push_back('}');
		return;
	}
	Uint32 len = el->getLength();
	bool pixel = t == DCM_PixelData || t == DCM_FloatPixelData ||
	             t == DCM_DoubleFloatPixelData;
	if (len == 0 && !pixel) {
		out.push_back('}');
		return;
	}
	if (pixel || is_binary(evr) || (threshold_ > 0 && len > threshold_)) {
		if (prefix_) {
			out.append(",\"BulkDataURI\":");
			append_json_str(out, std::string(prefix_) + path);
		}
		out.push_back('}');
		return;
	}

	out.append(",\"Value\":[");
	unsigned long vm = el->getVM();
	char nb[64];
	switch (evr) {
	case EVR_US:
	case EVR_xs:
		for (unsigned long i = 0; i < vm; i++) {
			Uint16 v = 0;
			el->getUint16(v, i);
			snprintf(nb, sizeof(nb), "%s%u", i ? "," : "", v);
			out.append(nb);
		}
		break;
	case EVR_SS:
		for (unsigned long i = 0; i < vm; i++) {
			Sint16 v = 0;
			el->getSint16(v, i);
			snprintf(nb, sizeof(nb), "%s%d", i ? "," : "", v);
			out.append(nb);
		}
		break;
	case EVR_UL:
		for (unsigned long i = 0; i < vm; i++) {
			Uint32 v = 0;
			el->getUint32(v, i);
			snprintf(nb, sizeof(nb), "%s%lu", i ? "," : "",
			         (unsigned long)v);
			out.append(nb);
		}
		break;
	case EVR_SL:
		for (unsigned long i = 0; i < vm; i++) {
			Sint32 v = 0;
			el->getSint32(v, i);
			snprintf(nb, sizeof(nb), "%s%ld", i ? "," : "",
			         (long)v);
			out.append(nb);
		}
		break;
	case EVR_UV:
		for (unsigned long i = 0; i < vm; i++) {
			Uint64 v = 0;
			el->getUint64(v, i);
			snprintf(nb, sizeof(nb), "%s%llu", i ? "," : "",
			         (unsigned long long)v);
			out.append(nb);
		}
		break;
	case EVR_SV:
		for (unsigned long i = 0; i < vm; i++) {
			Sint64 v = 0;
			el->getSint64(v, i);
			snprintf(nb, sizeof(nb), "%s%lld", i ? "," : "",
			         (long long)v);
			out.append(nb);
		}
		break;
	case EVR_FL:
	case EVR_FD:
		for (unsigned long i = 0; i < vm; i++) {
			double v = 0;
			if (evr == EVR_FL) {
				Float32 f = 0;
				el->getFloat32(f, i);
				v = f;
			} else {
				el->getFloat64(v, i);
			}
			if (i)
				out.push_back(',');
			if (std::isfinite(v)) {
				snprintf(nb, sizeof(nb),
				         evr == EVR_FL ? "%.9g" : "%.17g", v);
				out.append(nb);
			} else {
				append_json_str(out, std::isnan(v) ? "NaN"
				                     : v > 0       ? "Infinity"
				                             : "-Infinity");
			}
		}
		break;
	case EVR_AT:
		for (unsigned long i = 0; i < vm; i++) {
			DcmTagKey k;
			static_cast<DcmAttributeTag *>(el)->getTagVal(k, i);
			snprintf(nb, sizeof(nb), "%s\"%04X%04X\"", i ? "," : "",
			         k.getGroup(), k.getElement());
			out.append(nb);
		}
		break;
	default: {
		/* string VRs: raw value, split ourselves */
		OFString raw;
		el->getOFStringArray(raw, OFFalse);
		bool single = evr == EVR_LT || evr == EVR_ST || evr == EVR_UT ||
		              evr == EVR_UR;
		std::vector<std::string> vals;
		std::string sraw(raw.c_str(), raw.length());
		if (single)
			vals.push_back(sraw);
		else
			vals = split(sraw, '\\');
		for (size_t i = 0; i < vals.size(); i++) {
			if (i)
				out.push_back(',');
			std::string v = vals[i];
			if (single) {
				size_t e = v.size();
				while (e > 0 &&
				       (v[e - 1] == ' ' || v[e - 1] == '\0'))
					e--;
				v.erase(e);
			} else {
				v = trim(v);
			}
			if (v.empty()) {
				out.append("null");
				continue;
			}
			std::string num;
			if ((evr == EVR_IS || evr == EVR_DS) &&
			    json_number(v, evr == EVR_IS, num)) {
				out.append(num);
				continue;
			}
			if (evr == EVR_PN) {
				std::vector<std::string> g = split(
				        text(OFString(v.c_str()), evr, cs),
				        '=');
				static const char *names[] = { "Alphabetic",
					                       "Ideographic",
					                       "Phonetic" };
				out.push_back('{');
				bool f = true;
				for (size_t k = 0; k < g.size() && k < 3; k++) {
					if (g[k].empty())
						continue;
					if (!f)
						out.push_back(',');
					f = false;
					append_json_str(out, names[k]);
					out.push_back(':');
					append_json_str(out, g[k]);
				}
				out.push_back('}');
				continue;
			}
			append_json_str(out, text(OFString(v.c_str(), v.size()),
			                          evr, cs));
		}
	}
	}
	out.append("]}");
}

} // namespace

extern "C" int dcm_ds_to_json(const struct dcm_ds *ds, size_t bulk_threshold,
                              const char *bulk_prefix, char **out,
                              size_t *out_len, struct dcm_err *err)
{
	if (!ds || !ds->ds || !out)
		return dcmi::fail(err, DCM_ERR_ARG, "NULL argument");
	try {
		JsonWriter w(bulk_threshold, bulk_prefix);
		w.item(ds->ds, std::string(), nullptr);
		char *buf = (char *)malloc(w.out.size() + 1);
		if (!buf)
			return dcmi::fail(err, DCM_ERR_NOMEM, "out of memory");
		memcpy(buf, w.out.data(), w.out.size());
		buf[w.out.size()] = '\0';
		*out = buf;
		if (out_len)
			*out_len = w.out.size();
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		return dcmi::fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return dcmi::fail(err, DCM_ERR_INTERNAL,
		                  "exception converting to JSON");
	}
}

std::string dcmi::text_utf8(DcmItem *item, const OFString &raw, DcmEVR vr)
{
	OFString scs;
	DcmSpecificCharacterSet cs;
	bool have = item->findAndGetOFStringArray(DCM_SpecificCharacterSet, scs,
	                                          OFFalse)
	                    .good() &&
	            cs.selectCharacterSet(scs, "ISO_IR 192").good();
	return to_utf8(raw, vr, have ? &cs : nullptr);
}
