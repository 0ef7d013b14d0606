/*
 * model_file.c: maps a .wnn file and validates all of it before use.
 *
 * The format is documented byte by byte in docs/model-format.md. Nothing in
 * the file is trusted: every field is checked against its rule, every
 * section and tensor against the file's bounds, the tensor table against the
 * configuration, and finally the two CRC-32s. Each failure names the field
 * (or tensor) and its byte offset, so a user can tell a truncated download
 * from a wrong exporter.
 */
#include "kernels.h"
#include "model_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define WNN_MAGIC "WINNOWMF"
#define WNN_VERSION 1
#define WNN_HEADER_SIZE 256
#define WNN_HEADER_CRC_SPAN 172 /* header_crc32 covers [0, 172) */
#define WNN_ALIGN 64
#define WNN_MAX_STRING 1024
#define WNN_MAX_TENSORS 65536
#define WNN_MAX_NAME 256

enum { DTYPE_F32 = 0, DTYPE_F16 = 1, DTYPE_BF16 = 2 };

/* Where validation is: the mapped bytes and the caller's error buffer. */
typedef struct {
	const uint8_t *base;
	uint64_t size;
	const char *path;
	char *errstr;
	size_t errstr_size;
} reader_t;

static int fail(reader_t *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(reader_t *r, const char *fmt, ...)
{
	int n = snprintf(r->errstr, r->errstr_size, "cannot load model '%s': ",
			 r->path);
	if (n >= 0 && (size_t)n < r->errstr_size) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->errstr + n, r->errstr_size - n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int need(reader_t *r, uint64_t off, uint64_t len, const char *what)
{
	if (off > r->size || r->size - off < len)
		return fail(r, "%s at offset %" PRIu64 " ends beyond the end of the file (%" PRIu64 " bytes)",
			    what, off, r->size);
	return 0;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static double get_f64(const uint8_t *p)
{
	uint64_t bits = get_u64(p);
	double d;
	memcpy(&d, &bits, sizeof d);
	return d;
}

/* ---- header ------------------------------------------------------------ */

/* Plain range rules of the u32 header fields (docs/model-format.md). */
static const struct {
	const char *name;
	uint32_t offset;
	uint32_t min, max;
} u32_rules[] = {
	{ "vocab_size", 24, 1, 1u << 24 },
	{ "hidden_size", 28, 1, 65536 },
	{ "num_layers", 32, 1, 256 },
	{ "num_heads", 36, 1, 1024 },
	{ "intermediate_size", 40, 1, 1u << 20 },
	{ "max_position", 44, 3, 65536 },
	{ "type_vocab_size", 48, 1, 1024 },
	{ "num_labels", 52, 1, 65536 },
	{ "fuzzy", 72, 0, 1 },
	{ "fuzzy_mode", 76, 0, 1 },
	{ "combine_layer", 80, 1, 256 },
	{ "combine_tokens", 84, 0, 4096 },
	{ "pooling", 88, 0, 1 },
	{ "hidden_act", 92, 0, 0 },
	{ "max_seq_len", 96, 3, 65536 },
	{ "do_lower_case", 100, 0, 1 },
	{ "max_chars_per_word", 104, 1, 65536 },
	{ "cls_id", 108, 0, UINT32_MAX },
	{ "sep_id", 112, 0, UINT32_MAX },
	{ "unk_id", 116, 0, UINT32_MAX },
	{ "pad_id", 120, 0, UINT32_MAX },
	{ "mask_id", 124, 0, UINT32_MAX },
};

/* Section offsets read from the header, checked in parse_header. */
typedef struct {
	uint64_t info, labels, vocab, tensors, data;
	uint32_t body_crc, header_crc;
} sections_t;

static int parse_header(reader_t *r, winnow_model_config_t *cfg, sections_t *s)
{
	const uint8_t *h = r->base;
	uint32_t v[sizeof u32_rules / sizeof u32_rules[0]];

	if (need(r, 0, 8, "field 'magic'"))
		return -1;
	if (memcmp(h, WNN_MAGIC, 8) != 0)
		return fail(r, "field 'magic' at offset 0 is not \"" WNN_MAGIC "\": not a winnow model file");
	if (need(r, 8, 4, "field 'version'"))
		return -1;
	if (get_u32(h + 8) != WNN_VERSION)
		return fail(r, "field 'version' at offset 8 is %" PRIu32 ", this build reads version %d",
			    get_u32(h + 8), WNN_VERSION);
	if (need(r, 12, 4, "field 'header_size'"))
		return -1;
	if (get_u32(h + 12) != WNN_HEADER_SIZE)
		return fail(r, "field 'header_size' at offset 12 is %" PRIu32 ", expected %d",
			    get_u32(h + 12), WNN_HEADER_SIZE);
	if (need(r, 16, 8, "field 'file_size'"))
		return -1;
	if (get_u64(h + 16) != r->size)
		return fail(r, "field 'file_size' at offset 16 says %" PRIu64 " bytes, the file has %" PRIu64 "%s",
			    get_u64(h + 16), r->size,
			    get_u64(h + 16) > r->size ? " (truncated?)" : "");
	if (need(r, 0, WNN_HEADER_SIZE, "the header"))
		return -1;

	for (size_t i = 0; i < sizeof u32_rules / sizeof u32_rules[0]; i++) {
		v[i] = get_u32(h + u32_rules[i].offset);
		if (v[i] < u32_rules[i].min || v[i] > u32_rules[i].max)
			return fail(r, "field '%s' at offset %" PRIu32 " is %" PRIu32 ", must be in %" PRIu32 "..%" PRIu32,
				    u32_rules[i].name, u32_rules[i].offset, v[i],
				    u32_rules[i].min, u32_rules[i].max);
	}
	cfg->vocab_size = v[0];
	cfg->hidden_size = v[1];
	cfg->num_layers = v[2];
	cfg->num_heads = v[3];
	cfg->intermediate_size = v[4];
	cfg->max_position = v[5];
	cfg->type_vocab_size = v[6];
	cfg->num_labels = v[7];
	cfg->fuzzy = (int)v[8];
	cfg->fuzzy_mode = (winnow_fuzzy_mode_t)v[9];
	cfg->combine_layer = v[10];
	cfg->combine_tokens = v[11];
	cfg->pooling = (winnow_pooling_t)v[12];
	cfg->max_seq_len = v[14];
	cfg->do_lower_case = (int)v[15];
	cfg->max_chars_per_word = v[16];
	cfg->cls_id = (int32_t)v[17];
	cfg->sep_id = (int32_t)v[18];
	cfg->unk_id = (int32_t)v[19];
	cfg->pad_id = (int32_t)v[20];
	cfg->mask_id = (int32_t)v[21];
	for (int i = 17; i <= 21; i++)
		if (v[i] >= cfg->vocab_size)
			return fail(r, "field '%s' at offset %" PRIu32 " is %" PRIu32 ", beyond vocab_size %" PRIu32,
				    u32_rules[i].name, u32_rules[i].offset, v[i], cfg->vocab_size);

	if (cfg->hidden_size % cfg->num_heads)
		return fail(r, "field 'hidden_size' at offset 28 is %" PRIu32 ", not a multiple of num_heads %" PRIu32,
			    cfg->hidden_size, cfg->num_heads);
	if (cfg->combine_layer > cfg->num_layers)
		return fail(r, "field 'combine_layer' at offset 80 is %" PRIu32 ", beyond num_layers %" PRIu32,
			    cfg->combine_layer, cfg->num_layers);
	if (cfg->combine_layer == cfg->num_layers && cfg->combine_tokens != 0)
		return fail(r, "field 'combine_tokens' at offset 84 is %" PRIu32 " but there is no combining module (combine_layer = num_layers)",
			    cfg->combine_tokens);
	if (cfg->combine_layer < cfg->num_layers && cfg->combine_tokens == 0)
		return fail(r, "field 'combine_tokens' at offset 84 is 0 but combine_layer %" PRIu32 " asks for a combining module",
			    cfg->combine_layer);
	if (cfg->max_seq_len > cfg->max_position)
		return fail(r, "field 'max_seq_len' at offset 96 is %" PRIu32 ", beyond max_position %" PRIu32,
			    cfg->max_seq_len, cfg->max_position);

	cfg->layer_norm_eps = get_f64(h + 56);
	if (!isfinite(cfg->layer_norm_eps) || cfg->layer_norm_eps <= 0 ||
	    cfg->layer_norm_eps >= 1)
		return fail(r, "field 'layer_norm_eps' at offset 56 is %g, must be finite and in (0, 1)",
			    cfg->layer_norm_eps);
	cfg->keep_ratio = get_f64(h + 64);
	if (!isfinite(cfg->keep_ratio) || cfg->keep_ratio <= 0 ||
	    cfg->keep_ratio > 1)
		return fail(r, "field 'keep_ratio' at offset 64 is %g, must be in (0, 1]",
			    cfg->keep_ratio);

	s->info = get_u64(h + 128);
	s->labels = get_u64(h + 136);
	s->vocab = get_u64(h + 144);
	s->tensors = get_u64(h + 152);
	s->data = get_u64(h + 160);
	s->body_crc = get_u32(h + 168);
	s->header_crc = get_u32(h + 172);
	if (s->data % WNN_ALIGN || s->data < WNN_HEADER_SIZE || s->data > r->size)
		return fail(r, "field 'data_offset' at offset 160 is %" PRIu64 ", must be a multiple of %d in [%d, %" PRIu64 "]",
			    s->data, WNN_ALIGN, WNN_HEADER_SIZE, r->size);
	static const struct { const char *name; uint32_t offset; } sec[] = {
		{ "info_offset", 128 }, { "labels_offset", 136 },
		{ "vocab_offset", 144 }, { "tensors_offset", 152 },
	};
	for (int i = 0; i < 4; i++) {
		uint64_t off = get_u64(h + sec[i].offset);
		if (off < WNN_HEADER_SIZE || off >= s->data)
			return fail(r, "field '%s' at offset %" PRIu32 " is %" PRIu64 ", outside the sections [%d, %" PRIu64 ")",
				    sec[i].name, sec[i].offset, off,
				    WNN_HEADER_SIZE, s->data);
	}
	for (int i = 176; i < WNN_HEADER_SIZE; i++)
		if (h[i])
			return fail(r, "field 'reserved' at offset %d is not zero", i);
	return 0;
}

/* ---- string lists -------------------------------------------------------- */

static int utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t len;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			len = 2, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i < len)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += len;
	}
	return 1;
}

