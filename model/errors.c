/* errors.c: names of winnow_err_t codes, for logs and dead-letter headers. */
#include "winnow_model.h"

const char *winnow_err_name(winnow_err_t err)
{
	switch (err) {
	case WINNOW_OK: return "ok";
	case WINNOW_ERR_IO: return "io";
	case WINNOW_ERR_FORMAT: return "format";
	case WINNOW_ERR_INVALID_UTF8: return "invalid-utf8";
	case WINNOW_ERR_TOO_LARGE: return "too-large";
	case WINNOW_ERR_NOMEM: return "no-memory";
	case WINNOW_ERR_ARG: return "bad-argument";
	case WINNOW_ERR_BUSY: return "busy";
	}
	return "unknown";
}
