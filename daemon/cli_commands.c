/* cli_commands.c: winnow tokenize, inspect, logits and classify. */
#include "cli_common.h"
#include "record.h"

#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Documents larger than this are refused rather than half-read. */
#define CLI_MAX_DOCUMENT (1u << 30)

/* ---- tokenize ------------------------------------------------------------ */

int cli_tokenize(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "vocab", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *model_path = NULL, *vocab_path = NULL;
	int c, rc = 0;
	while ((c = getopt_long(argc, argv, "m:v:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model_path = optarg; break;
		case 'v': vocab_path = optarg; break;
		case 'h':
			puts("usage: winnow tokenize (--model FILE | --vocab FILE) < lines");
			return 0;
		default: return 2;
		}
	}
	if (!model_path == !vocab_path) {
		fputs("winnow: tokenize needs exactly one of --model FILE or --vocab FILE\n", stderr);
		return 2;
	}

	winnow_model_t *model = NULL;
	winnow_tokenizer_t *owned = NULL;
	const winnow_tokenizer_t *tok;
	int32_t cls, sep;
	char err[512];
	if (model_path) {
		if (!(model = cli_load_model(model_path)))
			return 2;
		tok = winnow_model_tokenizer(model);
		cls = winnow_model_config(model)->cls_id;
		sep = winnow_model_config(model)->sep_id;
	} else {
		winnow_tokenizer_params_t tp = winnow_tokenizer_default_params();
		owned = winnow_tokenizer_load_vocab(vocab_path, &tp, err, sizeof err);
		if (!owned) {
			fprintf(stderr, "winnow: %s\n", err);
			return 2;
		}
		tok = owned;
		cls = winnow_tokenizer_lookup(tok, "[CLS]", 5);
		sep = winnow_tokenizer_lookup(tok, "[SEP]", 5);
		if (cls < 0 || sep < 0) {
			fprintf(stderr, "winnow: vocabulary '%s' has no [CLS] or [SEP]\n", vocab_path);
			winnow_tokenizer_destroy(owned);
			return 2;
		}
	}

	winnow_tokens_t toks = { 0 };
	char *line = NULL;
	size_t line_cap = 0;
	ssize_t n;
	unsigned long lineno = 0;
	while ((n = getline(&line, &line_cap, stdin)) >= 0) {
		lineno++;
		if (n > 0 && line[n - 1] == '\n')
			n--;
		winnow_err_t e = winnow_tokenizer_encode(tok, line, (size_t)n, &toks,
							 err, sizeof err);
		if (e) {
			/* An empty output line keeps the lines aligned. */
			fprintf(stderr, "winnow: line %lu: %s\n", lineno, err);
			putchar('\n');
			rc = 1;
			continue;
		}
		printf("%d", cls);
		for (size_t i = 0; i < toks.n; i++)
			printf(" %d", toks.id[i]);
		printf(" %d\n", sep);
	}
	free(line);
	winnow_tokens_free(&toks);
	winnow_tokenizer_destroy(owned);
	winnow_model_destroy(model);
	return rc;
}

/* ---- inspect ------------------------------------------------------------- */

int cli_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *model_path = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model_path = optarg; break;
		case 'h': puts("usage: winnow inspect [--model FILE]   (default: as classify)"); return 0;
		default: return 2;
		}
	}
	if (!model_path)
		model_path = cli_default_model();
	winnow_model_t *m = cli_load_model(model_path);
	if (!m)
		return 2;
	const winnow_model_config_t *cfg = winnow_model_config(m);
	printf("model: %s %s\n", cfg->name, cfg->version);
	printf("file: %s\n", model_path);
	printf("layers: %u\nhidden_size: %u\nheads: %u\nintermediate_size: %u\n",
	       cfg->num_layers, cfg->hidden_size, cfg->num_heads,
	       cfg->intermediate_size);
	printf("vocab_size: %u\nmax_position: %u\ntype_vocab_size: %u\nlayer_norm_eps: %g\n",
	       cfg->vocab_size, cfg->max_position, cfg->type_vocab_size,
	       cfg->layer_norm_eps);
	printf("labels: %u (", cfg->num_labels);
	for (uint32_t i = 0; i < cfg->num_labels; i++)
		printf("%s%s", i ? ", " : "", winnow_model_label(m, i));
	printf(")\n");
	printf("keep_ratio: %g\nfuzzy: %s\nfuzzy_mode: %s\n", cfg->keep_ratio,
	       cfg->fuzzy ? "yes" : "no",
	       cfg->fuzzy_mode == WINNOW_FUZZY_WITHIN ? "within" : "budget");
	if (cfg->combine_layer < cfg->num_layers)
		printf("combine_layer: %u\ncombine_tokens: %u\n",
		       cfg->combine_layer, cfg->combine_tokens);
	else
		printf("combine_layer: none\n");
	printf("pooling: %s\n", cfg->pooling == WINNOW_POOLING_MEAN ? "mean" : "cls");
	printf("max_seq_len: %u\ndo_lower_case: %s\nmax_chars_per_word: %u\n",
	       cfg->max_seq_len, cfg->do_lower_case ? "yes" : "no",
	       cfg->max_chars_per_word);
	printf("special ids: [CLS] %d, [SEP] %d, [UNK] %d, [PAD] %d, [MASK] %d\n",
	       cfg->cls_id, cfg->sep_id, cfg->unk_id, cfg->pad_id, cfg->mask_id);
	printf("kernels: %s\n", winnow_kernels_name());
	cli_print_blas(stdout);
	winnow_model_destroy(m);
	return 0;
}

