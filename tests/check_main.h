/*
 * check_main.h: what every Check suite's main() does: run the suite (each
 * test forked, so a crash fails one test), print the summary, and exit
 * non-zero when anything failed.
 */
#ifndef WINNOW_CHECK_MAIN_H
#define WINNOW_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

static inline int winnow_check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif /* WINNOW_CHECK_MAIN_H */