/*
 * Reads a string list of exactly `count` entries at `off`, ending at or
 * before `limit`. ptr/len receive the entries (pointing into the mapping).
 */
static int parse_string_list(reader_t *r, const char *section, uint64_t off,
			     uint64_t limit, uint32_t count,
			     const char **ptr, uint32_t *len)
{
	if (off > limit || limit - off < 4)
		return fail(r, "%s count at offset %" PRIu64 " ends beyond the sections (end %" PRIu64 ")",
			    section, off, limit);
	uint32_t n = get_u32(r->base + off);
	if (n != count)
		return fail(r, "%s count at offset %" PRIu64 " is %" PRIu32 ", expected %" PRIu32,
			    section, off, n, count);
	off += 4;
	for (uint32_t i = 0; i < n; i++) {
		if (limit - off < 4)
			return fail(r, "%s entry %" PRIu32 " length at offset %" PRIu64 " ends beyond the sections (end %" PRIu64 ")",
				    section, i, off, limit);
		uint32_t l = get_u32(r->base + off);
		if (l > WNN_MAX_STRING)
			return fail(r, "%s entry %" PRIu32 " at offset %" PRIu64 " is %" PRIu32 " bytes long, at most %d allowed",
				    section, i, off, l, WNN_MAX_STRING);
		if (limit - off - 4 < l)
			return fail(r, "%s entry %" PRIu32 " at offset %" PRIu64 " ends beyond the sections (end %" PRIu64 ")",
				    section, i, off, limit);
		if (!utf8_valid(r->base + off + 4, l))
			return fail(r, "%s entry %" PRIu32 " at offset %" PRIu64 " is not valid UTF-8",
				    section, i, off);
		ptr[i] = (const char *)r->base + off + 4;
		len[i] = l;
		off += 4 + (uint64_t)l;
	}
	return 0;
}

