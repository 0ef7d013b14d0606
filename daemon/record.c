/* record.c: output records as JSON (record.h). */
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *id_json(const char *id, size_t len)
{
	json_t *s = json_stringn(id, len); /* NULL when not UTF-8 */
	if (s)
		return s;
	char *hex = malloc(4 + 2 * len + 1);
	if (!hex)
		return json_null();
	memcpy(hex, "hex:", 4);
	for (size_t i = 0; i < len; i++)
		snprintf(hex + 4 + 2 * i, 3, "%02x", (unsigned char)id[i]);
	s = json_string(hex);
	free(hex);
	return s;
}

static json_t *retained_json(const winnow_model_t *model,
			     const winnow_doc_result_t *r)
{
	const winnow_tokenizer_t *tok = winnow_model_tokenizer(model);
	json_t *list = json_array();
	for (uint32_t k = 0; k < r->n_retained; k++) {
		const winnow_retained_t *t = &r->retained[k];
		size_t len;
		const char *s = winnow_tokenizer_token(tok, t->id, &len);
		json_array_append_new(list, json_pack("{s:s%, s:I, s:I, s:f}",
						      "token", s, len,
						      "start", (json_int_t)t->start,
						      "end", (json_int_t)t->end,
						      "score", t->score));
	}
	return list;
}

json_t *winnow_record_json(const winnow_model_t *model,
			   const winnow_doc_result_t *r,
			   const char *id, size_t id_len)
{
	const winnow_model_config_t *cfg = winnow_model_config(model);
	json_t *scores = json_object();
	for (uint32_t j = 0; j < cfg->num_labels; j++)
		json_object_set_new(scores, winnow_model_label(model, j),
				    json_real(r->scores[j]));
	char name[512];
	snprintf(name, sizeof name, "%s %s", cfg->name, cfg->version);
	json_t *rec = json_pack("{s:o, s:s, s:f, s:o, s:o, s:I, s:I, s:s}",
				"id", id_json(id, id_len),
				"label", winnow_model_label(model, r->label),
				"confidence", r->scores[r->label],
				"scores", scores,
				"retained", retained_json(model, r),
				"chunks", (json_int_t)r->windows,
				"tokens", (json_int_t)r->tokens,
				"model", name);
	if (rec && r->truncated)
		json_object_set_new(rec, "truncated", json_true());
	return rec;
}

char *winnow_record_dump(const json_t *record)
{
	return json_dumps(record, JSON_COMPACT | JSON_REAL_PRECISION(6));
}