/* ---- logits -------------------------------------------------------------- */

/* Parses a line of space-separated ids into ids[]; returns the count or -1. */
static long parse_ids(char *line, int32_t *ids, size_t cap)
{
	size_t n = 0;
	char *p = line, *end;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '\n')
			return (long)n;
		long v = strtol(p, &end, 10);
		if (end == p || n == cap || v < 0 || v > INT32_MAX)
			return -1;
		ids[n++] = (int32_t)v;
		p = end;
	}
}

static int run_logits_batch(winnow_ctx_t *ctx, const winnow_window_t *w,
			    uint32_t n, float *logits, uint32_t labels,
			    int retained)
{
	char err[512];
	if (winnow_ctx_forward(ctx, w, n, logits, err, sizeof err)) {
		fprintf(stderr, "winnow: %s\n", err);
		return -1;
	}
	for (uint32_t i = 0; i < n; i++) {
		for (uint32_t j = 0; j < labels; j++)
			printf(j ? " %.9g" : "%.9g", logits[i * labels + j]);
		if (retained) {
			const uint32_t *pos;
			const double *sc;
			uint32_t nr = winnow_ctx_retained(ctx, i, &pos, &sc);
			putchar('\t');
			for (uint32_t k = 0; k < nr; k++)
				printf(k ? " %u" : "%u", pos[k]);
		}
		putchar('\n');
	}
	return 0;
}

