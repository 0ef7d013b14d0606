/*
 * test_tokenizer.c: the WordPiece tokenizer against the conformance fixture
 * (tests/fixtures/tokenizer/, written by scripts/make_tokenizer_fixture.py
 * from the Python reference), plus spans, invalid UTF-8, limits and the
 * vocabulary API.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "winnow_model.h"

#define VOCAB WINNOW_SOURCE_DIR "/model/weights/vocab.txt"
#define FIXTURE WINNOW_SOURCE_DIR "/tests/fixtures/tokenizer/"

static winnow_tokenizer_t *load_bert(void)
{
	char err[512] = "";
	winnow_tokenizer_t *tok = winnow_tokenizer_load_vocab(VOCAB, NULL, err, sizeof(err));

	ck_assert_msg(tok != NULL, "%s", err);
	return tok;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "cannot open '%s'", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Splits buf in place on '\n' only (\r, \v, U+2028 are part of a case). */
static size_t split_lines(char *buf, size_t len, char ***lines, size_t **lens)
{
	size_t n = 0, cap = 64, start = 0;

	*lines = malloc(cap * sizeof(**lines));
	*lens = malloc(cap * sizeof(**lens));
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (n == cap) {
			cap *= 2;
			*lines = realloc(*lines, cap * sizeof(**lines));
			*lens = realloc(*lens, cap * sizeof(**lens));
		}
		(*lines)[n] = buf + start;
		(*lens)[n] = i - start;
		buf[i] = '\0';
		n++;
		start = i + 1;
	}
	ck_assert_msg(start == len, "fixture does not end with a newline");
	return n;
}

static winnow_err_t encode(const winnow_tokenizer_t *tok, const char *s, size_t len,
			   winnow_tokens_t *t)
{
	char err[256] = "";
	winnow_err_t rc = winnow_tokenizer_encode(tok, s, len, t, err, sizeof(err));

	ck_assert_msg(rc == WINNOW_OK, "encode failed: %s", err);
	return rc;
}

static void format_ids(char *buf, size_t size, const winnow_tokens_t *t)
{
	size_t pos = 0;

	pos += (size_t)snprintf(buf, size, "101");
	for (size_t i = 0; i < t->n && pos < size; i++)
		pos += (size_t)snprintf(buf + pos, size - pos, " %d", t->id[i]);
	if (pos < size)
		snprintf(buf + pos, size - pos, " 102");
}

static void format_spans(char *buf, size_t size, const winnow_tokens_t *t)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < t->n && pos < size; i++)
		pos += (size_t)snprintf(buf + pos, size - pos, "%s%u-%u", i ? " " : "",
					t->start[i], t->end[i]);
}

/* Every corpus line gives exactly the reference ids, and the same spans. */
START_TEST(test_corpus_matches_reference)
{
	winnow_tokenizer_t *tok = load_bert();
	size_t ntext, nids, nspans, tl, il, sl;
	char *text = slurp(FIXTURE "corpus.txt", &tl);
	char *ids = slurp(FIXTURE "corpus.ids", &il);
	char *spans = slurp(FIXTURE "corpus.spans", &sl);
	char **tlines, **ilines, **slines;
	size_t *tlens, *ilens, *slens;
	winnow_tokens_t t = { 0 };
	size_t bufsize = 1 << 20;
	char *got = malloc(bufsize);

	ntext = split_lines(text, tl, &tlines, &tlens);
	nids = split_lines(ids, il, &ilines, &ilens);
	nspans = split_lines(spans, sl, &slines, &slens);
	ck_assert_uint_ge(ntext, 300);
	ck_assert_uint_eq(ntext, nids);
	ck_assert_uint_eq(ntext, nspans);

	for (size_t i = 0; i < ntext; i++) {
		encode(tok, tlines[i], tlens[i], &t);
		format_ids(got, bufsize, &t);
		ck_assert_msg(!strcmp(got, ilines[i]),
			      "corpus line %zu: ids differ\n  text:     '%s'\n  expected: %s\n  got:      %s",
			      i + 1, tlines[i], ilines[i], got);
		format_spans(got, bufsize, &t);
		ck_assert_msg(!strcmp(got, slines[i]),
			      "corpus line %zu: spans differ\n  text:     '%s'\n  expected: %s\n  got:      %s",
			      i + 1, tlines[i], slines[i], got);
	}

	winnow_tokens_free(&t);
	free(got);
	free(tlines);
	free(tlens);
	free(ilines);
	free(ilens);
	free(slines);
	free(slens);
	free(text);
	free(ids);
	free(spans);
	winnow_tokenizer_destroy(tok);
}
END_TEST

