/*
 * imgenc.h - encodes 8-bit grey or RGB pixels (rows top to bottom, no
 * padding) to JPEG (libjpeg-turbo) or PNG (zlib, chunks written here), for
 * rendered DICOM frames. No state: safe from any thread.
 */
#ifndef DRIMBOX_IMGENC_H
#define DRIMBOX_IMGENC_H

#include <stddef.h>

/*
 * Encodes w x h pixels of `channels` (1 grey, 3 RGB) bytes each as a
 * baseline JPEG of quality 1..100. On success returns 0 and sets *out to a
 * malloc'd buffer the caller frees and *len to its size; returns -1 on bad
 * arguments (zero size, other channel counts, quality out of range, more
 * than 65500 pixels a side) or allocation failure, leaving *out untouched.
 */
int imgenc_jpeg(const unsigned char *pixels, unsigned w, unsigned h,
                int channels, int quality, unsigned char **out, size_t *len);

/*
 * Same as imgenc_jpeg() for PNG (8-bit grey or truecolour, no interlace,
 * scanline filter "Sub"). Sides up to 65535 pixels.
 */
int imgenc_png(const unsigned char *pixels, unsigned w, unsigned h,
               int channels, unsigned char **out, size_t *len);

#endif
