/*
 * tokenizer.c: WordPiece tokenization exactly as Hugging Face's
 * BertTokenizer (do_lower_case, tokenize_chinese_chars, accents stripped),
 * with the byte span of every token in the original text.
 *
 * BertTokenizer runs its steps one after the other over whole strings:
 *
 *   1. clean_text: drop NUL, U+FFFD and controls (category C* except \t \n
 *      \r); whitespace (\t \n \r, Zs) becomes a space;
 *   2. a space around each CJK ideograph;
 *   3. split on whitespace as Python's str.split() (which also splits on
 *      U+2028 and U+2029, the only such characters step 1 leaves);
 *   4. per word: str.lower() (full mapping, Greek final sigma), NFD, drop
 *      every Mn;
 *   5. each punctuation character becomes a word of its own;
 *   6. WordPiece: a word of more than max_chars_per_word code points is
 *      [UNK]; otherwise greedy longest match, continuation pieces looked up
 *      with "##", and a word with an unmatched position is one [UNK].
 *
 * Here the same steps run as one pass over the input. Each input code point
 * is classified with one table lookup (model/unicode.h holds NFD(lower(cp))
 * precomputed), its output code points are appended to the current word
 * (step 5's unit) together with the byte span of the input code point they
 * come from, and a word is handed to WordPiece as soon as it ends. The only
 * context the steps need is kept in small state: whether the previous
 * character of the step-3 word was cased (final sigma looks back), a
 * forward scan when a capital sigma is met (it also looks ahead), and the
 * start of the current run of non-zero combining classes (NFD's canonical
 * reordering).
 *
 * Plain ASCII letters and digits, the bulk of e-mail text, take a path with
 * no table lookup. A word never grows past max_chars_per_word + 1 stored
 * code points: beyond that it is [UNK] whatever it holds, so only its span
 * is followed. Nothing is allocated per word or per call (with the default
 * max_chars_per_word); the output arrays grow geometrically and are reused.
 *
 * Spans: a token covers the input bytes of the code points it was made
 * from; a removed mark belongs to no token ("cafe" + U+0301 gives "cafe" at
 * bytes 0..4), an [UNK] word covers the whole word.
 *
 * Deliberately not reproduced: BertTokenizer.tokenize() first cuts literal
 * special tokens ("[SEP]") out of the text; documents are untrusted and must
 * not inject control tokens, so here "[SEP]" is "[", "sep", "]". Recent
 * transformers releases also NFC-normalise before step 3, which changes
 * nothing in the uncased mode (step 4 decomposes again).
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "unicode.h"
#include "winnow_model.h"

#define FNV_BASIS 2166136261u
#define FNV_PRIME 16777619u

/* Bounds that keep the per-call scratch small and every offset in 32 bits. */
#define MAX_CHARS_PER_WORD_LIMIT 10000
#define VOCAB_FILE_LIMIT (1u << 30)
/* Words up to this many code points use scratch on the stack. */
#define STACK_WORD 128

struct vocab_slot {
	uint32_t hash;
	int32_t id;	/* -1: empty */
};

struct winnow_tokenizer_s {
	winnow_tokenizer_params_t params;
	int32_t unk_id;
	size_t n;
	char *blob;		/* the tokens, each NUL-terminated */
	uint32_t *off;		/* token i is blob[off[i] .. off[i + 1] - 1) */
	struct vocab_slot *slots; /* open addressing, linear probing */
	uint32_t mask;
	/*
	 * A Bloom filter over the same hashes, small enough for L1: WordPiece
	 * probes mostly miss (it tries the longest candidates first), and a
	 * miss here costs no walk through the 512 KB slot table. Random
	 * strings (base64 in mail) get several times faster.
	 */
	uint64_t *bloom;
	uint32_t bloom_shift;	/* 32 - log2(bits) */
	/* The longest piece to try, in code points ("##" not counted). */
	uint32_t max_piece;
	uint32_t cont_hash;	/* FNV-1a state after hashing "##" */
};

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
	va_list ap;

	if (!errstr || !errstr_size)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errstr_size, fmt, ap);
	va_end(ap);
}

static inline uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * FNV_PRIME;
	return h;
}

static inline uint32_t slot_index(uint32_t h, uint32_t mask)
{
	/* FNV's low bits are weak on short keys: fold the high ones in. */
	return (h ^ (h >> 16)) & mask;
}

