/*
 * record.h: the output record of DESIGN.md, as JSON (jansson), shared by
 * winnowd and `winnow classify`.
 *
 *   {"id", "label", "confidence", "scores", "retained": [{"token", "start",
 *    "end", "score"}...], "chunks", "tokens", "model", "source"}
 *
 * plus "truncated": true when the truncate option cut the document.
 */
#ifndef WINNOW_RECORD_H
#define WINNOW_RECORD_H

#include "winnow_model.h"

#include <jansson.h>
#include <stddef.h>

/*
 * A new record for a classified document, without "source" (the caller adds
 * it). id is the document id (the Kafka key): when it is not valid UTF-8 it
 * is written as "hex:" and its bytes in hex, so the record stays JSON.
 */
json_t *winnow_record_json(const winnow_model_t *model,
			   const winnow_doc_result_t *result,
			   const char *id, size_t id_len);

/* The compact text of a record, as winnowd and winnow classify print it;
 * free() it. */
char *winnow_record_dump(const json_t *record);

#endif /* WINNOW_RECORD_H */