/* Spans of every corpus token: inside the text, non-empty, in order. */
START_TEST(test_corpus_span_invariants)
{
	winnow_tokenizer_t *tok = load_bert();
	size_t len, n;
	char *text = slurp(FIXTURE "corpus.txt", &len);
	char **lines;
	size_t *lens;
	winnow_tokens_t t = { 0 };

	n = split_lines(text, len, &lines, &lens);
	for (size_t i = 0; i < n; i++) {
		encode(tok, lines[i], lens[i], &t);
		for (size_t k = 0; k < t.n; k++) {
			ck_assert_msg(t.start[k] < t.end[k] && t.end[k] <= lens[i],
				      "line %zu token %zu: span [%u, %u) of %zu bytes",
				      i + 1, k, t.start[k], t.end[k], lens[i]);
			if (k)
				ck_assert_msg(t.start[k] >= t.start[k - 1] &&
					      t.end[k] >= t.end[k - 1],
					      "line %zu token %zu: span [%u, %u) before [%u, %u)",
					      i + 1, k, t.start[k], t.end[k],
					      t.start[k - 1], t.end[k - 1]);
		}
	}
	winnow_tokens_free(&t);
	free(lines);
	free(lens);
	free(text);
	winnow_tokenizer_destroy(tok);
}
END_TEST

struct span_case {
	const char *text;
	size_t len;		/* 0: strlen(text) */
	const char *tokens[8];	/* expected token texts, NULL-terminated */
	uint32_t span[8][2];
};

static const struct span_case span_cases[] = {
	{ "Hello, World!", 0, { "hello", ",", "world", "!" },
	  { { 0, 5 }, { 5, 6 }, { 7, 12 }, { 12, 13 } } },
	{ "  unaffable\t", 0, { "una", "##ffa", "##ble" }, { { 2, 5 }, { 5, 8 }, { 8, 11 } } },
	/* precomposed: the accent is inside the letter's bytes */
	{ "caf\xc3\xa9 ok", 0, { "cafe", "ok" }, { { 0, 5 }, { 6, 8 } } },
	/* decomposed: the removed mark (bytes 4..6) belongs to no token */
	{ "cafe\xcc\x81 ok", 0, { "cafe", "ok" }, { { 0, 4 }, { 7, 9 } } },
	/* U+0130 lowers to i + U+0307: both come from bytes 0..2 */
	{ "\xc4\xb0stanbul", 0, { "istanbul" }, { { 0, 9 } } },
	/* CJK ideographs are words of their own, three bytes each */
	{ "\xe4\xb8\xad\xe6\x96\x87x", 0, { "\xe4\xb8\xad", "\xe6\x96\x87", "x" },
	  { { 0, 3 }, { 3, 6 }, { 6, 7 } } },
	/* a Hangul syllable decomposes to jamo that all point at it */
	{ "\xed\x95\x9c", 0, { "\xe1\x84\x92", "##\xe1\x85\xa1", "##\xe1\x86\xab" },
	  { { 0, 3 }, { 0, 3 }, { 0, 3 } } },
	/* final sigma: ΟΔΟΣ -> ο ##δ ##ος */
	{ "\xce\x9f\xce\x94\xce\x9f\xce\xa3", 0, { "\xce\xbf", "##\xce\xb4", "##\xce\xbf\xcf\x82" },
	  { { 0, 2 }, { 2, 4 }, { 4, 8 } } },
	/* dropped characters (ZWSP, NUL) join the word around them */
	{ "un\xe2\x80\x8b" "aff\x00" "able", 13, { "una", "##ffa", "##ble" },
	  { { 0, 6 }, { 6, 10 }, { 10, 13 } } },
	/* an unmatched character makes the whole word [UNK] */
	{ "ab\xf0\x9f\x98\x80" "cd ok", 0, { "[UNK]", "ok" }, { { 0, 8 }, { 9, 11 } } },
};

