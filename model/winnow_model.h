/*
 * winnow_model.h: the public interface of libwinnow-model.
 *
 * libwinnow-model is pure computation: the WordPiece tokenizer, the .wnn
 * model file (docs/model-format.md), the kernels and the BERT encoder with
 * fuzzy token pruning and token combining (../shared/PAPER.md). It does no
 * I/O beyond reading a model file and knows nothing of queues or Kafka; its
 * only threads are an engine context's own, which split one forward pass
 * (winnow_ctx_params_t.threads).
 *
 * Conventions, as in librdkafka:
 *   - objects are opaque handles made by *_new or *_load and freed by
 *     *_destroy; destroy functions accept NULL;
 *   - functions that can fail return NULL or a winnow_err_t and write a
 *     human-readable reason, worded like git ("cannot load model 'x': ..."),
 *     into a caller-owned buffer errstr of errstr_size bytes;
 *   - params structs are initialised with the matching *_default_params().
 *
 * Thread safety: a winnow_model_t and its tokenizer are immutable after
 * loading and may be shared by any number of threads. A winnow_ctx_t (the
 * per-worker activation buffers and the threads that share its work)
 * belongs to one calling thread at a time.
 */
#ifndef WINNOW_MODEL_H
#define WINNOW_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	WINNOW_OK = 0,
	WINNOW_ERR_IO,          /* a file could not be opened, read or mapped */
	WINNOW_ERR_FORMAT,      /* a model or vocabulary file is malformed */
	WINNOW_ERR_INVALID_UTF8,/* input text is not valid UTF-8 */
	WINNOW_ERR_TOO_LARGE,   /* input exceeds a configured bound */
	WINNOW_ERR_NOMEM,       /* an allocation failed */
	WINNOW_ERR_ARG,         /* a caller broke an argument contract */
	WINNOW_ERR_BUSY,        /* no room now; try again (back-pressure) */
} winnow_err_t;

/* A short name for an error code ("invalid-utf8"), for logs and headers. */
const char *winnow_err_name(winnow_err_t err);

/* ------------------------------------------------------------------------
 * Tokenizer: Hugging Face BertTokenizer behaviour (uncased), with byte spans.
 * ---------------------------------------------------------------------- */

typedef struct winnow_tokenizer_s winnow_tokenizer_t;

typedef struct {
	int do_lower_case;      /* 1: lower-case, NFD and strip marks (Mn) */
	int max_chars_per_word; /* longer words become [UNK]; BERT: 100 */
	int32_t unk_id;         /* < 0: look up "[UNK]" in the vocabulary */
} winnow_tokenizer_params_t;

winnow_tokenizer_params_t winnow_tokenizer_default_params(void);

/*
 * Builds a tokenizer over a vocabulary given as n strings (not
 * NUL-terminated: tokens[i] has lens[i] bytes), token id = index. The strings
 * are copied; the caller keeps ownership of its arrays.
 */
winnow_tokenizer_t *winnow_tokenizer_new(const char *const *tokens,
					 const uint32_t *lens, size_t n,
					 const winnow_tokenizer_params_t *params,
					 char *errstr, size_t errstr_size);

/* Reads a vocab.txt (one token per line, id = line number - 1). */
winnow_tokenizer_t *winnow_tokenizer_load_vocab(const char *path,
						const winnow_tokenizer_params_t *params,
						char *errstr, size_t errstr_size);

void winnow_tokenizer_destroy(winnow_tokenizer_t *tok);

size_t winnow_tokenizer_vocab_size(const winnow_tokenizer_t *tok);
/* Token text of id, or NULL when out of range; *len receives its length. */
const char *winnow_tokenizer_token(const winnow_tokenizer_t *tok, int32_t id,
				   size_t *len);
/* Id of an exact vocabulary entry, or -1. */
int32_t winnow_tokenizer_lookup(const winnow_tokenizer_t *tok, const char *s,
				size_t len);

