/* test_offsets.c: commit points are the lowest unfinished offset. */
#include "offsets.h"

#include "check_main.h"

#include <check.h>
#include <stdlib.h>

START_TEST(commit_point_is_lowest_unfinished)
{
	winnow_offsets_t *t = winnow_offsets_new();
	int64_t c = -1;
	ck_assert_int_eq(winnow_offsets_assign(t, 3), 0);
	for (int64_t o = 10; o < 15; o++)
		ck_assert_int_eq(winnow_offsets_begin(t, 3, o), 0);
	ck_assert_uint_eq(winnow_offsets_open(t, 3), 5);
	/* 12 and 11 finish first: 10 still holds the commit point. */
	ck_assert_int_eq(winnow_offsets_finish(t, 3, 12, &c), 0);
	ck_assert_int_eq(winnow_offsets_finish(t, 3, 11, &c), 0);
	ck_assert_int_eq(winnow_offsets_finish(t, 3, 10, &c), 1);
	ck_assert_int_eq(c, 13);
	ck_assert_int_eq(winnow_offsets_finish(t, 3, 14, &c), 0);
	ck_assert_int_eq(winnow_offsets_finish(t, 3, 13, &c), 1);
	ck_assert_int_eq(c, 15); /* all done: one past the last */
	ck_assert_uint_eq(winnow_offsets_open(t, -1), 0);
	/* Gaps (compacted topics, dead letters elsewhere) are fine. */
	ck_assert_int_eq(winnow_offsets_begin(t, 3, 20), 0);
	ck_assert_int_eq(winnow_offsets_finish(t, 3, 20, &c), 1);
	ck_assert_int_eq(c, 21);
	winnow_offsets_destroy(t);
}
END_TEST

START_TEST(revoked_partitions_ignore_late_finishes)
{
	winnow_offsets_t *t = winnow_offsets_new();
	int64_t c;
	winnow_offsets_assign(t, 0);
	winnow_offsets_assign(t, 1);
	winnow_offsets_begin(t, 0, 5);
	winnow_offsets_begin(t, 1, 7);
	winnow_offsets_revoke(t, 0);
	ck_assert(!winnow_offsets_assigned(t, 0));
	ck_assert_int_eq(winnow_offsets_finish(t, 0, 5, &c), -1);
	ck_assert_int_eq(winnow_offsets_begin(t, 0, 6), -1);
	ck_assert_int_eq(winnow_offsets_finish(t, 1, 7, &c), 1);
	ck_assert_int_eq(c, 8);
	/* Reassigned, it starts afresh. */
	winnow_offsets_assign(t, 0);
	ck_assert_int_eq(winnow_offsets_begin(t, 0, 5), 0);
	ck_assert_int_eq(winnow_offsets_finish(t, 0, 5, &c), 1);
	ck_assert_int_eq(c, 6);
	/* Unknown offsets and falling offsets are refused. */
	ck_assert_int_eq(winnow_offsets_finish(t, 0, 99, &c), -1);
	ck_assert_int_eq(winnow_offsets_begin(t, 0, 5), -1);
	ck_assert_int_eq(winnow_offsets_begin(t, 9, 1), -1);
	winnow_offsets_destroy(t);
}
END_TEST

START_TEST(ring_grows_and_wraps)
{
	winnow_offsets_t *t = winnow_offsets_new();
	int64_t c = 0, next = 0;
	winnow_offsets_assign(t, 0);
	/* Keep 100 open while 10,000 pass through the ring. */
	for (int64_t o = 0; o < 10000; o++) {
		ck_assert_int_eq(winnow_offsets_begin(t, 0, o), 0);
		if (o >= 100) {
			int64_t f = o - 100;
			int r = winnow_offsets_finish(t, 0, f, &c);
			ck_assert_int_ge(r, 0);
			if (r == 1)
				next = c;
		}
	}
	ck_assert_int_eq(next, 9900);
	ck_assert_uint_eq(winnow_offsets_open(t, 0), 100);
	winnow_offsets_destroy(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("offsets");
	TCase *tc = tcase_create("offsets");
	tcase_add_test(tc, commit_point_is_lowest_unfinished);
	tcase_add_test(tc, revoked_partitions_ignore_late_finishes);
	tcase_add_test(tc, ring_grows_and_wraps);
	suite_add_tcase(s, tc);
	return winnow_check_run(s);
}
