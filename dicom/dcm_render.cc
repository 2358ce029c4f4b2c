/*
 * dcm_render.cc - one frame to 8-bit display pixels with DCMTK's DicomImage
 * (modality LUT, VOI window, MONOCHROME1, colour models, down-scaling).
 * Native pixel data is read with partial access (only the frame asked for);
 * encapsulated frames are decoded first by px_native_frame() (which also
 * covers JPEG 2000 through OpenJPEG) into a temporary single-frame dataset.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm_internal.h"

#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmimage/diregist.h" /* colour support for DicomImage */
#include "dcmtk/dcmimgle/dcmimage.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

using dcmi::fail;

namespace
{

/* Elements not copied into the temporary dataset of a decoded frame. */
bool skip_for_render(const DcmTagKey &t)
{
	if (t.getGroup() == 0x7FE0)
		return true; /* pixel data and offset tables */
	if ((t.getGroup() & 0xFF01) == 0x6000 && t.getElement() == 0x3000)
		return true; /* overlay data */
	return t == DCM_NumberOfFrames || t == DCM_PlanarConfiguration;
}

/*
 * A single-frame native copy of ds (without its bulk data) holding the
 * decoded frame n.
 */
int decoded_dataset(DcmDataset *ds, E_TransferSyntax xfer,
                    const dcmi::PixelInfo &pi, unsigned n, DcmDataset &tmp,
                    struct dcm_err *err)
{
	std::vector<Uint8> bytes;
	OFString pm;
	int rc = dcmi::px_native_frame(ds, xfer, pi, n, bytes, &pm, err);
	if (rc != DCM_OK)
		return rc;
	for (unsigned long i = 0; i < ds->card(); i++) {
		DcmElement *el = ds->getElement(i);
		if (skip_for_render(el->getTag()))
			continue;
		tmp.insert(static_cast<DcmElement *>(el->clone()), OFTrue);
	}
	tmp.putAndInsertString(DCM_PhotometricInterpretation, pm.c_str());
	if (pi.spp > 1)
		tmp.putAndInsertUint16(DCM_PlanarConfiguration, pi.planar);
	if (bytes.size() & 1)
		bytes.push_back(0);
	std::unique_ptr<DcmPixelData> pd(new DcmPixelData(
	        DcmTag(DCM_PixelData, pi.bits_alloc > 8 ? EVR_OW : EVR_OB)));
	OFCondition c;
	if (pi.bits_alloc > 8) {
		std::vector<Uint16> w(bytes.size() / 2);
		for (size_t i = 0; i < w.size(); i++)
			w[i] = (Uint16)(bytes[2 * i] | bytes[2 * i + 1] << 8);
		c = pd->putUint16Array(w.data(), w.size());
	} else {
		c = pd->putUint8Array(bytes.data(), bytes.size());
	}
	if (c.bad())
		return fail(err, DCM_ERR_NOMEM, "pixel copy failed");
	tmp.insert(pd.release(), OFTrue);
	return DCM_OK;
}

/* Output size fitting max_w x max_h, aspect kept, never enlarged. */
void fit(unsigned long w, unsigned long h, unsigned max_w, unsigned max_h,
         unsigned long *ow, unsigned long *oh)
{
	double f = 1.0;
	if (max_w && w > max_w)
		f = std::min(f, (double)max_w / (double)w);
	if (max_h && h > max_h)
		f = std::min(f, (double)max_h / (double)h);
	*ow = w;
	*oh = h;
	if (f < 1.0) {
		*ow = (unsigned long)std::max(1.0, std::floor(w * f + 0.5));
		*oh = (unsigned long)std::max(1.0, std::floor(h * f + 0.5));
		if (max_w && *ow > max_w)
			*ow = max_w;
		if (max_h && *oh > max_h)
			*oh = max_h;
	}
}

int render(const char *path, const struct dcm_render_opts *o,
           unsigned char **pixels, unsigned *width, unsigned *height,
           int *channels, struct dcm_err *err)
{
	DcmFileFormat ff;
	E_TransferSyntax xfer = EXS_Unknown;
	int rc = dcmi::px_load(path, 16 * 1024, ff, &xfer, err);
	if (rc != DCM_OK)
		return rc;
	DcmDataset *ds = ff.getDataset();
	dcmi::PixelInfo pi;
	rc = dcmi::px_info(ds, pi, err);
	if (rc != DCM_OK)
		return rc;
	if (o->frame < 1 || o->frame > pi.frames)
		return fail(err, DCM_ERR_NOT_FOUND, "frame %u of %u", o->frame,
		            (unsigned)pi.frames);
	DcmXfer x(xfer);
	std::unique_ptr<DicomImage> img;
	DcmDataset tmp;
	if (x.isEncapsulated()) {
		rc = decoded_dataset(ds, xfer, pi, o->frame, tmp, err);
		if (rc != DCM_OK)
			return rc == DCM_ERR_PARSE ? DCM_ERR_UNSUPPORTED : rc;
		img.reset(new DicomImage(&tmp, EXS_LittleEndianExplicit, 0UL,
		                         0UL, 1UL));
	} else {
		img.reset(new DicomImage(ds, xfer,
		                         CIF_UsePartialAccessToPixelData,
		                         (unsigned long)o->frame - 1, 1UL));
	}
	if (img->getStatus() != EIS_Normal)
		return fail(err, DCM_ERR_UNSUPPORTED, "cannot render: %s",
		            DicomImage::getString(img->getStatus()));
	bool mono = img->isMonochrome();
	double center = 0, wwidth = 0;
	if (mono) {
		/* Chosen on the full image, re-applied after scaling. */
		bool set = false;
		if (o->has_window && o->width > 0)
			set = img->setWindow(o->center, o->width) != 0;
		if (!set && img->getWindowCount() > 0)
			set = img->setWindow(0) != 0;
		if (!set)
			img->setMinMaxWindow(0);
		if (!img->getWindow(center, wwidth))
			wwidth = 0;
	}
	unsigned long w = img->getWidth(), h = img->getHeight(), ow, oh;
	fit(w, h, o->max_w, o->max_h, &ow, &oh);
	if (ow != w || oh != h) {
		DicomImage *s = img->createScaledImage(ow, oh, 1, 0);
		if (!s || s->getStatus() != EIS_Normal) {
			delete s;
			return fail(err, DCM_ERR_INTERNAL, "scaling failed");
		}
		img.reset(s);
		if (mono && wwidth > 0)
			img->setWindow(center, wwidth);
	}
	int ch = mono ? 1 : 3;
	unsigned long size = img->getOutputDataSize(8);
	if (size != (unsigned long)img->getWidth() * img->getHeight() * ch)
		return fail(err, DCM_ERR_INTERNAL, "unexpected output size");
	const void *data = img->getOutputData(8, 0, 0);
	if (!data)
		return fail(err, DCM_ERR_UNSUPPORTED, "no output data");
	unsigned char *p = static_cast<unsigned char *>(malloc(size));
	if (!p)
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	memcpy(p, data, size);
	*pixels = p;
	*width = (unsigned)img->getWidth();
	*height = (unsigned)img->getHeight();
	*channels = ch;
	return DCM_OK;
}

} // namespace

extern "C" int dcm_render(const char *path, const struct dcm_render_opts *opts,
                          unsigned char **pixels, unsigned *width,
                          unsigned *height, int *channels, struct dcm_err *err)
{
	if (!path || !opts || !pixels || !width || !height || !channels)
		return fail(err, DCM_ERR_ARG, "NULL argument");
	try {
		return render(path, opts, pixels, width, height, channels, err);
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception rendering %s",
		            path);
	}
}
