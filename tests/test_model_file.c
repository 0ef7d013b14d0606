/*
 * test_model_file.c: the .wnn loader refuses every malformed file with an
 * error naming what is wrong, and never crashes (run under ASan in CI).
 *
 * The files are built here, in C, by a small writer independent of the
 * Python exporter, from docs/model-format.md.
 */
#include "winnow_model.h"

#include "check_main.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ---- a tiny writer ----------------------------------------------------- */

typedef struct {
	uint8_t *b;
	size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 1024;
		b->b = realloc(b->b, b->cap);
		ck_assert_ptr_nonnull(b->b);
	}
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void put_u32(buf_t *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf_t *b, uint64_t v) { put(b, &v, 8); }
static void set_u32(buf_t *b, size_t off, uint32_t v) { memcpy(b->b + off, &v, 4); }
static void set_u64(buf_t *b, size_t off, uint64_t v) { memcpy(b->b + off, &v, 8); }
static void set_f64(buf_t *b, size_t off, double v) { memcpy(b->b + off, &v, 8); }
static uint32_t get_u32(buf_t *b, size_t off) { uint32_t v; memcpy(&v, b->b + off, 4); return v; }

static void pad_to(buf_t *b, size_t align)
{
	static const uint8_t zero[64];
	if (b->n % align)
		put(b, zero, align - b->n % align);
}

static void put_strings(buf_t *b, const char *const *s, uint32_t n)
{
	put_u32(b, n);
	for (uint32_t i = 0; i < n; i++) {
		put_u32(b, (uint32_t)strlen(s[i]));
		put(b, s[i], strlen(s[i]));
	}
}

/* The tiny model: 1 or 2 layers, d = 4, 2 heads, FFN 8, 9 tokens. */
enum { D = 4, HEADS = 2, FFN = 8, MAXPOS = 8, TYPES = 2, LABELS = 2 };
static const char *vocab[] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
			       "hello", "world", "##s", "!" };
#define VOCAB 9

typedef struct {
	uint32_t layers;
	uint32_t combine_layer; /* == layers: none */
	uint32_t combine_tokens;
	uint32_t pooling;
	const char *skip;       /* leave out the tensor of this name */
	const char *extra;      /* add a [4] tensor of this name */
	int f16;                /* store weights as f16 */
} spec_t;

typedef struct {
	char name[64];
	uint32_t ndim;
	uint64_t dims[2];
} tdesc_t;

static int add_t(tdesc_t *t, int n, const spec_t *s, uint64_t d0, uint64_t d1,
		 const char *name)
{
	if (s->skip && !strcmp(s->skip, name))
		return n;
	snprintf(t[n].name, sizeof t[n].name, "%s", name);
	t[n].ndim = d1 ? 2 : 1;
	t[n].dims[0] = d0;
	t[n].dims[1] = d1;
	return n + 1;
}

