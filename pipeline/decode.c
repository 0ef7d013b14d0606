/* decode.c: bounded zstd decompression (decode.h). */
#include "decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int winnow_decoder_init(winnow_decoder_t *d, size_t max_output,
			unsigned window_log_max)
{
	d->max_output = max_output;
	d->dctx = ZSTD_createDCtx();
	if (!d->dctx)
		return -1;
	ZSTD_DCtx_setParameter(d->dctx, ZSTD_d_windowLogMax, (int)window_log_max);
	return 0;
}

void winnow_decoder_destroy(winnow_decoder_t *d)
{
	ZSTD_freeDCtx(d->dctx);
	d->dctx = NULL;
}

/* Makes room for at least `want` bytes, at most the cap. */
static int grow(char **buf, size_t *cap, size_t want, size_t max)
{
	if (want <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 64 * 1024;
	while (ncap < want)
		ncap *= 2;
	if (ncap > max)
		ncap = max;
	char *nb = realloc(*buf, ncap ? ncap : 1);
	if (!nb)
		return -1;
	*buf = nb;
	*cap = ncap;
	return 0;
}

winnow_doc_status_t winnow_decode(winnow_decoder_t *d, const void *in,
				  size_t in_len, char **buf, size_t *cap,
				  size_t *out_len, char *reason,
				  size_t reason_size)
{
	const unsigned char *p = in;
	*out_len = 0;
	if (in_len == 0) {
		snprintf(reason, reason_size, "empty value (0 bytes)");
		return WINNOW_DOC_EMPTY;
	}
	if (in_len < 4 || p[0] != 0x28 || p[1] != 0xB5 || p[2] != 0x2F ||
	    p[3] != 0xFD) {
		snprintf(reason, reason_size,
			 "value of %zu bytes is not a zstd frame (no zstd magic number)",
			 in_len);
		return WINNOW_DOC_NOT_ZSTD;
	}
	/* A declared size over the cap is refused before any work. */
	unsigned long long declared = ZSTD_getFrameContentSize(in, in_len);
	if (declared != ZSTD_CONTENTSIZE_UNKNOWN &&
	    declared != ZSTD_CONTENTSIZE_ERROR && declared > d->max_output) {
		snprintf(reason, reason_size,
			 "zstd frame declares %llu bytes, over the cap of %zu",
			 declared, d->max_output);
		return WINNOW_DOC_TOO_LARGE;
	}

	ZSTD_DCtx_reset(d->dctx, ZSTD_reset_session_only);
	ZSTD_inBuffer src = { in, in_len, 0 };
	size_t first = declared <= d->max_output ? (size_t)declared : 0;
	if (grow(buf, cap, first ? first : in_len * 4, d->max_output)) {
		snprintf(reason, reason_size, "out of memory decompressing");
		return WINNOW_DOC_ENGINE_ERROR;
	}
	for (;;) {
		ZSTD_outBuffer dst = { *buf, *cap, *out_len };
		size_t ret = ZSTD_decompressStream(d->dctx, &dst, &src);
		*out_len = dst.pos;
		if (ZSTD_isError(ret)) {
			if (ZSTD_getErrorCode(ret) == ZSTD_error_frameParameter_windowTooLarge) {
				snprintf(reason, reason_size,
					 "zstd frame needs a larger window than this daemon allows (%s)",
					 ZSTD_getErrorName(ret));
				return WINNOW_DOC_TOO_LARGE;
			}
			snprintf(reason, reason_size, "corrupt zstd frame: %s",
				 ZSTD_getErrorName(ret));
			return WINNOW_DOC_CORRUPT_ZSTD;
		}
		if (ret == 0) { /* the frame is complete */
			if (src.pos < src.size) {
				snprintf(reason, reason_size,
					 "%zu bytes after the end of the zstd frame",
					 src.size - src.pos);
				return WINNOW_DOC_CORRUPT_ZSTD;
			}
			return WINNOW_DOC_OK;
		}
		if (dst.pos == dst.size) {
			if (*cap >= d->max_output) {
				snprintf(reason, reason_size,
					 "decompressed document exceeds the cap of %zu bytes (from %zu compressed bytes)",
					 d->max_output, in_len);
				return WINNOW_DOC_TOO_LARGE;
			}
			if (grow(buf, cap, *cap + 1, d->max_output)) {
				snprintf(reason, reason_size, "out of memory decompressing");
				return WINNOW_DOC_ENGINE_ERROR;
			}
			continue;
		}
		if (src.pos == src.size) {
			snprintf(reason, reason_size,
				 "zstd frame is truncated: %zu bytes end before the frame does",
				 in_len);
			return WINNOW_DOC_TRUNCATED_ZSTD;
		}
	}
}