START_TEST(test_spans_point_at_source)
{
	winnow_tokenizer_t *tok = load_bert();
	const struct span_case *c = &span_cases[_i];
	winnow_tokens_t t = { 0 };
	size_t n = 0;

	while (n < 8 && c->tokens[n])
		n++;
	encode(tok, c->text, c->len ? c->len : strlen(c->text), &t);
	ck_assert_msg(t.n == n, "'%s': %zu tokens, expected %zu", c->text, t.n, n);
	for (size_t k = 0; k < n; k++) {
		size_t len;
		const char *s = winnow_tokenizer_token(tok, t.id[k], &len);

		ck_assert_msg(s && len == strlen(c->tokens[k]) && !memcmp(s, c->tokens[k], len),
			      "'%s' token %zu: '%.*s', expected '%s'", c->text, k,
			      (int)len, s ? s : "", c->tokens[k]);
		ck_assert_msg(t.start[k] == c->span[k][0] && t.end[k] == c->span[k][1],
			      "'%s' token %zu '%s': span [%u, %u), expected [%u, %u)",
			      c->text, k, c->tokens[k], t.start[k], t.end[k],
			      c->span[k][0], c->span[k][1]);
	}
	winnow_tokens_free(&t);
	winnow_tokenizer_destroy(tok);
}
END_TEST

/* Pieces of a split word cover consecutive sub-spans of the word. */
START_TEST(test_wordpiece_pieces_are_consecutive)
{
	winnow_tokenizer_t *tok = load_bert();
	const char *text = "unaffable hyperparameterization antidisestablishmentarianism";
	winnow_tokens_t t = { 0 };
	size_t k = 0, words = 0;

	encode(tok, text, strlen(text), &t);
	while (k < t.n) {
		size_t first = k, len;
		const char *s;

		for (k++; k < t.n; k++) {
			s = winnow_tokenizer_token(tok, t.id[k], &len);
			if (len < 2 || s[0] != '#' || s[1] != '#')
				break;
			ck_assert_uint_eq(t.start[k], t.end[k - 1]);
		}
		/* the word's pieces span exactly the word */
		ck_assert(first == 0 || text[t.start[first] - 1] == ' ');
		ck_assert(text[t.end[k - 1]] == ' ' || text[t.end[k - 1]] == '\0');
		ck_assert_uint_gt(k - first, 1);
		words++;
	}
	ck_assert_uint_eq(words, 3);
	winnow_tokens_free(&t);
	winnow_tokenizer_destroy(tok);
}
END_TEST

struct bad_utf8 {
	const char *what;
	const char *bytes;
	size_t len;
	size_t offset;
};

#define BAD(what, s, off) { what, s, sizeof(s) - 1, off }
static const struct bad_utf8 bad_utf8_cases[] = {
	BAD("lone continuation byte", "abc\x80" "def", 3),
	BAD("continuation byte at start", "\xbf", 0),
	BAD("truncated 2-byte sequence at end", "abc\xc3", 3),
	BAD("truncated 3-byte sequence at end", "abc\xe2\x82", 3),
	BAD("truncated 4-byte sequence at end", "ok \xf0\x9f\x98", 3),
	BAD("truncated sequence before ASCII", "a\xe2\x82z", 1),
	BAD("overlong C0 AF", "\xc0\xaf", 0),
	BAD("overlong C1 BF", "x\xc1\xbf", 1),
	BAD("overlong E0 80 AF", "ab\xe0\x80\xaf", 2),
	BAD("overlong F0 80 80 AF", "\xf0\x80\x80\xaf", 0),
	BAD("surrogate ED A0 80", "\xed\xa0\x80", 0),
	BAD("surrogate ED BF BF", "word \xed\xbf\xbf", 5),
	BAD("above U+10FFFF F4 90 80 80", "\xf4\x90\x80\x80", 0),
	BAD("F5 lead byte", "a\xf5\x80\x80\x80", 1),
	BAD("F8 lead byte", "\xf8", 0),
	BAD("FE byte", "ab\xfe", 2),
	BAD("FF byte", "\xff", 0),
	BAD("bad second byte", "\xe2\x28\xa1", 0),
	BAD("after a capital sigma (look-ahead path)", "\xce\x91\xce\xa3\xff", 4),
	BAD("after many valid words", "one two three \xc3\x28", 14),
};