static int list_tensors(const spec_t *s, tdesc_t *t)
{
	int n = 0;
	char nm[64];
	n = add_t(t, n, s, VOCAB, D, "embeddings.word.weight");
	n = add_t(t, n, s, MAXPOS, D, "embeddings.position.weight");
	n = add_t(t, n, s, TYPES, D, "embeddings.token_type.weight");
	n = add_t(t, n, s, D, 0, "embeddings.ln.weight");
	n = add_t(t, n, s, D, 0, "embeddings.ln.bias");
	for (uint32_t l = 0; l < s->layers; l++) {
		if (l == s->combine_layer)
			continue;
		static const struct { const char *n; uint64_t d0, d1; } lw[] = {
			{ "attn.qkv.weight", 3 * D, D }, { "attn.qkv.bias", 3 * D, 0 },
			{ "attn.out.weight", D, D }, { "attn.out.bias", D, 0 },
			{ "attn.ln.weight", D, 0 }, { "attn.ln.bias", D, 0 },
			{ "ffn.up.weight", FFN, D }, { "ffn.up.bias", FFN, 0 },
			{ "ffn.down.weight", D, FFN }, { "ffn.down.bias", D, 0 },
			{ "ffn.ln.weight", D, 0 }, { "ffn.ln.bias", D, 0 },
		};
		for (size_t k = 0; k < sizeof lw / sizeof lw[0]; k++) {
			snprintf(nm, sizeof nm, "encoder.%u.%s", l, lw[k].n);
			n = add_t(t, n, s, lw[k].d0, lw[k].d1, nm);
		}
	}
	if (s->pooling == 0 && s->combine_layer == s->layers) {
		n = add_t(t, n, s, D, D, "pooler.weight");
		n = add_t(t, n, s, D, 0, "pooler.bias");
	}
	n = add_t(t, n, s, LABELS, D, "classifier.weight");
	n = add_t(t, n, s, LABELS, 0, "classifier.bias");
	if (s->combine_layer < s->layers) {
		n = add_t(t, n, s, s->combine_tokens, D, "combine.tokens");
		static const char *cw[] = { "ln_c", "ln_e" };
		for (int k = 0; k < 2; k++) {
			snprintf(nm, sizeof nm, "combine.%s.weight", cw[k]);
			n = add_t(t, n, s, D, 0, nm);
			snprintf(nm, sizeof nm, "combine.%s.bias", cw[k]);
			n = add_t(t, n, s, D, 0, nm);
		}
		static const char *proj[] = { "q", "k", "v", "o" };
		for (int k = 0; k < 4; k++) {
			snprintf(nm, sizeof nm, "combine.%s.weight", proj[k]);
			n = add_t(t, n, s, D, D, nm);
			snprintf(nm, sizeof nm, "combine.%s.bias", proj[k]);
			n = add_t(t, n, s, D, 0, nm);
		}
	}
	if (s->extra)
		n = add_t(t, n, s, D, 0, s->extra);
	return n;
}

/* Offsets of interest in the last built file, for targeted corruption. */
static size_t tensor_table_at, first_entry_at, first_data_at;

static buf_t build(const spec_t *s)
{
	buf_t b = { 0 };
	tdesc_t t[128];
	int nt = list_tensors(s, t);
	static const uint8_t zero[256];
	static const char *info[] = { "tiny", "1.0" };
	static const char *labels[] = { "ham", "spam" };

	put(&b, zero, 256);
	memcpy(b.b, "WINNOWMF", 8);
	set_u32(&b, 8, 1);
	set_u32(&b, 12, 256);
	uint32_t u32s[] = { VOCAB, D, s->layers, HEADS, FFN, MAXPOS, TYPES, LABELS };
	for (int i = 0; i < 8; i++)
		set_u32(&b, 24 + 4 * i, u32s[i]);
	set_f64(&b, 56, 1e-12);
	set_f64(&b, 64, 1.0);
	set_u32(&b, 72, 1);              /* fuzzy */
	set_u32(&b, 76, 0);              /* budget */
	set_u32(&b, 80, s->combine_layer);
	set_u32(&b, 84, s->combine_tokens);
	set_u32(&b, 88, s->pooling);
	set_u32(&b, 92, 0);              /* gelu */
	set_u32(&b, 96, MAXPOS);         /* max_seq_len */
	set_u32(&b, 100, 1);
	set_u32(&b, 104, 100);
	uint32_t ids[] = { 2, 3, 1, 0, 4 };
	for (int i = 0; i < 5; i++)
		set_u32(&b, 108 + 4 * i, ids[i]);

	set_u64(&b, 128, b.n);
	put_strings(&b, info, 2);
	set_u64(&b, 136, b.n);
	put_strings(&b, labels, LABELS);
	set_u64(&b, 144, b.n);
	put_strings(&b, vocab, VOCAB);
	set_u64(&b, 152, tensor_table_at = b.n);
	put_u32(&b, (uint32_t)nt);
	size_t offset_field[128];
	for (int i = 0; i < nt; i++) {
		if (i == 0)
			first_entry_at = b.n;
		put_u32(&b, (uint32_t)strlen(t[i].name));
		put(&b, t[i].name, strlen(t[i].name));
		put_u32(&b, s->f16 ? 1 : 0);
		put_u32(&b, t[i].ndim);
		uint64_t elems = 1;
		for (uint32_t k = 0; k < t[i].ndim; k++) {
			put_u64(&b, t[i].dims[k]);
			elems *= t[i].dims[k];
		}
		offset_field[i] = b.n;
		put_u64(&b, 0);
		put_u64(&b, elems * (s->f16 ? 2 : 4));
	}
	pad_to(&b, 64);
	set_u64(&b, 160, b.n);
	uint32_t seed = 12345;
	for (int i = 0; i < nt; i++) {
		pad_to(&b, 64);
		if (i == 0)
			first_data_at = b.n;
		set_u64(&b, offset_field[i], b.n);
		uint64_t elems = 1;
		for (uint32_t k = 0; k < t[i].ndim; k++)
			elems *= t[i].dims[k];
		for (uint64_t e = 0; e < elems; e++) {
			seed = seed * 1103515245u + 12345u;
			float v = (float)((seed >> 16) % 2000) / 10000.0f - 0.1f;
			if (strstr(t[i].name, "ln") && strstr(t[i].name, "weight"))
				v += 1.0f;
			if (s->f16) {
				/* 0.25 steps are exact in half precision. */
				uint16_t h = v >= 0 ? 0x3400 : 0xB400; /* +-0.25 */
				put(&b, &h, 2);
			} else {
				put(&b, &v, 4);
			}
		}
	}
	set_u64(&b, 16, b.n);
	set_u32(&b, 168, (uint32_t)crc32_z(0, b.b + 256, b.n - 256));
	set_u32(&b, 172, (uint32_t)crc32_z(0, b.b, 172));
	return b;
}