/*
 * The output of encoding: parallel arrays of n entries. Token i is id[i] and
 * came from bytes [start[i], end[i]) of the input text. The arrays are owned
 * by the struct and grow as needed; keep one per worker and reuse it, so that
 * steady state allocates nothing. Zero-initialise, free with
 * winnow_tokens_free().
 */
typedef struct {
	int32_t *id;
	uint32_t *start;
	uint32_t *end;
	size_t n;
	size_t cap;
} winnow_tokens_t;

void winnow_tokens_free(winnow_tokens_t *t);

/*
 * Tokenizes text (len bytes of UTF-8) into WordPiece ids without [CLS]/[SEP]
 * and without truncation; out->n is reset first. Invalid UTF-8 returns
 * WINNOW_ERR_INVALID_UTF8 with the byte offset in errstr; texts over 4 GiB
 * return WINNOW_ERR_TOO_LARGE.
 */
winnow_err_t winnow_tokenizer_encode(const winnow_tokenizer_t *tok,
				     const char *text, size_t len,
				     winnow_tokens_t *out,
				     char *errstr, size_t errstr_size);

/* ------------------------------------------------------------------------
 * Model: a validated .wnn file (docs/model-format.md).
 * ---------------------------------------------------------------------- */

typedef struct winnow_model_s winnow_model_t;

typedef enum { WINNOW_POOLING_CLS = 0, WINNOW_POOLING_MEAN = 1 } winnow_pooling_t;
typedef enum { WINNOW_FUZZY_BUDGET = 0, WINNOW_FUZZY_WITHIN = 1 } winnow_fuzzy_mode_t;

/* The architecture and method settings stored in the file. Plain data. */
typedef struct {
	uint32_t vocab_size;
	uint32_t hidden_size;
	uint32_t num_layers;
	uint32_t num_heads;
	uint32_t intermediate_size;
	uint32_t max_position;
	uint32_t type_vocab_size;
	uint32_t num_labels;
	double layer_norm_eps;
	double keep_ratio;          /* p; 1.0 = no pruning */
	int fuzzy;                  /* 1: fuzzy rule (ours-PF), 0: ours-P */
	winnow_fuzzy_mode_t fuzzy_mode;
	uint32_t combine_layer;     /* P; == num_layers: no combining module */
	uint32_t combine_tokens;    /* m */
	winnow_pooling_t pooling;
	uint32_t max_seq_len;       /* window length including [CLS] and [SEP] */
	int do_lower_case;
	uint32_t max_chars_per_word;
	int32_t cls_id, sep_id, unk_id, pad_id, mask_id;
	const char *name;           /* NUL-terminated copies owned by the model */
	const char *version;
} winnow_model_config_t;

typedef struct {
	int verify_checksums; /* 1 (default): check both CRC-32s at load */
} winnow_model_params_t;

winnow_model_params_t winnow_model_default_params(void);

/* Maps and validates a .wnn file; NULL with the reason in errstr. */
winnow_model_t *winnow_model_load(const char *path,
				  const winnow_model_params_t *params,
				  char *errstr, size_t errstr_size);
void winnow_model_destroy(winnow_model_t *model);

const winnow_model_config_t *winnow_model_config(const winnow_model_t *model);
/* The model's tokenizer, owned by the model. */
const winnow_tokenizer_t *winnow_model_tokenizer(const winnow_model_t *model);
/* Label name of class i, or NULL. */
const char *winnow_model_label(const winnow_model_t *model, uint32_t i);

/* ------------------------------------------------------------------------
 * Engine: one context per worker thread; ragged batches of windows.
 * ---------------------------------------------------------------------- */

typedef struct winnow_ctx_s winnow_ctx_t;