/* Two filter bits per key, from independent-enough mixes of its hash. */
static inline uint32_t bloom_bit1(uint32_t h, uint32_t shift)
{
	return (h * 0x9E3779B1u) >> shift;
}

static inline uint32_t bloom_bit2(uint32_t h, uint32_t shift)
{
	return ((h ^ (h >> 15)) * 0x85EBCA77u) >> shift;
}

static inline int bloom_maybe(const winnow_tokenizer_t *tok, uint32_t h)
{
	uint32_t a = bloom_bit1(h, tok->bloom_shift), b = bloom_bit2(h, tok->bloom_shift);

	return (tok->bloom[a >> 6] >> (a & 63) & 1) && (tok->bloom[b >> 6] >> (b & 63) & 1);
}

/*
 * Decodes one UTF-8 sequence of at most avail bytes; returns its length, or
 * 0 when it is ill-formed (overlong, surrogate, > U+10FFFF, truncated, a
 * stray continuation byte or F5..FF), as RFC 3629 defines it.
 */
static inline unsigned utf8_decode(const uint8_t *p, size_t avail, uint32_t *cp)
{
	uint8_t c = p[0];

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c < 0xC2)
		return 0;
	if (c < 0xE0) {
		if (avail < 2 || (p[1] & 0xC0) != 0x80)
			return 0;
		*cp = (uint32_t)(c & 0x1F) << 6 | (p[1] & 0x3F);
		return 2;
	}
	if (c < 0xF0) {
		uint8_t lo = c == 0xE0 ? 0xA0 : 0x80;
		uint8_t hi = c == 0xED ? 0x9F : 0xBF;

		if (avail < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
			return 0;
		*cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 |
		      (p[2] & 0x3F);
		return 3;
	}
	if (c < 0xF5) {
		uint8_t lo = c == 0xF0 ? 0x90 : 0x80;
		uint8_t hi = c == 0xF4 ? 0x8F : 0xBF;

		if (avail < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 ||
		    (p[3] & 0xC0) != 0x80)
			return 0;
		*cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 |
		      (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
		return 4;
	}
	return 0;
}

static inline unsigned utf8_encode(uint32_t cp, uint8_t *p)
{
	if (cp < 0x80) {
		p[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		p[0] = (uint8_t)(0xC0 | cp >> 6);
		p[1] = (uint8_t)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		p[0] = (uint8_t)(0xE0 | cp >> 12);
		p[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		p[2] = (uint8_t)(0x80 | (cp & 0x3F));
		return 3;
	}
	p[0] = (uint8_t)(0xF0 | cp >> 18);
	p[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
	p[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
	p[3] = (uint8_t)(0x80 | (cp & 0x3F));
	return 4;
}

/* Code points of a valid UTF-8 string. */
static size_t utf8_count(const uint8_t *p, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += (p[i] & 0xC0) != 0x80;
	return k;
}

static int utf8_valid(const uint8_t *p, size_t n)
{
	uint32_t cp;

	for (size_t i = 0; i < n;) {
		unsigned k = utf8_decode(p + i, n - i, &cp);

		if (!k)
			return 0;
		i += k;
	}
	return 1;
}

/* ------------------------------------------------------------------------
 * Vocabulary
 * ---------------------------------------------------------------------- */

winnow_tokenizer_params_t winnow_tokenizer_default_params(void)
{
	winnow_tokenizer_params_t p = {
		.do_lower_case = 1,
		.max_chars_per_word = 100,
		.unk_id = -1,
	};
	return p;
}

/*
 * Looks up the token cont ? "##" s : s, whose FNV-1a hash is h. The vocabulary
 * is keyed by its full text; continuation lookups compare the "##" apart so
 * that WordPiece never copies a candidate piece.
 */
static int32_t vocab_find(const winnow_tokenizer_t *tok, uint32_t h, int cont,
			  const uint8_t *s, size_t len)
{
	size_t want = len + (cont ? 2 : 0);

	if (!bloom_maybe(tok, h))
		return -1;
	for (uint32_t i = slot_index(h, tok->mask);; i = (i + 1) & tok->mask) {
		const struct vocab_slot *sl = &tok->slots[i];
		const char *t;

		if (sl->id < 0)
			return -1;
		if (sl->hash != h)
			continue;
		t = tok->blob + tok->off[sl->id];
		if (tok->off[sl->id + 1] - tok->off[sl->id] - 1 != want)
			continue;
		if (cont) {
			if (t[0] != '#' || t[1] != '#')
				continue;
			t += 2;
		}
		if (!memcmp(t, s, len))
			return sl->id;
	}
}

/* winnow_tokenizer_new, with the bare reason of a failure in errstr. */
static winnow_tokenizer_t *tokenizer_build(const char *const *tokens,
					   const uint32_t *lens, size_t n,
					   const winnow_tokenizer_params_t *params,
					   char *errstr, size_t errstr_size)
{
	winnow_tokenizer_params_t p = params ? *params : winnow_tokenizer_default_params();
	winnow_tokenizer_t *tok;
	size_t total = 0, cap, bits;
	unsigned log2bits;

	if (!n) {
		set_err(errstr, errstr_size, "the vocabulary is empty");
		return NULL;
	}
	if (!tokens || !lens) {
		set_err(errstr, errstr_size, "the token array is NULL");
		return NULL;
	}
	if (n > INT32_MAX / 2) {
		set_err(errstr, errstr_size,
			"%zu tokens, at most %d are supported", n,
			INT32_MAX / 2);
		return NULL;
	}
	if (p.max_chars_per_word < 1 || p.max_chars_per_word > MAX_CHARS_PER_WORD_LIMIT) {
		set_err(errstr, errstr_size,
			"max_chars_per_word %d is not in 1..%d",
			p.max_chars_per_word, MAX_CHARS_PER_WORD_LIMIT);
		return NULL;
	}
	if (p.unk_id >= 0 && (size_t)p.unk_id >= n) {
		set_err(errstr, errstr_size,
			"unk_id %d is out of range (the vocabulary has %zu tokens)",
			p.unk_id, n);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (lens[i] && !tokens[i]) {
			set_err(errstr, errstr_size, "token %zu is NULL", i);
			return NULL;
		}
		if (!utf8_valid((const uint8_t *)tokens[i], lens[i])) {
			set_err(errstr, errstr_size,
				"token %zu is not valid UTF-8", i);
			return NULL;
		}
		total += (size_t)lens[i] + 1;
		if (total > UINT32_MAX) {
			set_err(errstr, errstr_size,
				"more than 4 GiB of token text");
			return NULL;
		}
	}

	tok = calloc(1, sizeof(*tok));
	if (!tok)
		goto out_nomem;
	tok->params = p;
	tok->n = n;
	for (cap = 16; cap < 2 * n; cap *= 2)
		;
	tok->mask = (uint32_t)cap - 1;
	/* About 8 bits per token: 32 KB for BERT's 30522, 4% false hits. */
	for (log2bits = 9, bits = 512; bits < 8 * n && log2bits < 31; log2bits++)
		bits *= 2;
	tok->bloom_shift = 32 - log2bits;
	tok->blob = malloc(total);
	tok->off = malloc((n + 1) * sizeof(*tok->off));
	tok->slots = malloc(cap * sizeof(*tok->slots));
	tok->bloom = calloc(bits / 64, sizeof(*tok->bloom));
	if (!tok->blob || !tok->off || !tok->slots || !tok->bloom)
		goto out_free_tok;
	for (size_t i = 0; i < cap; i++)
		tok->slots[i].id = -1;
	tok->cont_hash = fnv1a(FNV_BASIS, (const uint8_t *)"##", 2);

	total = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *s = (const uint8_t *)tokens[i];
		uint32_t len = lens[i], h, j;
		size_t piece;

		tok->off[i] = (uint32_t)total;
		if (len)
			memcpy(tok->blob + total, s, len);
		tok->blob[total + len] = '\0';
		total += (size_t)len + 1;

		/*
		 * A repeated token keeps the last id, as in Hugging Face's
		 * load_vocab (a dict filled line by line).
		 */
		h = fnv1a(FNV_BASIS, s, len);
		j = bloom_bit1(h, tok->bloom_shift);
		tok->bloom[j >> 6] |= 1ull << (j & 63);
		j = bloom_bit2(h, tok->bloom_shift);
		tok->bloom[j >> 6] |= 1ull << (j & 63);
		for (j = slot_index(h, tok->mask);; j = (j + 1) & tok->mask) {
			struct vocab_slot *sl = &tok->slots[j];

			if (sl->id < 0) {
				sl->hash = h;
				sl->id = (int32_t)i;
				break;
			}
			if (sl->hash == h &&
			    tok->off[sl->id + 1] - tok->off[sl->id] - 1 == len &&
			    !memcmp(tok->blob + tok->off[sl->id], s, len)) {
				sl->id = (int32_t)i;
				break;
			}
		}
		/* off[i + 1] is needed by the comparison above for later ids. */
		tok->off[i + 1] = (uint32_t)total;

		piece = len >= 2 && s[0] == '#' && s[1] == '#' ?
			utf8_count(s + 2, len - 2) : utf8_count(s, len);
		if (piece > tok->max_piece)
			tok->max_piece = (uint32_t)(piece < UINT32_MAX ? piece : UINT32_MAX);
	}
	if ((uint32_t)p.max_chars_per_word < tok->max_piece)
		tok->max_piece = (uint32_t)p.max_chars_per_word;

	if (p.unk_id >= 0) {
		tok->unk_id = p.unk_id;
	} else {
		tok->unk_id = winnow_tokenizer_lookup(tok, "[UNK]", 5);
		if (tok->unk_id < 0) {
			set_err(errstr, errstr_size,
				"no '[UNK]' token, and no unk_id was given");
			winnow_tokenizer_destroy(tok);
			return NULL;
		}
	}
	return tok;

out_free_tok:
	winnow_tokenizer_destroy(tok);
out_nomem:
	set_err(errstr, errstr_size, "out of memory");
	return NULL;
}

winnow_tokenizer_t *winnow_tokenizer_new(const char *const *tokens,
					 const uint32_t *lens, size_t n,
					 const winnow_tokenizer_params_t *params,
					 char *errstr, size_t errstr_size)
{
	winnow_tokenizer_t *tok;
	char why[256];

	tok = tokenizer_build(tokens, lens, n, params, why, sizeof(why));
	if (!tok)
		set_err(errstr, errstr_size, "cannot build tokenizer: %s", why);
	return tok;
}

winnow_tokenizer_t *winnow_tokenizer_load_vocab(const char *path,
						const winnow_tokenizer_params_t *params,
						char *errstr, size_t errstr_size)
{
	winnow_tokenizer_t *tok = NULL;
	const char **tokens = NULL;
	uint32_t *lens = NULL;
	char *data = NULL;
	size_t size = 0, n = 0, i, start;
	struct stat st;
	FILE *f;
	char why[256];

	if (!path) {
		set_err(errstr, errstr_size, "cannot open vocabulary: no path given");
		return NULL;
	}
	f = fopen(path, "rb");
	if (!f) {
		set_err(errstr, errstr_size, "cannot open vocabulary '%s': %s", path,
			strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) < 0) {
		set_err(errstr, errstr_size, "cannot stat vocabulary '%s': %s", path,
			strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > VOCAB_FILE_LIMIT) {
		set_err(errstr, errstr_size,
			"cannot load vocabulary '%s': not a regular file of at most %u bytes",
			path, VOCAB_FILE_LIMIT);
		goto out_close;
	}
	size = (size_t)st.st_size;
	data = malloc(size + 1);
	if (!data) {
		set_err(errstr, errstr_size, "cannot load vocabulary '%s': out of memory", path);
		goto out_close;
	}
	if (size && fread(data, 1, size, f) != size) {
		set_err(errstr, errstr_size, "cannot read vocabulary '%s': %s", path,
			ferror(f) ? strerror(errno) : "file shrank while reading");
		goto out_free_data;
	}

	/*
	 * One token per line; a final newline does not start another token.
	 * A trailing '\r' is dropped: a CRLF vocab.txt would otherwise give
	 * tokens that can never match (HF strips only '\n').
	 */
	for (i = 0; i < size; i++)
		n += data[i] == '\n';
	if (size && data[size - 1] != '\n')
		n++;
	if (!n) {
		set_err(errstr, errstr_size, "cannot load vocabulary '%s': file is empty", path);
		goto out_free_data;
	}
	tokens = malloc(n * sizeof(*tokens));
	lens = malloc(n * sizeof(*lens));
	if (!tokens || !lens) {
		set_err(errstr, errstr_size, "cannot load vocabulary '%s': out of memory", path);
		goto out_free_arrays;
	}
	n = 0;
	for (i = start = 0; i <= size; i++) {
		size_t end = i;

		if (i < size && data[i] != '\n')
			continue;
		if (i == size && start == size)
			break;
		if (end > start && data[end - 1] == '\r')
			end--;
		if (!utf8_valid((const uint8_t *)data + start, end - start)) {
			set_err(errstr, errstr_size,
				"cannot load vocabulary '%s': line %zu is not valid UTF-8",
				path, n + 1);
			goto out_free_arrays;
		}
		tokens[n] = data + start;
		lens[n] = (uint32_t)(end - start);
		n++;
		start = i + 1;
	}

	tok = tokenizer_build(tokens, lens, n, params, why, sizeof(why));
	if (!tok)
		set_err(errstr, errstr_size, "cannot load vocabulary '%s': %s", path, why);

out_free_arrays:
	free(tokens);
	free(lens);
out_free_data:
	free(data);
out_close:
	fclose(f);
	return tok;
}

void winnow_tokenizer_destroy(winnow_tokenizer_t *tok)
{
	if (!tok)
		return;
	free(tok->blob);
	free(tok->off);
	free(tok->slots);
	free(tok->bloom);
	free(tok);
}

size_t winnow_tokenizer_vocab_size(const winnow_tokenizer_t *tok)
{
	return tok ? tok->n : 0;
}

const char *winnow_tokenizer_token(const winnow_tokenizer_t *tok, int32_t id,
				   size_t *len)
{
	if (!tok || id < 0 || (size_t)id >= tok->n) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = tok->off[id + 1] - tok->off[id] - 1;
	return tok->blob + tok->off[id];
}

int32_t winnow_tokenizer_lookup(const winnow_tokenizer_t *tok, const char *s,
				size_t len)
{
	const uint8_t *p = (const uint8_t *)s;

	if (!tok || (!s && len))
		return -1;
	if (len >= 2 && p[0] == '#' && p[1] == '#')
		return vocab_find(tok, fnv1a(tok->cont_hash, p + 2, len - 2), 1,
				  p + 2, len - 2);
	return vocab_find(tok, fnv1a(FNV_BASIS, p, len), 0, p, len);
}

void winnow_tokens_free(winnow_tokens_t *t)
{
	if (!t)
		return;
	free(t->id);
	free(t->start);
	free(t->end);
	memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------------
 * Encoding
 * ---------------------------------------------------------------------- */

/*
 * The word being built (step 5's unit), after lower-casing, NFD and mark
 * removal: code point k came from input bytes [src_start[k], src_end[k]).
 * At most cap = max_chars_per_word + 1 code points are stored; n keeps
 * counting past that, and such a word is [UNK].
 */
struct word {
	uint32_t *cp;
	uint32_t *src_start;
	uint32_t *src_end;
	uint8_t *ccc;
	uint8_t *bytes;		/* UTF-8 of cp[], built for WordPiece */
	uint32_t *boff;		/* cp[k] is bytes[boff[k] .. boff[k + 1]) */
	uint32_t *hash;		/* FNV-1a of the candidate pieces */
	uint32_t cap;
	uint32_t n;
	uint32_t start, end;	/* input bytes of the whole word */
	uint32_t run;		/* first index of the current ccc != 0 run */
	int unsorted;		/* that run is out of canonical order */
	int reordered;		/* some run of this word was reordered */
};

struct encoder {
	const winnow_tokenizer_t *tok;
	const uint8_t *text;
	size_t len;
	winnow_tokens_t *out;
	struct word w;
	int prev_cased;		/* final sigma: cased letter before, in the word */
};

static int tokens_grow(winnow_tokens_t *t)
{
	size_t cap = t->cap ? t->cap * 2 : 256;
	void *p;

	/* Each array keeps its old contents; t->cap moves only once all grew. */
	p = realloc(t->id, cap * sizeof(*t->id));
	if (!p)
		return -1;
	t->id = p;
	p = realloc(t->start, cap * sizeof(*t->start));
	if (!p)
		return -1;
	t->start = p;
	p = realloc(t->end, cap * sizeof(*t->end));
	if (!p)
		return -1;
	t->end = p;
	t->cap = cap;
	return 0;
}

static inline int emit(struct encoder *e, int32_t id, uint32_t start, uint32_t end)
{
	winnow_tokens_t *t = e->out;

	if (t->n == t->cap && tokens_grow(t) < 0)
		return -1;
	t->id[t->n] = id;
	t->start[t->n] = start;
	t->end[t->n] = end;
	t->n++;
	return 0;
}

/* Canonical ordering (UAX #15): a stable sort of the run by ccc. */
static void word_end_run(struct word *w)
{
	assert(w->run <= w->n);
	if (w->unsorted && w->n <= w->cap) {
		for (uint32_t i = w->run + 1; i < w->n; i++) {
			uint32_t cp = w->cp[i], s = w->src_start[i], t = w->src_end[i];
			uint8_t c = w->ccc[i];
			uint32_t j = i;

			for (; j > w->run && w->ccc[j - 1] > c; j--) {
				w->cp[j] = w->cp[j - 1];
				w->src_start[j] = w->src_start[j - 1];
				w->src_end[j] = w->src_end[j - 1];
				w->ccc[j] = w->ccc[j - 1];
			}
			w->cp[j] = cp;
			w->src_start[j] = s;
			w->src_end[j] = t;
			w->ccc[j] = c;
		}
		w->reordered = 1;
	}
	w->unsorted = 0;
	w->run = w->n;
}

static inline void word_push(struct word *w, uint32_t cp, uint8_t ccc,
			     uint32_t start, uint32_t end)
{
	if (!ccc) {
		if (w->run != w->n)
			word_end_run(w);
		w->run = w->n + 1;
	} else if (w->n > w->run && w->n <= w->cap && w->ccc[w->n - 1] > ccc) {
		w->unsorted = 1;
	}
	if (!w->n)
		w->start = start;
	w->end = end;
	if (w->n < w->cap) {
		w->cp[w->n] = cp;
		w->src_start[w->n] = start;
		w->src_end[w->n] = end;
		w->ccc[w->n] = ccc;
	}
	w->n++;
}

/* The input span of the code points [a, b) of the word. */
static inline void word_span(const struct word *w, uint32_t a, uint32_t b,
			     uint32_t *start, uint32_t *end)
{
	uint32_t s = w->src_start[a], t = w->src_end[b - 1];

	if (w->reordered) {
		for (uint32_t k = a; k < b; k++) {
			if (w->src_start[k] < s)
				s = w->src_start[k];
			if (w->src_end[k] > t)
				t = w->src_end[k];
		}
	}
	*start = s;
	*end = t;
}

/* Step 6: WordPiece over the finished word; the word is then empty. */
static int word_flush(struct encoder *e)
{
	const winnow_tokenizer_t *tok = e->tok;
	struct word *w = &e->w;
	size_t first = e->out->n;
	uint32_t n = w->n, s, pos = 0;
	int rc = 0;

	if (!n)
		return 0;
	if (w->run != n)
		word_end_run(w);
	if (n > (uint32_t)tok->params.max_chars_per_word)
		goto unk;
	assert(n < w->cap && tok->max_piece < w->cap);

	for (uint32_t k = 0; k < n; k++) {
		w->boff[k] = pos;
		pos += utf8_encode(w->cp[k], w->bytes + pos);
	}
	w->boff[n] = pos;

	for (s = 0; s < n;) {
		uint32_t emax = n - s < tok->max_piece ? n : s + tok->max_piece;
		uint32_t h = s ? tok->cont_hash : FNV_BASIS, stop, start, end;
		int32_t id = -1;

		/* Hash every prefix once, then try them longest first. */
		for (stop = s + 1; stop <= emax; stop++) {
			h = fnv1a(h, w->bytes + w->boff[stop - 1], w->boff[stop] - w->boff[stop - 1]);
			w->hash[stop - s - 1] = h;
		}
		for (stop = emax; stop > s; stop--) {
			if (!bloom_maybe(tok, w->hash[stop - s - 1]))
				continue;
			id = vocab_find(tok, w->hash[stop - s - 1], s > 0,
					w->bytes + w->boff[s], w->boff[stop] - w->boff[s]);
			if (id >= 0)
				break;
		}
		if (id < 0) {
			/* One unmatched position makes the whole word [UNK]. */
			e->out->n = first;
			goto unk;
		}
		word_span(w, s, stop, &start, &end);
		if (emit(e, id, start, end) < 0) {
			rc = -1;
			goto out_reset;
		}
		s = stop;
	}
	goto out_reset;

unk:
	if (emit(e, tok->unk_id, w->start, w->end) < 0)
		rc = -1;
out_reset:
	w->n = 0;
	w->run = 0;
	w->unsorted = 0;
	w->reordered = 0;
	return rc;
}

/* Adds one normalized code point; punctuation is a word of its own. */
static inline int put(struct encoder *e, uint32_t cp, uint8_t ccc, int mn,
		      int punct, uint32_t start, uint32_t end)
{
	if (mn) {
		/*
		 * Removed, but a mark of class 0 still ends the reordering
		 * run it would have ended had it stayed.
		 */
		if (!ccc && e->w.run != e->w.n)
			word_end_run(&e->w);
		return 0;
	}
	if (punct) {
		if (word_flush(e) < 0)
			return -1;
		word_push(&e->w, cp, ccc, start, end);
		return word_flush(e);
	}
	word_push(&e->w, cp, ccc, start, end);
	return 0;
}

/*
 * Final sigma, looking ahead: is the next character of the step-3 word that
 * is not Case_Ignorable a cased one? Characters clean_text drops are not in
 * the word; a word break or the end of the text is not cased. Invalid UTF-8
 * stops the scan (the main loop reports it).
 */
static int next_is_cased(const uint8_t *text, size_t pos, size_t len)
{
	while (pos < len) {
		const struct winnow_uchar *u;
		uint32_t cp;
		unsigned k = utf8_decode(text + pos, len - pos, &cp);

		if (!k)
			return 0;
		u = winnow_uchar(cp);
		if (!(u->flags & (U_DROP | U_CASE_IGNORABLE)))
			return (u->flags & U_CASED) != 0;
		pos += k;
	}
	return 0;
}

/* Steps 1 to 5 for one input code point at bytes [start, end). */
static int feed(struct encoder *e, uint32_t cp, uint32_t start, uint32_t end)
{
	const struct winnow_uchar *u = winnow_uchar(cp);
	uint32_t out;

	if (u->flags & U_DROP)
		return 0;
	if (u->flags & U_SPACE) {
		e->prev_cased = 0;
		return word_flush(e);
	}
	if (!e->tok->params.do_lower_case) {
		/* Cased: no lower-casing, no NFD, no mark removal. */
		if (u->flags & U_CJK) {
			e->prev_cased = 0;
			return put(e, cp, 0, 0, 1, start, end);
		}
		return put(e, cp, 0, 0, (u->flags & U_PUNCT) != 0, start, end);
	}
	if (u->flags & U_CJK) {
		/* A word of its own, like punctuation (and never an Mn). */
		e->prev_cased = 0;
		return put(e, (uint32_t)((int32_t)cp + u->arg), 0, 0, 1, start, end);
	}
	if (cp - WINNOW_HANGUL_FIRST < WINNOW_HANGUL_COUNT) {
		/* Algorithmic NFD: leading consonant, vowel, optional trailing. */
		uint32_t s = cp - WINNOW_HANGUL_FIRST;

		e->prev_cased = 0;
		word_push(&e->w, 0x1100 + s / 588, 0, start, end);
		word_push(&e->w, 0x1161 + s % 588 / 28, 0, start, end);
		if (s % 28)
			word_push(&e->w, 0x11A7 + s % 28, 0, start, end);
		return 0;
	}

	out = (uint32_t)((int32_t)cp + u->arg);
	if (cp == 0x3A3 && e->prev_cased && !next_is_cased(e->text, end, e->len))
		out = 0x3C2;
	if (!(u->flags & U_CASE_IGNORABLE))
		e->prev_cased = (u->flags & U_CASED) != 0;

	if (!u->seq_len)
		return put(e, out, u->ccc, (u->flags & U_OUT_MN) != 0,
			   (u->flags & U_OUT_PUNCT) != 0, start, end);
	for (unsigned k = 0; k < u->seq_len; k++) {
		uint32_t v = winnow_useq[u->arg + k];

		if (put(e, WINNOW_USEQ_CP(v), (uint8_t)WINNOW_USEQ_CCC(v),
			(v & WINNOW_USEQ_MN) != 0, (v & WINNOW_USEQ_PUNCT) != 0,
			start, end) < 0)
			return -1;
	}
	return 0;
}

winnow_err_t winnow_tokenizer_encode(const winnow_tokenizer_t *tok,
				     const char *text, size_t len,
				     winnow_tokens_t *out,
				     char *errstr, size_t errstr_size)
{
	/* Scratch for the default max_chars_per_word: nothing to allocate. */
	uint32_t s_cp[STACK_WORD + 1], s_start[STACK_WORD + 1], s_end[STACK_WORD + 1];
	uint32_t s_boff[STACK_WORD + 2], s_hash[STACK_WORD + 1];
	uint8_t s_ccc[STACK_WORD + 1], s_bytes[4 * (STACK_WORD + 1)];
	const uint8_t *p = (const uint8_t *)text;
	struct encoder e;
	struct word *w = &e.w;
	void *heap = NULL;
	winnow_err_t err = WINNOW_OK;
	int lower;
	size_t i;

	if (!tok || !out || (!text && len)) {
		set_err(errstr, errstr_size, "cannot tokenize: NULL argument");
		return WINNOW_ERR_ARG;
	}
	out->n = 0;
	if (len > UINT32_MAX) {
		set_err(errstr, errstr_size,
			"cannot tokenize: text of %zu bytes is over the 4 GiB limit", len);
		return WINNOW_ERR_TOO_LARGE;
	}

	memset(&e, 0, sizeof(e));
	e.tok = tok;
	e.text = p;
	e.len = len;
	e.out = out;
	w->cap = (uint32_t)tok->params.max_chars_per_word + 1;
	if (w->cap <= STACK_WORD + 1) {
		w->cp = s_cp;
		w->src_start = s_start;
		w->src_end = s_end;
		w->ccc = s_ccc;
		w->bytes = s_bytes;
		w->boff = s_boff;
		w->hash = s_hash;
	} else {
		/* Five uint32_t arrays (boff has one more), then ccc and bytes. */
		size_t c = w->cap;
		uint8_t *mem = malloc((5 * c + 1) * sizeof(uint32_t) + c + 4 * c);

		if (!mem)
			goto out_nomem;
		heap = mem;
		w->cp = (uint32_t *)mem;
		w->src_start = w->cp + c;
		w->src_end = w->src_start + c;
		w->hash = w->src_end + c;
		w->boff = w->hash + c;
		w->ccc = (uint8_t *)(w->boff + c + 1);
		w->bytes = w->ccc + c;
	}

	lower = tok->params.do_lower_case;
	for (i = 0; i < len;) {
		uint8_t c = p[i];
		uint32_t cp;
		unsigned k;

		/* The common case: ASCII letters and digits, no table lookup. */
		if ((uint8_t)((c | 0x20) - 'a') < 26 || (uint8_t)(c - '0') < 10) {
			uint32_t cl = c;

			if ((uint8_t)(c - 'A') < 26) {
				cl = lower ? c | 0x20u : c;
				e.prev_cased = 1;
			} else {
				e.prev_cased = c >= 'a';
			}
			if (w->n == w->run && w->n < w->cap) {
				/* Inline word_push for a ccc 0 code point. */
				if (!w->n)
					w->start = (uint32_t)i;
				w->cp[w->n] = cl;
				w->src_start[w->n] = (uint32_t)i;
				w->src_end[w->n] = (uint32_t)i + 1;
				w->ccc[w->n] = 0;
				w->n++;
				w->run = w->n;
				w->end = (uint32_t)i + 1;
			} else {
				word_push(w, cl, 0, (uint32_t)i, (uint32_t)i + 1);
			}
			i++;
			continue;
		}
		if (c == ' ') {
			e.prev_cased = 0;
			if (word_flush(&e) < 0)
				goto out_nomem;
			i++;
			continue;
		}
		k = utf8_decode(p + i, len - i, &cp);
		if (!k) {
			out->n = 0;
			set_err(errstr, errstr_size, "invalid UTF-8 at byte %zu", i);
			err = WINNOW_ERR_INVALID_UTF8;
			goto out_free;
		}
		if (feed(&e, cp, (uint32_t)i, (uint32_t)(i + k)) < 0)
			goto out_nomem;
		i += k;
	}
	if (word_flush(&e) < 0)
		goto out_nomem;
	goto out_free;

out_nomem:
	out->n = 0;
	set_err(errstr, errstr_size, "cannot tokenize: out of memory");
	err = WINNOW_ERR_NOMEM;
out_free:
	free(heap);
	return err;
}