int cli_logits(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "batch", required_argument, NULL, 'b' },
		{ "retained", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *model_path = NULL;
	unsigned batch = 1;
	int c, rc = 2, retained = 0;
	while ((c = getopt_long(argc, argv, "m:b:rh", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model_path = optarg; break;
		case 'r': retained = 1; break;
		case 'b': batch = cli_parse_uint("--batch", optarg, 1, 4096); break;
		case 'h':
			puts("usage: winnow logits --model FILE [--batch N] [--retained] < windows\n"
			     "Each stdin line is one window of token ids ([CLS] ... [SEP]);\n"
			     "each output line the window's logits, and with --retained a tab\n"
			     "and the positions of its retained tokens (the last kept set\n"
			     "less [CLS]/[SEP], PAPER.md 5).");
			return 0;
		default: return 2;
		}
	}
	if (!model_path) {
		fputs("winnow: logits needs --model FILE\n", stderr);
		return 2;
	}
	winnow_model_t *m = cli_load_model(model_path);
	if (!m)
		return 2;
	const winnow_model_config_t *cfg = winnow_model_config(m);
	uint32_t L = cfg->max_seq_len;
	char err[512];
	winnow_ctx_params_t cp = winnow_ctx_default_params();
	cp.max_windows = batch;
	cp.max_tokens = batch * L;
	cp.threads = cli_engine_threads();
	winnow_ctx_t *ctx = winnow_ctx_new(m, &cp, err, sizeof err);
	int32_t *ids = malloc((size_t)batch * L * sizeof *ids);
	winnow_window_t *w = calloc(batch, sizeof *w);
	float *logits = malloc((size_t)batch * cfg->num_labels * sizeof *logits);
	char *line = NULL;
	size_t line_cap = 0;
	uint32_t nw = 0;
	unsigned long lineno = 0;

	if (!ctx) {
		fprintf(stderr, "winnow: %s\n", err);
		goto out_free;
	}
	if (!ids || !w || !logits) {
		fputs("winnow: out of memory\n", stderr);
		goto out_free;
	}
	while (getline(&line, &line_cap, stdin) >= 0) {
		lineno++;
		long n = parse_ids(line, ids + (size_t)nw * L, L);
		if (n <= 0) {
			fprintf(stderr, "winnow: line %lu: expected 1..%u token ids\n",
				lineno, L);
			goto out_free;
		}
		w[nw].ids = ids + (size_t)nw * L;
		w[nw].n = (uint32_t)n;
		if (++nw == batch) {
			if (run_logits_batch(ctx, w, nw, logits, cfg->num_labels, retained))
				goto out_free;
			nw = 0;
		}
	}
	if (nw && run_logits_batch(ctx, w, nw, logits, cfg->num_labels, retained))
		goto out_free;
	rc = 0;
out_free:
	free(line);
	free(logits);
	free(w);
	free(ids);
	winnow_ctx_destroy(ctx);
	winnow_model_destroy(m);
	return rc;
}

/* ---- classify ------------------------------------------------------------ */

typedef struct {
	winnow_model_t *model;
	winnow_ctx_t *ctx;
	const winnow_model_config_t *cfg;
	winnow_doc_params_t doc;
	unsigned batch;
	winnow_tokens_t toks;
	int32_t *ids;                 /* [batch x max_seq_len] window ids */
	winnow_window_t *win;
	winnow_doc_window_t *spans;   /* [batch] */
	float *logits;                /* [batch x labels] */
	winnow_doc_result_t result;
	char *text;
	size_t text_cap;
} classifier_t;

/*
 * Classifies one document window by window (PAPER.md 6): 0, or -1 with the
 * reason in err.
 */
static int classify_text(classifier_t *c, const char *text, size_t len,
			 char *err, size_t err_size)
{
	const winnow_model_config_t *cfg = c->cfg;
	uint32_t L = cfg->max_seq_len, max_text = L - 2;
	int truncated;

	if (len == 0) {
		snprintf(err, err_size, "empty document");
		return -1;
	}
	if (winnow_tokenizer_encode(winnow_model_tokenizer(c->model), text, len,
				    &c->toks, err, err_size))
		return -1;
	if (c->toks.n == 0) {
		snprintf(err, err_size, "document has no tokens (only whitespace or control characters)");
		return -1;
	}
	size_t n_windows = winnow_doc_window_count(&c->doc, max_text, c->toks.n,
						   &truncated);
	winnow_doc_result_reset(&c->result, c->toks.n, n_windows, truncated);
	for (size_t done = 0; done < n_windows;) {
		uint32_t nw = 0;
		while (nw < c->batch && done + nw < n_windows) {
			int32_t *ids = c->ids + (size_t)nw * L;
			c->spans[nw] = winnow_doc_window(&c->doc, max_text,
							 c->toks.n, done + nw);
			winnow_doc_window_ids(c->model, &c->toks, c->spans[nw], ids);
			c->win[nw].ids = ids;
			c->win[nw].n = c->spans[nw].n + 2;
			nw++;
		}
		if (winnow_ctx_forward(c->ctx, c->win, nw, c->logits, err, err_size))
			return -1;
		for (uint32_t i = 0; i < nw; i++) {
			const uint32_t *pos;
			const double *sc;
			uint32_t nr = winnow_ctx_retained(c->ctx, i, &pos, &sc);
			winnow_doc_result_add(&c->result, &c->doc, &c->toks, c->spans[i],
					      c->logits + (size_t)i * cfg->num_labels,
					      pos, sc, nr);
		}
		done += nw;
	}
	winnow_doc_result_finish(&c->result, &c->doc);
	return 0;
}

static void print_record(classifier_t *c, const char *id)
{
	json_t *rec = winnow_record_json(c->model, &c->result, id, strlen(id));
	json_object_set_new(rec, "source", json_pack("{s:s}", "file", id));
	char *s = winnow_record_dump(rec);
	puts(s);
	free(s);
	json_decref(rec);
}

/* --trace: what each layer kept and spent, summed over all documents. */
static void print_trace(const classifier_t *c)
{
	const winnow_model_config_t *cfg = c->cfg;
	fprintf(stderr, "layer  windows  tokens_in  kept  kept%%  protected  spared  ms\n");
	for (uint32_t l = 0; l < cfg->num_layers; l++) {
		winnow_layer_stats_t st;
		winnow_ctx_layer_stats(c->ctx, l, &st);
		const char *what = l == cfg->combine_layer ? " (combining)"
				 : l > cfg->combine_layer ? " (combined tokens)" : "";
		fprintf(stderr, "%5u  %7llu  %9llu  %4llu  %5.1f  %9llu  %6llu  %.2f%s\n",
			l, (unsigned long long)st.windows,
			(unsigned long long)st.tokens_in,
			(unsigned long long)st.tokens_kept,
			st.tokens_in ? 100.0 * (double)st.tokens_kept / (double)st.tokens_in : 0.0,
			(unsigned long long)st.protected_,
			(unsigned long long)st.spared, (double)st.ns / 1e6, what);
	}
}

static const char classify_usage[] =
	"usage: winnow classify [--model FILE] [options] [TEXTFILE...]\n"
	"Each file (stdin when none) is one document; one JSON record each.\n"
	"  --model FILE         default $WINNOW_MODEL, else the shipped\n"
	"                       model/weights/spam.wnn\n"
	"  --top-k N            retained tokens per document (default 10)\n"
	"  --stride N           text tokens between window starts (default: a\n"
	"                       whole window, no overlap)\n"
	"  --aggregate mean|max how window probabilities make the document's\n"
	"  --truncate           classify the first window only (reported)\n"
	"  --batch N            windows per forward pass (default 8)\n"
	"  --threads N          engine threads (default $WINNOW_THREADS, else\n"
	"                       the online CPUs)\n"
	"  --trace              per-layer kept tokens and time, on stderr\n";

int cli_classify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "batch", required_argument, NULL, 'b' },
		{ "top-k", required_argument, NULL, 'k' },
		{ "stride", required_argument, NULL, 's' },
		{ "aggregate", required_argument, NULL, 'a' },
		{ "truncate", no_argument, NULL, 'T' },
		{ "trace", no_argument, NULL, 't' },
		{ "threads", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	classifier_t c = { .batch = 8, .doc = winnow_doc_default_params() };
	const char *model_path = NULL;
	int ch, rc = 2, trace = 0;
	unsigned threads = 0;
	char err[512];
	while ((ch = getopt_long(argc, argv, "m:b:k:s:a:Ttj:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'm': model_path = optarg; break;
		case 'b': c.batch = cli_parse_uint("--batch", optarg, 1, 1024); break;
		case 'k': c.doc.top_k = cli_parse_uint("--top-k", optarg, 0, 100000); break;
		case 's': c.doc.stride = cli_parse_uint("--stride", optarg, 1, 1u << 20); break;
		case 'a':
			if (!strcmp(optarg, "mean")) {
				c.doc.aggregate = WINNOW_AGGREGATE_MEAN;
			} else if (!strcmp(optarg, "max")) {
				c.doc.aggregate = WINNOW_AGGREGATE_MAX;
			} else {
				fprintf(stderr, "winnow: --aggregate takes mean or max, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'T': c.doc.truncate = 1; break;
		case 't': trace = 1; break;
		case 'j': threads = cli_parse_uint("--threads", optarg, 1, WINNOW_CTX_MAX_THREADS); break;
		case 'h': fputs(classify_usage, stdout); return 0;
		default: return 2;
		}
	}
	if (!model_path)
		model_path = cli_default_model();
	if (!(c.model = cli_load_model(model_path)))
		return 2;
	c.cfg = winnow_model_config(c.model);
	winnow_ctx_params_t cp = winnow_ctx_default_params();
	cp.max_windows = c.batch;
	cp.max_tokens = c.batch * c.cfg->max_seq_len;
	cp.threads = threads ? threads : cli_engine_threads();
	c.ctx = winnow_ctx_new(c.model, &cp, err, sizeof err);
	c.ids = malloc((size_t)c.batch * c.cfg->max_seq_len * sizeof *c.ids);
	c.win = calloc(c.batch, sizeof *c.win);
	c.spans = calloc(c.batch, sizeof *c.spans);
	c.logits = malloc((size_t)c.batch * c.cfg->num_labels * sizeof *c.logits);
	if (!c.ctx) {
		fprintf(stderr, "winnow: %s\n", err);
		goto out_free;
	}
	if (!c.ids || !c.win || !c.spans || !c.logits ||
	    winnow_doc_result_init(&c.result, c.cfg->num_labels, c.doc.top_k)) {
		fputs("winnow: out of memory\n", stderr);
		goto out_free;
	}

	rc = 0;
	int nfiles = argc - optind;
	for (int i = 0; i < (nfiles ? nfiles : 1); i++) {
		const char *path = nfiles ? argv[optind + i] : "-";
		size_t len;
		if (cli_read_file(path, &c.text, &c.text_cap, &len,
				  CLI_MAX_DOCUMENT, err, sizeof err) ||
		    classify_text(&c, c.text, len, err, sizeof err)) {
			fprintf(stderr, "winnow: %s: %s\n", path, err);
			rc = 1;
			continue;
		}
		print_record(&c, path);
	}
	if (trace)
		print_trace(&c);
out_free:
	free(c.text);
	winnow_doc_result_free(&c.result);
	free(c.logits);
	free(c.spans);
	free(c.win);
	free(c.ids);
	winnow_tokens_free(&c.toks);
	winnow_ctx_destroy(c.ctx);
	winnow_model_destroy(c.model);
	return rc;
}