typedef struct {
	/* The largest batch this context will run, sized once at creation. */
	uint32_t max_windows;
	uint32_t max_tokens; /* sum of window lengths, [CLS]/[SEP] included */
	int profile;         /* 1: time the GEMMs (winnow_ctx_stats) */
	/* Threads that share each forward pass, the caller's included
	 * (default 1: the caller alone). Results do not depend on it. With
	 * the portable kernels the context sets OpenBLAS to one thread
	 * (process-wide): the context's threads are the parallelism. */
	unsigned threads;
} winnow_ctx_params_t;

#define WINNOW_CTX_MAX_THREADS 64

winnow_ctx_params_t winnow_ctx_default_params(void);

winnow_ctx_t *winnow_ctx_new(const winnow_model_t *model,
			     const winnow_ctx_params_t *params,
			     char *errstr, size_t errstr_size);
void winnow_ctx_destroy(winnow_ctx_t *ctx);

/* One window: token ids with [CLS] first and [SEP] last, 2 <= n <= max_seq_len. */
typedef struct {
	const int32_t *ids;
	uint32_t n;
} winnow_window_t;

/*
 * Runs the classifier over a batch of windows of any lengths (no padding is
 * computed) and writes n_windows x num_labels logits, row-major.
 */
winnow_err_t winnow_ctx_forward(winnow_ctx_t *ctx,
				const winnow_window_t *windows,
				uint32_t n_windows, float *logits,
				char *errstr, size_t errstr_size);

/* Counters since the context was made or last reset. */
typedef struct {
	uint64_t forwards;     /* calls of winnow_ctx_forward */
	uint64_t tokens;       /* window tokens processed */
	uint64_t forward_ns;   /* wall time inside winnow_ctx_forward */
	uint64_t gemm_ns;      /* of which in matrix products (profile = 1
				* only; wall time of the context's thread 0) */
	double gemm_flops;     /* floating-point operations of those products */
} winnow_ctx_stats_t;

void winnow_ctx_stats(const winnow_ctx_t *ctx, winnow_ctx_stats_t *out);
void winnow_ctx_stats_reset(winnow_ctx_t *ctx);

/* Per-layer accounting since the context was made or last reset, summed
 * over windows. For the layer the combining module replaces, tokens_in is
 * what it combined and tokens_kept the combined tokens (m per window); the
 * layers after it run on, and count, those m tokens per window. */
typedef struct {
	uint64_t windows;      /* windows that went through the layer */
	uint64_t tokens_in;    /* embedded tokens entering it (K_l), or the
				  combined ones after the combining module */
	uint64_t tokens_kept;  /* tokens kept after it (K_l+1), likewise */
	uint64_t protected_;   /* candidates the fuzzy rule protected (I - U) */
	uint64_t spared;       /* tokens the ratio budget would have removed
				  but the fuzzy rule kept */
	uint64_t ns;           /* wall time in the layer */
} winnow_layer_stats_t;

/* 0, or -1 when layer is out of range. */
int winnow_ctx_layer_stats(const winnow_ctx_t *ctx, uint32_t layer,
			   winnow_layer_stats_t *out);

/*
 * The retained tokens of window `window` of the last forward (PAPER.md 5):
 * the last kept set less [CLS] and [SEP], in position order. positions[k]
 * indexes the window's ids; scores[k] is its importance in the last pruned
 * layer. Returns the count; the arrays are owned by ctx and valid until its
 * next forward.
 */
uint32_t winnow_ctx_retained(const winnow_ctx_t *ctx, uint32_t window,
			     const uint32_t **positions, const double **scores);

/* Bytes of activation memory the context holds (allocated once). */
size_t winnow_ctx_memory(const winnow_ctx_t *ctx);

/* ------------------------------------------------------------------------
 * Documents: windows over long documents and per-document results
 * (PAPER.md sections 5 and 6).
 * ---------------------------------------------------------------------- */

typedef enum { WINNOW_AGGREGATE_MEAN = 0, WINNOW_AGGREGATE_MAX = 1 } winnow_aggregate_t;

