/*
 * winnow_pipeline.h: the public interface of libwinnow-pipeline.
 *
 * The pipeline turns documents (zstd frames or plain text) into
 * classifications, stage by stage on its own threads, with bounded queues
 * between the stages so that memory stays bounded whatever the backlog:
 *
 *   submit -> [prep: bounded zstd decode, UTF-8 check, tokenize, windows]
 *          -> [encoder workers: batches of windows by token budget]
 *          -> [output: per-document result, completion callback]
 *
 * It knows nothing of Kafka: a document is bytes plus an opaque pointer the
 * caller gets back, exactly once, in the completion callback, whatever
 * happened to it (classified, refused with a reason, or abandoned at
 * shutdown).
 *
 * Threads: submit and the query functions may be called from any one thread
 * (the caller's loop). The callback runs on the pipeline's output thread,
 * one document at a time.
 */
#ifndef WINNOW_PIPELINE_H
#define WINNOW_PIPELINE_H

#include "winnow_model.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What became of a document. Names (winnow_doc_status_name) go into logs,
 * metrics labels and dead-letter headers. */
typedef enum {
	WINNOW_DOC_OK = 0,
	WINNOW_DOC_NOT_ZSTD,       /* "not-zstd": no zstd frame magic */
	WINNOW_DOC_TRUNCATED_ZSTD, /* "truncated-zstd": the frame ends early */
	WINNOW_DOC_CORRUPT_ZSTD,   /* "corrupt-zstd": zstd refuses the frame */
	WINNOW_DOC_TOO_LARGE,      /* "too-large": over a size cap (bombs too) */
	WINNOW_DOC_INVALID_UTF8,   /* "invalid-utf8" */
	WINNOW_DOC_EMPTY,          /* "empty": no bytes or no tokens */
	WINNOW_DOC_ENGINE_ERROR,   /* "engine-error": the model failed */
	WINNOW_DOC_ABANDONED,      /* "abandoned": shutdown without drain */
} winnow_doc_status_t;

const char *winnow_doc_status_name(winnow_doc_status_t status);

typedef struct winnow_pipeline_s winnow_pipeline_t;

/* A finished document, valid during the callback only. */
typedef struct {
	void *opaque;                      /* as given to submit */
	winnow_doc_status_t status;
	const char *reason;                /* human-readable, when status != OK */
	const winnow_doc_result_t *result; /* when status == OK */
	const char *text;                  /* decompressed text (NULL if none) */
	size_t text_len;
	uint64_t latency_ns;               /* submit to callback */
} winnow_pipeline_doc_t;

typedef void (*winnow_pipeline_done_fn)(const winnow_pipeline_doc_t *doc,
					void *user);

typedef struct {
	uint32_t max_documents;     /* documents in flight (slots); default 64 */
	uint32_t workers;           /* encoder workers; default 2 */
	uint32_t threads_per_worker; /* engine threads of each; default 1 */
	uint32_t batch_tokens;      /* token budget of one encoder batch */
	uint32_t batch_windows;     /* window budget of one encoder batch */
	int compressed;             /* 1: inputs are zstd frames (default) */
	size_t max_input_bytes;     /* larger inputs are refused (too-large) */
	size_t max_document_bytes;  /* decompressed cap (too-large; bombs) */
	uint32_t zstd_window_log_max; /* frames needing more are refused */
	winnow_doc_params_t doc;    /* windows, aggregation, top_k */
} winnow_pipeline_params_t;

winnow_pipeline_params_t winnow_pipeline_default_params(void);

/*
 * Starts the pipeline's threads. The model must outlive the pipeline.
 * done is called for every submitted document, exactly once.
 */
winnow_pipeline_t *winnow_pipeline_new(const winnow_model_t *model,
				       const winnow_pipeline_params_t *params,
				       winnow_pipeline_done_fn done, void *user,
				       char *errstr, size_t errstr_size);

/*
 * Hands a document to the pipeline. The bytes are copied (the caller may
 * free its buffer when this returns). Waits up to timeout_ms (-1: forever)
 * for a free slot: WINNOW_OK, WINNOW_ERR_TOO_LARGE never (oversized inputs
 * are accepted and finish as too-large), WINNOW_ERR_BUSY when no slot
 * freed in time, WINNOW_ERR_ARG after stop.
 */
winnow_err_t winnow_pipeline_submit(winnow_pipeline_t *p, const void *data,
				    size_t len, void *opaque, int timeout_ms);

/* Documents submitted and not yet through the callback. */
uint32_t winnow_pipeline_in_flight(winnow_pipeline_t *p);

typedef struct {
	uint64_t submitted, completed;
	uint64_t by_status[WINNOW_DOC_ABANDONED + 1];
	uint64_t batches, batch_windows, batch_tokens; /* sums, for means */
	uint64_t tokens_seen, tokens_kept;  /* embedded tokens in, at K_P */
	uint32_t depth_prep, depth_encode, depth_output; /* queue depths now */
} winnow_pipeline_stats_t;

void winnow_pipeline_stats(winnow_pipeline_t *p, winnow_pipeline_stats_t *out);

/*
 * Stops intake and waits for the threads. drain = 1: every submitted
 * document is finished normally; drain = 0: documents not yet classified
 * finish as WINNOW_DOC_ABANDONED (their callbacks still run). Idempotent.
 */
void winnow_pipeline_stop(winnow_pipeline_t *p, int drain);

/* Stops (draining) if needed and frees everything. Accepts NULL. */
void winnow_pipeline_destroy(winnow_pipeline_t *p);

#ifdef __cplusplus
}
#endif

#endif /* WINNOW_PIPELINE_H */
