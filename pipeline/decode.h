/*
 * decode.h: bounded zstd decompression of one document. Private to
 * pipeline/.
 *
 * A Kafka value is untrusted: it may not be zstd at all, be cut short, or
 * be a decompression bomb. The decoder refuses frames that need a larger
 * window than window_log_max and stops as soon as the output would pass
 * max_output, so a bomb costs at most max_output bytes of memory.
 */
#ifndef WINNOW_DECODE_H
#define WINNOW_DECODE_H

#include "winnow_pipeline.h"

#include <stddef.h>
#include <zstd.h>
#include <zstd_errors.h>

typedef struct {
	ZSTD_DCtx *dctx;
	size_t max_output;
} winnow_decoder_t;

/* 0, or -1 when out of memory. */
int winnow_decoder_init(winnow_decoder_t *d, size_t max_output,
			unsigned window_log_max);
void winnow_decoder_destroy(winnow_decoder_t *d);

/*
 * Decompresses one frame of in_len bytes into *buf (grown with realloc up to
 * max_output; *cap is its size), setting *out_len. WINNOW_DOC_OK or the
 * class of the failure, with a reason in reason[reason_size].
 */
winnow_doc_status_t winnow_decode(winnow_decoder_t *d, const void *in,
				  size_t in_len, char **buf, size_t *cap,
				  size_t *out_len, char *reason,
				  size_t reason_size);

#endif /* WINNOW_DECODE_H */
