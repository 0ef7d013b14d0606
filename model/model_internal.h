/*
 * model_internal.h: the loaded model as the engine sees it. Private to
 * model/; the public interface is winnow_model.h.
 *
 * Data layout: every matrix is row-major f32. Linear weights are [out x in]
 * as torch.nn.Linear stores them, so a layer computes Y = X W^T + b with X
 * [tokens x in]. Pointers point into the file mapping (f32 tensors) or into
 * model->converted (f16/bf16 tensors, widened once at load).
 */
#ifndef WINNOW_MODEL_INTERNAL_H
#define WINNOW_MODEL_INTERNAL_H

#include "gemm.h"
#include "winnow_model.h"

typedef struct {
	const float *qkv_w, *qkv_b;       /* [3d x d], [3d]: Wq, Wk, Wv rows */
	const float *out_w, *out_b;       /* [d x d], [d] */
	const float *attn_ln_w, *attn_ln_b;
	const float *up_w, *up_b;         /* [I x d], [I] */
	const float *down_w, *down_b;     /* [d x I], [d] */
	const float *ffn_ln_w, *ffn_ln_b;
	/* The four weights packed for the AVX-512 product (gemm.h); data is
	 * NULL when the portable kernels run, which read the matrices above. */
	winnow_panels_t qkv_p, out_p, up_p, down_p;
} winnow_layer_weights_t;

typedef struct {
	const float *tokens;              /* [m x d] */
	const float *ln_c_w, *ln_c_b, *ln_e_w, *ln_e_b;
	const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
	winnow_panels_t q_p, k_p, v_p, o_p;       /* as in a layer */
} winnow_combine_weights_t;

struct winnow_model_s {
	winnow_model_config_t cfg;
	void *map;                        /* the whole file, read-only */
	size_t map_size;
	float *converted;                 /* f16/bf16 tensors widened to f32 */
	float *packed;                    /* every winnow_panels_t's data */

	const float *word_emb;            /* [vocab x d] */
	const float *pos_emb;             /* [max_position x d] */
	const float *type_emb;            /* [type_vocab x d] */
	const float *emb_ln_w, *emb_ln_b;
	winnow_layer_weights_t *layers;   /* num_layers; layer P stays zeroed */
	const float *pooler_w, *pooler_b; /* NULL unless cls pooling, P = L */
	const float *cls_w, *cls_b;       /* [labels x d], [labels] */
	winnow_panels_t pooler_p, cls_p;
	winnow_combine_weights_t combine; /* zeroed unless P < L */

	winnow_tokenizer_t *tokenizer;
	char **labels;                    /* num_labels NUL-terminated names */
	char *name, *version;
};

#endif /* WINNOW_MODEL_INTERNAL_H */