START_TEST(test_invalid_utf8)
{
	winnow_tokenizer_t *tok = load_bert();
	const struct bad_utf8 *c = &bad_utf8_cases[_i];
	winnow_tokens_t t = { 0 };
	char err[256] = "", want[64];
	winnow_err_t rc;

	rc = winnow_tokenizer_encode(tok, c->bytes, c->len, &t, err, sizeof(err));
	ck_assert_msg(rc == WINNOW_ERR_INVALID_UTF8, "%s: got %s (%s)", c->what,
		      winnow_err_name(rc), err);
	snprintf(want, sizeof(want), "invalid UTF-8 at byte %zu", c->offset);
	ck_assert_msg(!strcmp(err, want), "%s: message '%s', expected '%s'", c->what, err, want);
	ck_assert_uint_eq(t.n, 0);
	winnow_tokens_free(&t);
	winnow_tokenizer_destroy(tok);
}
END_TEST

START_TEST(test_valid_utf8_edges)
{
	/* The extremes of each length are valid (and dropped or [UNK]). */
	static const char text[] = "\xc2\x80 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 "
				   "\xef\xbf\xbf \xf0\x90\x80\x80 \xf4\x8f\xbf\xbf";
	winnow_tokenizer_t *tok = load_bert();
	winnow_tokens_t t = { 0 };

	encode(tok, text, sizeof(text) - 1, &t);
	winnow_tokens_free(&t);
	winnow_tokenizer_destroy(tok);
}
END_TEST

START_TEST(test_empty_input)
{
	winnow_tokenizer_t *tok = load_bert();
	winnow_tokens_t t = { 0 };

	encode(tok, "", 0, &t);
	ck_assert_uint_eq(t.n, 0);
	encode(tok, NULL, 0, &t);
	ck_assert_uint_eq(t.n, 0);
	encode(tok, " \t\r\n\xe2\x80\x8b\xc2\xa0", 9, &t);
	ck_assert_uint_eq(t.n, 0);
	winnow_tokens_free(&t);
	winnow_tokenizer_destroy(tok);
}
END_TEST

START_TEST(test_output_is_reset_and_reused)
{
	winnow_tokenizer_t *tok = load_bert();
	winnow_tokens_t t = { 0 };
	int32_t *before;

	encode(tok, "one two three four", 18, &t);
	ck_assert_uint_eq(t.n, 4);
	before = t.id;
	encode(tok, "five", 4, &t);
	ck_assert_uint_eq(t.n, 1);
	ck_assert_ptr_eq(t.id, before);	/* no reallocation for a smaller text */
	winnow_tokens_free(&t);
	ck_assert_ptr_null(t.id);
	ck_assert_uint_eq(t.cap, 0);
	winnow_tokens_free(NULL);
	winnow_tokenizer_destroy(tok);
}
END_TEST

/* 10 MB in one call: the same as the sum of its paragraphs. */
START_TEST(test_ten_megabytes)
{
	static const char para[] =
		"From: Alice <alice@example.com>\nSubject: Re: caf\xc3\xa9 \xce\x9f\xce\x94\xce\x9f\xce\xa3 "
		"\xe4\xb8\xad\xe6\x96\x87 \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 unaffable "
		"https://example.com/a?b=c&d=e \xf0\x9f\x98\x80 1,000.50 "
		"\xe2\x80\x8b\xc2\xa0\t'quoted' [brackets] x\n";
	const size_t plen = sizeof(para) - 1;
	const size_t reps = (10u << 20) / plen + 1;
	winnow_tokenizer_t *tok = load_bert();
	winnow_tokens_t t = { 0 };
	char *big = malloc(plen * reps);
	size_t per;

	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i < reps; i++)
		memcpy(big + i * plen, para, plen);
	encode(tok, para, plen, &t);
	per = t.n;
	ck_assert_uint_gt(per, 20);
	encode(tok, big, plen * reps, &t);
	ck_assert_uint_eq(t.n, per * reps);
	ck_assert_uint_eq(t.start[t.n - 1], t.start[per - 1] + plen * (reps - 1));
	winnow_tokens_free(&t);
	free(big);
	winnow_tokenizer_destroy(tok);
}
END_TEST