static char *dup_string(const char *s, uint32_t len)
{
	char *d = malloc((size_t)len + 1);
	if (d) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

/* ---- tensors ------------------------------------------------------------ */

typedef struct {
	const char *name;     /* in the mapping, not NUL-terminated */
	uint32_t name_len;
	uint32_t dtype;
	uint32_t ndim;
	uint64_t dims[4];
	uint64_t offset, nbytes;
	uint64_t entry_offset; /* of the table entry, for messages */
	int used;
} tensor_entry_t;

static size_t dtype_size(uint32_t dtype)
{
	return dtype == DTYPE_F32 ? 4 : 2;
}

static int parse_tensor_table(reader_t *r, uint64_t off, uint64_t limit,
			      tensor_entry_t **out, uint32_t *out_n)
{
	if (off > limit || limit - off < 4)
		return fail(r, "tensor table count at offset %" PRIu64 " ends beyond the sections (end %" PRIu64 ")",
			    off, limit);
	uint32_t n = get_u32(r->base + off);
	if (n == 0 || n > WNN_MAX_TENSORS)
		return fail(r, "tensor table count at offset %" PRIu64 " is %" PRIu32 ", must be in 1..%d",
			    off, n, WNN_MAX_TENSORS);
	tensor_entry_t *t = calloc(n, sizeof *t);
	if (!t)
		return fail(r, "out of memory for %" PRIu32 " tensor entries", n);
	off += 4;
	uint64_t entry_at = off;
	for (uint32_t i = 0; i < n; i++) {
		tensor_entry_t *e = &t[i];
		e->entry_offset = entry_at = off;
		if (limit - off < 4)
			goto out_truncated;
		e->name_len = get_u32(r->base + off);
		if (e->name_len == 0 || e->name_len > WNN_MAX_NAME) {
			fail(r, "tensor entry %" PRIu32 " at offset %" PRIu64 ": name length %" PRIu32 " is not in 1..%d",
			     i, off, e->name_len, WNN_MAX_NAME);
			goto out_free;
		}
		if (limit - off - 4 < e->name_len)
			goto out_truncated;
		e->name = (const char *)r->base + off + 4;
		for (uint32_t k = 0; k < e->name_len; k++) {
			if (e->name[k] < 0x21 || e->name[k] > 0x7e) {
				fail(r, "tensor entry %" PRIu32 " at offset %" PRIu64 ": name has a byte 0x%02x that is not printable ASCII",
				     i, off, (unsigned)(uint8_t)e->name[k]);
				goto out_free;
			}
		}
		off += 4 + (uint64_t)e->name_len;
		if (limit - off < 8)
			goto out_truncated;
		e->dtype = get_u32(r->base + off);
		e->ndim = get_u32(r->base + off + 4);
		if (e->dtype > DTYPE_BF16) {
			fail(r, "tensor '%.*s' (entry at offset %" PRIu64 "): dtype %" PRIu32 " at offset %" PRIu64 " is not 0 (f32), 1 (f16) or 2 (bf16)",
			     (int)e->name_len, e->name, e->entry_offset, e->dtype, off);
			goto out_free;
		}
		if (e->ndim < 1 || e->ndim > 4) {
			fail(r, "tensor '%.*s' (entry at offset %" PRIu64 "): ndim %" PRIu32 " at offset %" PRIu64 " is not in 1..4",
			     (int)e->name_len, e->name, e->entry_offset, e->ndim, off + 4);
			goto out_free;
		}
		off += 8;
		if (limit - off < 8 * (uint64_t)e->ndim + 16)
			goto out_truncated;
		uint64_t elems = 1;
		for (uint32_t k = 0; k < e->ndim; k++) {
			e->dims[k] = get_u64(r->base + off + 8 * k);
			if (e->dims[k] == 0 || e->dims[k] > (1ull << 32) ||
			    elems > (1ull << 40) / e->dims[k]) {
				fail(r, "tensor '%.*s' (entry at offset %" PRIu64 "): dimension %" PRIu32 " at offset %" PRIu64 " is %" PRIu64 ", out of range",
				     (int)e->name_len, e->name, e->entry_offset, k,
				     off + 8 * k, e->dims[k]);
				goto out_free;
			}
			elems *= e->dims[k];
		}
		off += 8 * (uint64_t)e->ndim;
		e->offset = get_u64(r->base + off);
		e->nbytes = get_u64(r->base + off + 8);
		if (e->nbytes != elems * dtype_size(e->dtype)) {
			fail(r, "tensor '%.*s' (entry at offset %" PRIu64 "): nbytes %" PRIu64 " at offset %" PRIu64 " does not match its shape (%" PRIu64 " elements of %zu bytes)",
			     (int)e->name_len, e->name, e->entry_offset, e->nbytes,
			     off + 8, elems, dtype_size(e->dtype));
			goto out_free;
		}
		if (e->offset % WNN_ALIGN || e->offset < limit) {
			fail(r, "tensor '%.*s' (entry at offset %" PRIu64 "): data offset %" PRIu64 " at offset %" PRIu64 " must be a multiple of %d at or after data_offset %" PRIu64,
			     (int)e->name_len, e->name, e->entry_offset, e->offset,
			     off, WNN_ALIGN, limit);
			goto out_free;
		}
		if (e->offset > r->size || r->size - e->offset < e->nbytes) {
			fail(r, "tensor '%.*s' ends at byte %" PRIu64 ", the file has %" PRIu64,
			     (int)e->name_len, e->name, e->offset + e->nbytes,
			     r->size);
			goto out_free;
		}
		off += 16;
		for (uint32_t k = 0; k < i; k++) {
			if (t[k].name_len == e->name_len &&
			    !memcmp(t[k].name, e->name, e->name_len)) {
				fail(r, "tensor '%.*s' appears twice in the table (entries at offsets %" PRIu64 " and %" PRIu64 ")",
				     (int)e->name_len, e->name, t[k].entry_offset,
				     e->entry_offset);
				goto out_free;
			}
			/* Overlapping data would let one tensor alias another. */
			if (e->offset < t[k].offset + t[k].nbytes &&
			    t[k].offset < e->offset + e->nbytes) {
				fail(r, "tensor '%.*s' overlaps tensor '%.*s' in the data section",
				     (int)e->name_len, e->name,
				     (int)t[k].name_len, t[k].name);
				goto out_free;
			}
		}
	}
	*out = t;
	*out_n = n;
	return 0;

out_truncated:
	fail(r, "tensor table entry at offset %" PRIu64 " ends beyond the sections (end %" PRIu64 ")",
	     entry_at, limit);
out_free:
	free(t);
	return -1;
}

/* A tensor the configuration needs, and where its pointer goes. */
typedef struct {
	char name[64];
	uint32_t ndim;
	uint64_t dims[2];
	const float **dest;
} tensor_want_t;

static void want(tensor_want_t *w, size_t *n, const float **dest,
		 uint64_t d0, uint64_t d1, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void want(tensor_want_t *w, size_t *n, const float **dest,
		 uint64_t d0, uint64_t d1, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w[*n].name, sizeof w[*n].name, fmt, ap);
	va_end(ap);
	w[*n].ndim = d1 ? 2 : 1;
	w[*n].dims[0] = d0;
	w[*n].dims[1] = d1;
	w[*n].dest = dest;
	(*n)++;
}

/* The exact tensor set of docs/model-format.md for this configuration. */
static size_t list_wanted_tensors(winnow_model_t *m, tensor_want_t *w)
{
	const winnow_model_config_t *c = &m->cfg;
	uint64_t d = c->hidden_size, inter = c->intermediate_size;
	size_t n = 0;

	want(w, &n, &m->word_emb, c->vocab_size, d, "embeddings.word.weight");
	want(w, &n, &m->pos_emb, c->max_position, d, "embeddings.position.weight");
	want(w, &n, &m->type_emb, c->type_vocab_size, d, "embeddings.token_type.weight");
	want(w, &n, &m->emb_ln_w, d, 0, "embeddings.ln.weight");
	want(w, &n, &m->emb_ln_b, d, 0, "embeddings.ln.bias");
	for (uint32_t l = 0; l < c->num_layers; l++) {
		winnow_layer_weights_t *L = &m->layers[l];
		if (l == c->combine_layer)
			continue; /* replaced by the combining module */
		want(w, &n, &L->qkv_w, 3 * d, d, "encoder.%u.attn.qkv.weight", l);
		want(w, &n, &L->qkv_b, 3 * d, 0, "encoder.%u.attn.qkv.bias", l);
		want(w, &n, &L->out_w, d, d, "encoder.%u.attn.out.weight", l);
		want(w, &n, &L->out_b, d, 0, "encoder.%u.attn.out.bias", l);
		want(w, &n, &L->attn_ln_w, d, 0, "encoder.%u.attn.ln.weight", l);
		want(w, &n, &L->attn_ln_b, d, 0, "encoder.%u.attn.ln.bias", l);
		want(w, &n, &L->up_w, inter, d, "encoder.%u.ffn.up.weight", l);
		want(w, &n, &L->up_b, inter, 0, "encoder.%u.ffn.up.bias", l);
		want(w, &n, &L->down_w, d, inter, "encoder.%u.ffn.down.weight", l);
		want(w, &n, &L->down_b, d, 0, "encoder.%u.ffn.down.bias", l);
		want(w, &n, &L->ffn_ln_w, d, 0, "encoder.%u.ffn.ln.weight", l);
		want(w, &n, &L->ffn_ln_b, d, 0, "encoder.%u.ffn.ln.bias", l);
	}
	if (c->pooling == WINNOW_POOLING_CLS && c->combine_layer == c->num_layers) {
		want(w, &n, &m->pooler_w, d, d, "pooler.weight");
		want(w, &n, &m->pooler_b, d, 0, "pooler.bias");
	}
	want(w, &n, &m->cls_w, c->num_labels, d, "classifier.weight");
	want(w, &n, &m->cls_b, c->num_labels, 0, "classifier.bias");
	if (c->combine_layer < c->num_layers) {
		winnow_combine_weights_t *k = &m->combine;
		want(w, &n, &k->tokens, c->combine_tokens, d, "combine.tokens");
		want(w, &n, &k->ln_c_w, d, 0, "combine.ln_c.weight");
		want(w, &n, &k->ln_c_b, d, 0, "combine.ln_c.bias");
		want(w, &n, &k->ln_e_w, d, 0, "combine.ln_e.weight");
		want(w, &n, &k->ln_e_b, d, 0, "combine.ln_e.bias");
		want(w, &n, &k->q_w, d, d, "combine.q.weight");
		want(w, &n, &k->q_b, d, 0, "combine.q.bias");
		want(w, &n, &k->k_w, d, d, "combine.k.weight");
		want(w, &n, &k->k_b, d, 0, "combine.k.bias");
		want(w, &n, &k->v_w, d, d, "combine.v.weight");
		want(w, &n, &k->v_b, d, 0, "combine.v.bias");
		want(w, &n, &k->o_w, d, d, "combine.o.weight");
		want(w, &n, &k->o_b, d, 0, "combine.o.bias");
	}
	return n;
}

static int format_shape(char *buf, size_t size, uint32_t ndim,
			const uint64_t *dims)
{
	int n = snprintf(buf, size, "[");
	for (uint32_t k = 0; k < ndim && n > 0 && (size_t)n < size; k++)
		n += snprintf(buf + n, size - n, "%s%" PRIu64, k ? ", " : "",
			      dims[k]);
	if (n > 0 && (size_t)n < size)
		n += snprintf(buf + n, size - n, "]");
	return n;
}

/* IEEE half to float, subnormals, infinities and NaNs included. */
static float half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
	if (exp == 0x1F) {
		bits = sign | 0x7F800000 | mant << 13;
	} else if (exp == 0) {
		if (mant == 0) {
			bits = sign;
		} else {
			int e = -1;
			do {
				mant <<= 1;
				e++;
			} while (!(mant & 0x400));
			bits = sign | (uint32_t)(127 - 15 - e) << 23 |
			       (mant & 0x3FF) << 13;
		}
	} else {
		bits = sign | (exp + 127 - 15) << 23 | mant << 13;
	}
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

static void widen(const tensor_entry_t *e, const uint8_t *src, float *dst)
{
	uint64_t n = e->nbytes / 2;
	for (uint64_t i = 0; i < n; i++) {
		uint16_t v = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
		if (e->dtype == DTYPE_F16) {
			dst[i] = half_to_float(v);
		} else {
			uint32_t bits = (uint32_t)v << 16;
			memcpy(&dst[i], &bits, sizeof bits);
		}
	}
}

static int bind_tensors(reader_t *r, winnow_model_t *m, tensor_entry_t *t,
			uint32_t nt)
{
	const winnow_model_config_t *c = &m->cfg;
	size_t cap = 5 + 12 * (size_t)c->num_layers + 4 + 13;
	tensor_want_t *w = calloc(cap, sizeof *w);
	int ret = -1;
	if (!w)
		return fail(r, "out of memory");
	size_t nw = list_wanted_tensors(m, w);
	uint64_t widen_elems = 0;

	for (size_t i = 0; i < nw; i++) {
		tensor_entry_t *e = NULL;
		size_t len = strlen(w[i].name);
		for (uint32_t k = 0; k < nt && !e; k++)
			if (t[k].name_len == len && !memcmp(t[k].name, w[i].name, len))
				e = &t[k];
		if (!e) {
			fail(r, "missing tensor '%s'", w[i].name);
			goto out_free_wanted;
		}
		int same = e->ndim == w[i].ndim;
		for (uint32_t k = 0; same && k < e->ndim; k++)
			same = e->dims[k] == w[i].dims[k];
		if (!same) {
			char have[96], expect[96];
			format_shape(have, sizeof have, e->ndim, e->dims);
			format_shape(expect, sizeof expect, w[i].ndim, w[i].dims);
			fail(r, "tensor '%s' (entry at offset %" PRIu64 ") has shape %s, the configuration needs %s",
			     w[i].name, e->entry_offset, have, expect);
			goto out_free_wanted;
		}
		e->used = 1;
		if (e->dtype != DTYPE_F32)
			widen_elems += e->nbytes / 2;
	}
	for (uint32_t k = 0; k < nt; k++) {
		if (!t[k].used) {
			fail(r, "unexpected tensor '%.*s' (entry at offset %" PRIu64 "): this configuration does not use it",
			     (int)t[k].name_len, t[k].name, t[k].entry_offset);
			goto out_free_wanted;
		}
	}

	if (widen_elems) {
		m->converted = malloc(widen_elems * sizeof(float));
		if (!m->converted) {
			fail(r, "out of memory widening %" PRIu64 " f16/bf16 weights", widen_elems);
			goto out_free_wanted;
		}
	}
	float *next = m->converted;
	for (size_t i = 0; i < nw; i++) {
		size_t len = strlen(w[i].name);
		for (uint32_t k = 0; k < nt; k++) {
			tensor_entry_t *e = &t[k];
			if (e->name_len != len || memcmp(e->name, w[i].name, len))
				continue;
			if (e->dtype == DTYPE_F32) {
				*w[i].dest = (const float *)(r->base + e->offset);
			} else {
				widen(e, r->base + e->offset, next);
				*w[i].dest = next;
				next += e->nbytes / 2;
			}
			break;
		}
	}
	ret = 0;
out_free_wanted:
	free(w);
	return ret;
}

/* ---- loading ------------------------------------------------------------- */

winnow_model_params_t winnow_model_default_params(void)
{
	winnow_model_params_t p = { .verify_checksums = 1 };
	return p;
}

static int load_strings(reader_t *r, winnow_model_t *m, const sections_t *s)
{
	const winnow_model_config_t *c = &m->cfg;
	const char *info[2];
	uint32_t info_len[2];
	size_t n_max = c->vocab_size > c->num_labels ? c->vocab_size : c->num_labels;
	const char **ptr = malloc(n_max * sizeof *ptr);
	uint32_t *len = malloc(n_max * sizeof *len);
	int ret = -1;

	if (!ptr || !len) {
		fail(r, "out of memory");
		goto out_free;
	}
	if (parse_string_list(r, "info", s->info, s->data, 2, info, info_len))
		goto out_free;
	m->name = dup_string(info[0], info_len[0]);
	m->version = dup_string(info[1], info_len[1]);
	if (!m->name || !m->version) {
		fail(r, "out of memory");
		goto out_free;
	}
	m->cfg.name = m->name;
	m->cfg.version = m->version;

	if (parse_string_list(r, "labels", s->labels, s->data, c->num_labels, ptr, len))
		goto out_free;
	m->labels = calloc(c->num_labels, sizeof *m->labels);
	if (!m->labels) {
		fail(r, "out of memory");
		goto out_free;
	}
	for (uint32_t i = 0; i < c->num_labels; i++) {
		if (len[i] == 0) {
			fail(r, "labels entry %" PRIu32 " is empty", i);
			goto out_free;
		}
		if (!(m->labels[i] = dup_string(ptr[i], len[i]))) {
			fail(r, "out of memory");
			goto out_free;
		}
	}

	if (parse_string_list(r, "vocab", s->vocab, s->data, c->vocab_size, ptr, len))
		goto out_free;
	winnow_tokenizer_params_t tp = winnow_tokenizer_default_params();
	tp.do_lower_case = c->do_lower_case;
	tp.max_chars_per_word = (int)c->max_chars_per_word;
	tp.unk_id = c->unk_id;
	char terr[256];
	m->tokenizer = winnow_tokenizer_new(ptr, len, c->vocab_size, &tp,
					    terr, sizeof terr);
	if (!m->tokenizer) {
		fail(r, "vocab: %s", terr);
		goto out_free;
	}
	/* A duplicated token would make ids ambiguous; every entry must map back. */
	for (uint32_t i = 0; i < c->vocab_size; i++) {
		if (winnow_tokenizer_lookup(m->tokenizer, ptr[i], len[i]) != (int32_t)i) {
			fail(r, "vocab entry %" PRIu32 " '%.*s' is a duplicate", i,
			     (int)len[i], ptr[i]);
			goto out_free;
		}
	}
	ret = 0;
out_free:
	free(ptr);
	free(len);
	return ret;
}

static int verify_checksums(reader_t *r, const sections_t *s)
{
	uint32_t crc = (uint32_t)crc32_z(0L, r->base, WNN_HEADER_CRC_SPAN);
	if (crc != s->header_crc)
		return fail(r, "field 'header_crc32' at offset 172 is 0x%08" PRIx32 ", the header's CRC-32 is 0x%08" PRIx32 " (corrupt header)",
			    s->header_crc, crc);
	crc = (uint32_t)crc32_z(0L, r->base + WNN_HEADER_SIZE,
				(size_t)(r->size - WNN_HEADER_SIZE));
	if (crc != s->body_crc)
		return fail(r, "field 'body_crc32' at offset 168 is 0x%08" PRIx32 ", the body's CRC-32 is 0x%08" PRIx32 " (corrupt file)",
			    s->body_crc, crc);
	return 0;
}

/*
 * Packs every weight the engine multiplies by into the panels of the
 * AVX-512 product (gemm.h), in one allocation, when those kernels run; the
 * portable kernels read the matrices in place. The packed copies replace
 * the mapped pages in use: those of an f32 file are then given back with
 * MADV_DONTNEED (they would be read again from the file if ever touched),
 * so the weights are not held twice.
 */
typedef struct {
	winnow_panels_t *dst;
	const float *w;
	size_t n, k;
} pack_job_t;

static size_t list_pack_jobs(winnow_model_t *m, pack_job_t *j)
{
	const winnow_model_config_t *c = &m->cfg;
	size_t d = c->hidden_size, inter = c->intermediate_size, n = 0;
#define JOB(panels, weight, rows, cols) \
	j[n++] = (pack_job_t){ &(panels), (weight), (rows), (cols) }
	for (uint32_t l = 0; l < c->num_layers; l++) {
		winnow_layer_weights_t *L = &m->layers[l];
		if (!L->qkv_w)
			continue; /* layer P: replaced by the combining module */
		JOB(L->qkv_p, L->qkv_w, 3 * d, d);
		JOB(L->out_p, L->out_w, d, d);
		JOB(L->up_p, L->up_w, inter, d);
		JOB(L->down_p, L->down_w, d, inter);
	}
	if (m->pooler_w)
		JOB(m->pooler_p, m->pooler_w, d, d);
	JOB(m->cls_p, m->cls_w, c->num_labels, d);
	if (m->combine.q_w) {
		winnow_combine_weights_t *k = &m->combine;
		JOB(k->q_p, k->q_w, d, d);
		JOB(k->k_p, k->k_w, d, d);
		JOB(k->v_p, k->v_w, d, d);
		JOB(k->o_p, k->o_w, d, d);
	}
#undef JOB
	return n;
}

static void release_mapped(winnow_model_t *m, const float *w, size_t floats)
{
	uintptr_t lo = (uintptr_t)w, hi = lo + floats * sizeof(float);
	uintptr_t map_lo = (uintptr_t)m->map, map_hi = map_lo + m->map_size;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	if (lo < map_lo || hi > map_hi)
		return; /* widened from f16/bf16: not in the mapping */
	lo = (lo + page - 1) / page * page;
	hi = hi / page * page;
	if (hi > lo)
		madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static int pack_weights(reader_t *r, winnow_model_t *m)
{
	pack_job_t *jobs = calloc(4 * (size_t)m->cfg.num_layers + 8, sizeof *jobs);
	if (!jobs)
		return fail(r, "out of memory packing the weights");
	size_t n = list_pack_jobs(m, jobs), total = 0;
	for (size_t i = 0; i < n; i++)
		total += winnow_panels_floats(jobs[i].n, jobs[i].k);
	if (posix_memalign((void **)&m->packed, 64, total * sizeof(float))) {
		m->packed = NULL;
		free(jobs);
		return fail(r, "out of memory packing %zu weights", total);
	}
	float *next = m->packed;
	for (size_t i = 0; i < n; i++) {
		pack_job_t *j = &jobs[i];
		winnow_panels_pack(next, j->w, j->k, 1, j->k, 0, j->n);
		*j->dst = (winnow_panels_t){ next, j->n, j->k };
		next += winnow_panels_floats(j->n, j->k);
		release_mapped(m, j->w, j->n * j->k);
	}
	free(jobs);
	return 0;
}

winnow_model_t *winnow_model_load(const char *path,
				  const winnow_model_params_t *params,
				  char *errstr, size_t errstr_size)
{
	winnow_model_params_t defaults = winnow_model_default_params();
	reader_t r = { .path = path, .errstr = errstr, .errstr_size = errstr_size };
	winnow_model_t *m = NULL;
	tensor_entry_t *tensors = NULL;
	uint32_t n_tensors = 0;
	sections_t s = { 0 };
	struct stat st;

	if (!params)
		params = &defaults;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail(&r, "%s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		fail(&r, "%s", strerror(errno));
		goto out_close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		fail(&r, "not a regular file");
		goto out_close_fd;
	}
	r.size = (uint64_t)st.st_size;
	if (r.size < 8) {
		need(&r, 0, 8, "field 'magic'");
		goto out_close_fd;
	}
	m = calloc(1, sizeof *m);
	if (!m) {
		fail(&r, "out of memory");
		goto out_close_fd;
	}
	/* MAP_POPULATE: faulting pages one by one is slow on these VMs. */
	m->map = mmap(NULL, r.size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (m->map == MAP_FAILED) {
		m->map = NULL;
		fail(&r, "cannot map %" PRIu64 " bytes: %s", r.size, strerror(errno));
		goto out_destroy;
	}
	m->map_size = r.size;
	r.base = m->map;

	if (parse_header(&r, &m->cfg, &s))
		goto out_destroy;
	m->layers = calloc(m->cfg.num_layers, sizeof *m->layers);
	if (!m->layers) {
		fail(&r, "out of memory");
		goto out_destroy;
	}
	if (load_strings(&r, m, &s))
		goto out_destroy;
	if (parse_tensor_table(&r, s.tensors, s.data, &tensors, &n_tensors))
		goto out_destroy;
	if (bind_tensors(&r, m, tensors, n_tensors))
		goto out_destroy;
	if (params->verify_checksums && verify_checksums(&r, &s))
		goto out_destroy;
	if (winnow_kernels()->packs_weights && pack_weights(&r, m))
		goto out_destroy;
	free(tensors);
	close(fd);
	return m;

out_destroy:
	free(tensors);
	winnow_model_destroy(m);
	m = NULL;
out_close_fd:
	close(fd);
	return m;
}

void winnow_model_destroy(winnow_model_t *m)
{
	if (!m)
		return;
	if (m->labels)
		for (uint32_t i = 0; i < m->cfg.num_labels; i++)
			free(m->labels[i]);
	free(m->labels);
	winnow_tokenizer_destroy(m->tokenizer);
	free(m->name);
	free(m->version);
	free(m->layers);
	free(m->converted);
	free(m->packed);
	if (m->map)
		munmap(m->map, m->map_size);
	free(m);
}

const winnow_model_config_t *winnow_model_config(const winnow_model_t *m)
{
	return &m->cfg;
}

const winnow_tokenizer_t *winnow_model_tokenizer(const winnow_model_t *m)
{
	return m->tokenizer;
}

const char *winnow_model_label(const winnow_model_t *m, uint32_t i)
{
	return i < m->cfg.num_labels ? m->labels[i] : NULL;
}