typedef struct {
	/* Text tokens between the starts of two windows; 0 = a whole window
	 * (no overlap). Smaller than a window = overlapping windows. */
	uint32_t stride;
	/* How window probabilities make the document's: the mean, or the
	 * per-label maximum (which need not sum to 1). */
	winnow_aggregate_t aggregate;
	int truncate;    /* 1: classify the first window only (reported) */
	uint32_t top_k;  /* retained tokens reported per document */
} winnow_doc_params_t;

winnow_doc_params_t winnow_doc_default_params(void);

/* A window of a document: text tokens [first, first + n) of its encoding. */
typedef struct {
	size_t first;
	uint32_t n;
} winnow_doc_window_t;

/*
 * The windows of a document of n_tokens text tokens, each at most
 * max_text = max_seq_len - 2 long. Returns how many; *truncated is set to 1
 * when params->truncate cut the document short. 0 for 0 tokens.
 */
size_t winnow_doc_window_count(const winnow_doc_params_t *params,
			       uint32_t max_text, size_t n_tokens,
			       int *truncated);
winnow_doc_window_t winnow_doc_window(const winnow_doc_params_t *params,
				      uint32_t max_text, size_t n_tokens,
				      size_t index);

/* Writes [CLS] ids[first..first+n) [SEP] into out (n + 2 ids). */
void winnow_doc_window_ids(const winnow_model_t *model,
			   const winnow_tokens_t *toks, winnow_doc_window_t w,
			   int32_t *out);

/* One retained token of a document (PAPER.md 5). */
typedef struct {
	size_t token;     /* index into the document's tokens */
	int32_t id;       /* its WordPiece id */
	uint32_t start;   /* byte span in the document */
	uint32_t end;
	double score;     /* importance in the last pruned layer */
} winnow_retained_t;

/*
 * A document's result, built window by window. Make it with
 * winnow_doc_result_init (allocates num_labels scores and top_k retained
 * entries once), start each document with _reset, add each window's
 * logits and retained tokens in any order, then _finish. Free with _free.
 */
typedef struct {
	uint32_t num_labels, top_k;
	double *scores;               /* [num_labels] */
	winnow_retained_t *retained;  /* [top_k], best first after _finish */
	uint32_t n_retained;
	size_t windows, windows_added, tokens;
	int truncated;
	uint32_t label;               /* after _finish: the argmax */
} winnow_doc_result_t;

winnow_err_t winnow_doc_result_init(winnow_doc_result_t *r, uint32_t num_labels,
				    uint32_t top_k);
void winnow_doc_result_free(winnow_doc_result_t *r);
void winnow_doc_result_reset(winnow_doc_result_t *r, size_t tokens,
			     size_t windows, int truncated);
/* Adds window w's logits (num_labels; softmaxed here) and its retained
 * tokens as winnow_ctx_retained gives them. */
void winnow_doc_result_add(winnow_doc_result_t *r,
			   const winnow_doc_params_t *params,
			   const winnow_tokens_t *toks, winnow_doc_window_t w,
			   const float *logits, const uint32_t *positions,
			   const double *scores, uint32_t n_retained);
void winnow_doc_result_finish(winnow_doc_result_t *r,
			      const winnow_doc_params_t *params);

/* Numerically stable softmax of n logits into probs (may alias). */
void winnow_softmax(const float *logits, float *probs, size_t n);

/* OpenBLAS, which runs the products of the portable kernels: "OpenBLAS
 * core SkylakeX, 2 threads". */
const char *winnow_blas_describe(void);
/* Sets OpenBLAS's thread count (process-wide). With several workers of
 * its own, winnow runs each with one BLAS thread: never two pools. */
void winnow_blas_set_threads(int n);

/* Which kernel set is in use ("avx512" or "portable"), chosen at run time. */
const char *winnow_kernels_name(void);

#ifdef __cplusplus
}
#endif

#endif /* WINNOW_MODEL_H */