static const spec_t plain = { .layers = 2, .combine_layer = 2 };

/* Writes the bytes to a temporary file and loads them. */
static winnow_model_t *load_bytes(const uint8_t *p, size_t n, char *err,
				  size_t err_size)
{
	char path[] = "/tmp/winnow-test-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
	close(fd);
	err[0] = '\0';
	winnow_model_t *m = winnow_model_load(path, NULL, err, err_size);
	unlink(path);
	return m;
}

/* Loads b and asserts failure with a message containing `expect`. */
static void expect_error(buf_t *b, const char *expect)
{
	char err[512];
	winnow_model_t *m = load_bytes(b->b, b->n, err, sizeof err);
	if (m)
		winnow_model_destroy(m);
	ck_assert_msg(m == NULL, "load succeeded, expected an error with '%s'", expect);
	ck_assert_msg(strstr(err, "cannot load model '") == err,
		      "error not worded as expected: %s", err);
	ck_assert_msg(strstr(err, expect) != NULL,
		      "error '%s' does not mention '%s'", err, expect);
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(valid_file_loads)
{
	buf_t b = build(&plain);
	char err[512];
	winnow_model_t *m = load_bytes(b.b, b.n, err, sizeof err);
	ck_assert_msg(m != NULL, "%s", err);
	const winnow_model_config_t *c = winnow_model_config(m);
	ck_assert_uint_eq(c->hidden_size, D);
	ck_assert_uint_eq(c->num_layers, 2);
	ck_assert_uint_eq(c->num_labels, LABELS);
	ck_assert_str_eq(c->name, "tiny");
	ck_assert_str_eq(c->version, "1.0");
	ck_assert_str_eq(winnow_model_label(m, 1), "spam");
	ck_assert_ptr_null(winnow_model_label(m, 2));
	ck_assert_int_eq(c->cls_id, 2);
	ck_assert_double_eq(c->keep_ratio, 1.0);
	ck_assert_int_eq(winnow_tokenizer_lookup(winnow_model_tokenizer(m), "##s", 3), 7);

	/* It runs: a window of [CLS] hello world [SEP] gives finite logits. */
	winnow_ctx_t *ctx = winnow_ctx_new(m, NULL, err, sizeof err);
	ck_assert_msg(ctx != NULL, "%s", err);
	int32_t ids[] = { 2, 5, 6, 3 };
	winnow_window_t w = { ids, 4 };
	float logits[LABELS];
	ck_assert_int_eq(winnow_ctx_forward(ctx, &w, 1, logits, err, sizeof err), WINNOW_OK);
	ck_assert(logits[0] == logits[0] && logits[1] == logits[1]);
	/* An id beyond the vocabulary is refused, not read out of bounds. */
	ids[1] = VOCAB;
	ck_assert_int_eq(winnow_ctx_forward(ctx, &w, 1, logits, err, sizeof err), WINNOW_ERR_ARG);
	ck_assert_ptr_nonnull(strstr(err, "id 9"));
	winnow_ctx_destroy(ctx);
	winnow_model_destroy(m);
	free(b.b);
}
END_TEST

START_TEST(f16_weights_are_widened)
{
	spec_t s = plain;
	s.f16 = 1;
	buf_t b = build(&s);
	char err[512];
	winnow_model_t *m = load_bytes(b.b, b.n, err, sizeof err);
	ck_assert_msg(m != NULL, "%s", err);
	winnow_model_destroy(m);
	free(b.b);
}
END_TEST

START_TEST(every_truncation_is_refused)
{
	buf_t b = build(&plain);
	char err[512];
	for (size_t n = 0; n < b.n; n++) {
		winnow_model_t *m = load_bytes(b.b, n, err, sizeof err);
		ck_assert_msg(m == NULL, "a file cut at %zu of %zu bytes loaded", n, b.n);
		ck_assert_msg(strstr(err, "cannot load model '") == err && strlen(err) > 30,
			      "cut at %zu: unclear error '%s'", n, err);
	}
	free(b.b);
}
END_TEST

START_TEST(missing_file_names_path)
{
	char err[512];
	winnow_model_t *m = winnow_model_load("/nonexistent/x.wnn", NULL, err, sizeof err);
	ck_assert_ptr_null(m);
	ck_assert_str_eq(err, "cannot load model '/nonexistent/x.wnn': No such file or directory");
}
END_TEST

/* One header field set to a bad value, and the words the error must hold. */
static const struct {
	size_t offset;
	int width;      /* 4, 8 (u64) or -8 (f64) */
	double value;
	const char *expect;
} bad_fields[] = {
	{ 0, 4, 0x41414141, "field 'magic' at offset 0 is not" },
	{ 8, 4, 2, "field 'version' at offset 8 is 2" },
	{ 12, 4, 128, "field 'header_size'" },
	{ 16, 8, 1e9, "field 'file_size' at offset 16" },
	{ 24, 4, 0, "field 'vocab_size' at offset 24 is 0" },
	{ 28, 4, 5, "field 'hidden_size' at offset 28 is 5, not a multiple of num_heads" },
	{ 32, 4, 0, "field 'num_layers'" },
	{ 36, 4, 0, "field 'num_heads'" },
	{ 52, 4, 0, "field 'num_labels'" },
	{ 56, -8, 0.0, "field 'layer_norm_eps'" },
	{ 64, -8, 0.0, "field 'keep_ratio' at offset 64 is 0" },
	{ 64, -8, 1.5, "field 'keep_ratio'" },
	{ 64, -8, NAN, "field 'keep_ratio'" },
	{ 72, 4, 2, "field 'fuzzy'" },
	{ 76, 4, 7, "field 'fuzzy_mode'" },
	{ 80, 4, 3, "field 'combine_layer' at offset 80 is 3, beyond num_layers 2" },
	{ 80, 4, 0, "field 'combine_layer' at offset 80 is 0" },
	{ 84, 4, 8, "field 'combine_tokens' at offset 84 is 8 but there is no combining module" },
	{ 88, 4, 2, "field 'pooling'" },
	{ 92, 4, 1, "field 'hidden_act'" },
	{ 96, 4, 9, "field 'max_seq_len' at offset 96 is 9, beyond max_position 8" },
	{ 108, 4, 9, "field 'cls_id' at offset 108 is 9, beyond vocab_size 9" },
	{ 128, 8, 10, "field 'info_offset'" },
	{ 152, 8, 1e8, "field 'tensors_offset'" },
	{ 160, 8, 257, "field 'data_offset'" },
	{ 200, 4, 1, "field 'reserved' at offset 200" },
	{ 168, 4, 1, "field 'header_crc32'" }, /* body_crc32 lies inside the header span */
	{ 172, 4, 1, "field 'header_crc32'" },
};

START_TEST(bad_header_field_is_named)
{
	buf_t b = build(&plain);
	size_t off = bad_fields[_i].offset;
	if (bad_fields[_i].width == 4)
		set_u32(&b, off, (uint32_t)bad_fields[_i].value);
	else if (bad_fields[_i].width == 8)
		set_u64(&b, off, (uint64_t)bad_fields[_i].value);
	else
		set_f64(&b, off, bad_fields[_i].value);
	expect_error(&b, bad_fields[_i].expect);
	free(b.b);
}
END_TEST

START_TEST(tensor_set_must_match_configuration)
{
	spec_t s = plain;
	s.skip = "encoder.1.ffn.up.bias";
	buf_t b = build(&s);
	expect_error(&b, "missing tensor 'encoder.1.ffn.up.bias'");
	free(b.b);

	s = plain;
	s.extra = "combine.ln_c.weight";
	b = build(&s);
	expect_error(&b, "unexpected tensor 'combine.ln_c.weight'");
	free(b.b);

	/* Combining module at layer 1 without its combination tokens. */
	s = plain;
	s.combine_layer = 1;
	s.combine_tokens = 2;
	s.skip = "combine.tokens";
	b = build(&s);
	expect_error(&b, "missing tensor 'combine.tokens'");
	free(b.b);

	/* A combine layer with m = 0. */
	s = plain;
	s.combine_layer = 1;
	s.combine_tokens = 2;
	b = build(&s);
	set_u32(&b, 84, 0);
	expect_error(&b, "field 'combine_tokens' at offset 84 is 0 but combine_layer 1");
	free(b.b);

	/* Layer P's weights are not used when the module replaces it. */
	s = plain;
	s.combine_layer = 1;
	s.combine_tokens = 2;
	s.extra = "encoder.1.attn.qkv.bias";
	b = build(&s);
	expect_error(&b, "unexpected tensor 'encoder.1.attn.qkv.bias'");
	free(b.b);
}
END_TEST

START_TEST(combining_model_loads)
{
	spec_t s = plain;
	s.combine_layer = 1;
	s.combine_tokens = 2;
	s.pooling = 1;
	buf_t b = build(&s);
	char err[512];
	winnow_model_t *m = load_bytes(b.b, b.n, err, sizeof err);
	ck_assert_msg(m != NULL, "%s", err);
	ck_assert_uint_eq(winnow_model_config(m)->combine_layer, 1);
	ck_assert_uint_eq(winnow_model_config(m)->combine_tokens, 2);
	winnow_model_destroy(m);
	free(b.b);
}
END_TEST

START_TEST(bad_tensor_entries_are_named)
{
	/* The first entry is embeddings.word.weight: name length 22. */
	size_t e = first_entry_at;
	buf_t b = build(&plain);
	e = first_entry_at;
	size_t dtype_at = e + 4 + 22, ndim_at = dtype_at + 4, dims_at = ndim_at + 4;
	size_t off_at = dims_at + 16, nbytes_at = off_at + 8;

	set_u32(&b, dtype_at, 9);
	expect_error(&b, "tensor 'embeddings.word.weight' (entry at offset");
	expect_error(&b, "dtype 9");
	set_u32(&b, dtype_at, 0);

	set_u32(&b, ndim_at, 5);
	expect_error(&b, "ndim 5");
	set_u32(&b, ndim_at, 2);

	set_u64(&b, dims_at, 10);
	expect_error(&b, "does not match its shape");
	set_u64(&b, nbytes_at, 10 * D * 4);
	expect_error(&b, "tensor 'embeddings.word.weight' (entry at offset");
	expect_error(&b, "has shape [10, 4], the configuration needs [9, 4]");
	set_u64(&b, dims_at, VOCAB);
	set_u64(&b, nbytes_at, VOCAB * D * 4);

	uint64_t good;
	memcpy(&good, b.b + off_at, 8);
	set_u64(&b, off_at, good + 4);
	expect_error(&b, "must be a multiple of 64");
	set_u64(&b, off_at, b.n / 64 * 64);
	expect_error(&b, "tensor 'embeddings.word.weight' ends at byte");
	set_u64(&b, off_at, good + 64 * ((VOCAB * D * 4 + 63) / 64));
	expect_error(&b, "overlaps tensor");
	set_u64(&b, off_at, good);

	/* A name with a control byte; then a name appearing twice. */
	b.b[e + 4] = '\n';
	expect_error(&b, "not printable ASCII");
	b.b[e + 4] = 'e';
	set_u32(&b, tensor_table_at, 0);
	expect_error(&b, "tensor table count");
	free(b.b);
}
END_TEST

START_TEST(corrupt_weights_fail_the_checksum)
{
	buf_t b = build(&plain);
	b.b[first_data_at + 5] ^= 0x40;
	expect_error(&b, "field 'body_crc32' at offset 168");
	expect_error(&b, "corrupt file");

	/* The same file loads when checksums are off (a user's choice). */
	char path[] = "/tmp/winnow-test-XXXXXX", err[512];
	int fd = mkstemp(path);
	ck_assert_int_eq(write(fd, b.b, b.n), (ssize_t)b.n);
	close(fd);
	winnow_model_params_t p = winnow_model_default_params();
	p.verify_checksums = 0;
	winnow_model_t *m = winnow_model_load(path, &p, err, sizeof err);
	unlink(path);
	ck_assert_msg(m != NULL, "%s", err);
	winnow_model_destroy(m);
	free(b.b);
}
END_TEST

START_TEST(bad_strings_are_named)
{
	buf_t b = build(&plain);
	uint64_t vocab_at;
	memcpy(&vocab_at, b.b + 144, 8);
	set_u32(&b, vocab_at, VOCAB + 1);
	expect_error(&b, "vocab count at offset");
	set_u32(&b, vocab_at, VOCAB);
	/* "[PAD]" -> invalid UTF-8 */
	b.b[vocab_at + 8] = 0xff;
	expect_error(&b, "vocab entry 0 at offset");
	expect_error(&b, "not valid UTF-8");
	b.b[vocab_at + 8] = '[';
	/* "[UNK]" renamed "[PAD]": a duplicate */
	memcpy(b.b + vocab_at + 4 + 4 + 5 + 4, "[PAD]", 5);
	expect_error(&b, "duplicate");
	free(b.b);
	(void)get_u32;
}
END_TEST

static Suite *model_file_suite(void)
{
	Suite *s = suite_create("model_file");
	TCase *tc = tcase_create("load");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, valid_file_loads);
	tcase_add_test(tc, f16_weights_are_widened);
	tcase_add_test(tc, every_truncation_is_refused);
	tcase_add_test(tc, missing_file_names_path);
	tcase_add_loop_test(tc, bad_header_field_is_named, 0,
			    sizeof bad_fields / sizeof bad_fields[0]);
	tcase_add_test(tc, tensor_set_must_match_configuration);
	tcase_add_test(tc, combining_model_loads);
	tcase_add_test(tc, bad_tensor_entries_are_named);
	tcase_add_test(tc, corrupt_weights_fail_the_checksum);
	tcase_add_test(tc, bad_strings_are_named);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return winnow_check_run(model_file_suite());
}