START_TEST(test_text_over_4gib_is_too_large)
{
	winnow_tokenizer_t *tok = load_bert();
	winnow_tokens_t t = { 0 };
	char err[256] = "";

	/* Rejected before a byte is read, so a tiny buffer is enough. */
	ck_assert_int_eq(winnow_tokenizer_encode(tok, "x", (size_t)UINT32_MAX + 1, &t,
						 err, sizeof(err)),
			 WINNOW_ERR_TOO_LARGE);
	ck_assert_ptr_nonnull(strstr(err, "4 GiB"));
	winnow_tokenizer_destroy(tok);
}
END_TEST

START_TEST(test_vocabulary_api)
{
	winnow_tokenizer_t *tok = load_bert();
	size_t len;
	const char *s;

	ck_assert_uint_eq(winnow_tokenizer_vocab_size(tok), 30522);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "[PAD]", 5), 0);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "[UNK]", 5), 100);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "[CLS]", 5), 101);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "[SEP]", 5), 102);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "[MASK]", 6), 103);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "the", 3), 1996);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "##ffa", 5), 20961);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "ffa", 3) == 20961, 0);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "nosuchtokenxyz", 14), -1);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "", 0), -1);
	s = winnow_tokenizer_token(tok, 101, &len);
	ck_assert_uint_eq(len, 5);
	ck_assert_str_eq(s, "[CLS]");
	s = winnow_tokenizer_token(tok, 30521, &len);
	ck_assert_str_eq(s, "##\xef\xbd\x9e");
	ck_assert_ptr_null(winnow_tokenizer_token(tok, 30522, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert_ptr_null(winnow_tokenizer_token(tok, -1, NULL));
	winnow_tokenizer_destroy(tok);
	winnow_tokenizer_destroy(NULL);
}
END_TEST

START_TEST(test_load_vocab_missing_file)
{
	winnow_tokenizer_params_t p = winnow_tokenizer_default_params();
	char err[256] = "";

	ck_assert_ptr_null(winnow_tokenizer_load_vocab("/nonexistent/dir/vocab.txt", &p,
						       err, sizeof(err)));
	ck_assert_str_eq(err, "cannot open vocabulary '/nonexistent/dir/vocab.txt': "
			 "No such file or directory");
}
END_TEST

static char *write_temp(const char *content, size_t len)
{
	char *path = strdup("/tmp/winnow-test-vocab-XXXXXX");
	int fd = mkstemp(path);
	FILE *f;

	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "wb");
	ck_assert_uint_eq(fwrite(content, 1, len, f), len);
	fclose(f);
	return path;
}

START_TEST(test_load_vocab_crlf_and_bad_files)
{
	static const char crlf[] = "[PAD]\r\n[UNK]\r\nhello\r\n##lo\r\nhel";
	static const char no_unk[] = "a\nb\n";
	static const char bad[] = "[UNK]\nok\n\xff\xfe\n";
	winnow_tokens_t t = { 0 };
	winnow_tokenizer_t *tok;
	char err[512] = "", want[512], *path;

	path = write_temp(crlf, sizeof(crlf) - 1);
	tok = winnow_tokenizer_load_vocab(path, NULL, err, sizeof(err));
	ck_assert_msg(tok != NULL, "%s", err);
	ck_assert_uint_eq(winnow_tokenizer_vocab_size(tok), 5);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "hello", 5), 2);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "hel", 3), 4);
	encode(tok, "HELLO hello hello! Hello", 24, &t);
	ck_assert_uint_eq(t.n, 5);
	ck_assert_int_eq(t.id[0], 2);
	ck_assert_int_eq(t.id[2], 2);
	ck_assert_int_eq(t.id[3], 1);	/* "!" is not in this vocabulary */
	winnow_tokenizer_destroy(tok);
	unlink(path);
	free(path);

	path = write_temp(no_unk, sizeof(no_unk) - 1);
	ck_assert_ptr_null(winnow_tokenizer_load_vocab(path, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want),
		 "cannot load vocabulary '%s': no '[UNK]' token, and no unk_id was given", path);
	ck_assert_str_eq(err, want);
	unlink(path);
	free(path);

	path = write_temp(bad, sizeof(bad) - 1);
	ck_assert_ptr_null(winnow_tokenizer_load_vocab(path, NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, path) && strstr(err, "line 3 is not valid UTF-8"), "%s", err);
	unlink(path);
	free(path);

	path = write_temp("", 0);
	ck_assert_ptr_null(winnow_tokenizer_load_vocab(path, NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, path) && strstr(err, "empty"), "%s", err);
	unlink(path);
	free(path);
	winnow_tokens_free(&t);
}
END_TEST

static winnow_tokenizer_t *small_vocab(const winnow_tokenizer_params_t *p, char *err,
				       size_t errsize)
{
	static const char *const toks[] = { "[UNK]", "hello", "Hello", "##lo", "hel",
					    "!", "a", "##a", "hello" };
	uint32_t lens[9];

	for (int i = 0; i < 9; i++)
		lens[i] = (uint32_t)strlen(toks[i]);
	return winnow_tokenizer_new(toks, lens, 9, p, err, errsize);
}

START_TEST(test_new_and_params)
{
	winnow_tokenizer_params_t p = winnow_tokenizer_default_params();
	winnow_tokenizer_t *tok;
	winnow_tokens_t t = { 0 };
	char err[256] = "";

	ck_assert_int_eq(p.do_lower_case, 1);
	ck_assert_int_eq(p.max_chars_per_word, 100);
	ck_assert_int_lt(p.unk_id, 0);

	/* A repeated token keeps its last id, as in Hugging Face's dict. */
	tok = small_vocab(&p, err, sizeof(err));
	ck_assert_msg(tok != NULL, "%s", err);
	ck_assert_int_eq(winnow_tokenizer_lookup(tok, "hello", 5), 8);
	winnow_tokenizer_destroy(tok);

	/* max_chars_per_word: 4 a's are a word, 5 are [UNK] */
	p.max_chars_per_word = 4;
	tok = small_vocab(&p, err, sizeof(err));
	ck_assert_msg(tok != NULL, "%s", err);
	encode(tok, "aaaa aaaaa", 10, &t);
	ck_assert_uint_eq(t.n, 5);
	ck_assert_int_eq(t.id[0], 6);
	ck_assert_int_eq(t.id[3], 7);
	ck_assert_int_eq(t.id[4], 0);
	ck_assert_uint_eq(t.start[4], 5);
	ck_assert_uint_eq(t.end[4], 10);
	winnow_tokenizer_destroy(tok);

	/* do_lower_case = 0: case kept, no accent stripping */
	p = winnow_tokenizer_default_params();
	p.do_lower_case = 0;
	tok = small_vocab(&p, err, sizeof(err));
	ck_assert_msg(tok != NULL, "%s", err);
	encode(tok, "Hello hello! HELLO", 18, &t);
	ck_assert_uint_eq(t.n, 4);
	ck_assert_int_eq(t.id[0], 2);
	ck_assert_int_eq(t.id[1], 8);
	ck_assert_int_eq(t.id[2], 5);
	ck_assert_int_eq(t.id[3], 0);
	winnow_tokenizer_destroy(tok);

	/* explicit unk_id, and bad parameters */
	p = winnow_tokenizer_default_params();
	p.unk_id = 5;
	tok = small_vocab(&p, err, sizeof(err));
	ck_assert_msg(tok != NULL, "%s", err);
	encode(tok, "zzz", 3, &t);
	ck_assert_int_eq(t.id[0], 5);
	winnow_tokenizer_destroy(tok);
	p.unk_id = 9;
	ck_assert_ptr_null(small_vocab(&p, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "unk_id 9 is out of range"));
	p = winnow_tokenizer_default_params();
	p.max_chars_per_word = 0;
	ck_assert_ptr_null(small_vocab(&p, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "max_chars_per_word"));
	ck_assert_ptr_null(winnow_tokenizer_new(NULL, NULL, 0, NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "cannot build tokenizer: the vocabulary is empty");
	winnow_tokens_free(&t);
}
END_TEST

/* A long max_chars_per_word uses heap scratch instead of the stack. */
START_TEST(test_large_max_chars_per_word)
{
	winnow_tokenizer_params_t p = winnow_tokenizer_default_params();
	winnow_tokenizer_t *tok;
	winnow_tokens_t t = { 0 };
	char err[256] = "", text[1200];

	p.max_chars_per_word = 1000;
	tok = small_vocab(&p, err, sizeof(err));
	ck_assert_msg(tok != NULL, "%s", err);
	memset(text, 'a', 1000);
	encode(tok, text, 1000, &t);
	ck_assert_uint_eq(t.n, 1000);
	memset(text, 'a', 1001);
	encode(tok, text, 1001, &t);
	ck_assert_uint_eq(t.n, 1);
	ck_assert_int_eq(t.id[0], 0);
	winnow_tokens_free(&t);
	winnow_tokenizer_destroy(tok);
}
END_TEST

struct thread_arg {
	const winnow_tokenizer_t *tok;
	const char *text;
	size_t len;
	size_t n;
	uint64_t sum;
};

static void *encode_thread(void *p)
{
	struct thread_arg *a = p;
	winnow_tokens_t t = { 0 };
	char err[128];

	for (int r = 0; r < 20; r++) {
		if (winnow_tokenizer_encode(a->tok, a->text, a->len, &t, err, sizeof(err)))
			break;
		a->n = t.n;
		a->sum = 0;
		for (size_t i = 0; i < t.n; i++)
			a->sum = a->sum * 31 + (uint64_t)t.id[i] + t.start[i];
	}
	winnow_tokens_free(&t);
	return NULL;
}

/* One tokenizer, shared read-only by several threads. */
START_TEST(test_shared_between_threads)
{
	winnow_tokenizer_t *tok = load_bert();
	size_t len;
	char *text = slurp(FIXTURE "corpus.txt", &len);
	struct thread_arg args[4];
	pthread_t th[4];

	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){ tok, text, len, 0, 0 };
		ck_assert_int_eq(pthread_create(&th[i], NULL, encode_thread, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	ck_assert_uint_gt(args[0].n, 1000);
	for (int i = 1; i < 4; i++) {
		ck_assert_uint_eq(args[i].n, args[0].n);
		ck_assert(args[i].sum == args[0].sum);
	}
	free(text);
	winnow_tokenizer_destroy(tok);
}
END_TEST

static Suite *tokenizer_suite(void)
{
	Suite *s = suite_create("tokenizer");
	TCase *tc = tcase_create("conformance");
	TCase *big = tcase_create("limits");

	tcase_add_test(tc, test_corpus_matches_reference);
	tcase_add_test(tc, test_corpus_span_invariants);
	tcase_add_loop_test(tc, test_spans_point_at_source, 0,
			    sizeof(span_cases) / sizeof(span_cases[0]));
	tcase_add_test(tc, test_wordpiece_pieces_are_consecutive);
	tcase_add_loop_test(tc, test_invalid_utf8, 0,
			    sizeof(bad_utf8_cases) / sizeof(bad_utf8_cases[0]));
	tcase_add_test(tc, test_valid_utf8_edges);
	tcase_add_test(tc, test_empty_input);
	tcase_add_test(tc, test_output_is_reset_and_reused);
	tcase_add_test(tc, test_vocabulary_api);
	tcase_add_test(tc, test_load_vocab_missing_file);
	tcase_add_test(tc, test_load_vocab_crlf_and_bad_files);
	tcase_add_test(tc, test_new_and_params);
	tcase_add_test(tc, test_large_max_chars_per_word);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	/* Sanitizer builds are several times slower: generous limits. */
	tcase_add_test(big, test_ten_megabytes);
	tcase_add_test(big, test_text_over_4gib_is_too_large);
	tcase_add_test(big, test_shared_between_threads);
	tcase_set_timeout(big, 300);
	suite_add_tcase(s, big);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tokenizer_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
