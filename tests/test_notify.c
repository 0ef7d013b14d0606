/*
 * test_notify.c: the systemd notification protocol (daemon/notify.h),
 * received on a datagram socket of our own that plays systemd's part, at a
 * path and as an abstract socket.
 */
#include "notify.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char dir[64];
static char path[128];
static int sock = -1;

/* Binds a datagram socket at name ("/path" or "@abstract") and points
 * NOTIFY_SOCKET at it. */
static void listen_at(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	memcpy(sa.sun_path, name, len);
	if (name[0] == '@')
		sa.sun_path[0] = '\0';
	sock = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_ge(sock, 0);
	struct timeval tv = { 5, 0 };
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	ck_assert_int_eq(bind(sock, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
					  len + (name[0] == '/'))), 0);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", name, 1), 0);
}

static void setup_path(void)
{
	strcpy(dir, "/tmp/winnow-notify-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/notify", dir);
	listen_at(path);
}

static void teardown_path(void)
{
	close(sock);
	unlink(path);
	rmdir(dir);
}

static void setup_abstract(void)
{
	char name[64];
	snprintf(name, sizeof name, "@winnow-test-notify-%ld", (long)getpid());
	listen_at(name);
}

static void teardown_abstract(void)
{
	close(sock);
}

/* The next datagram, as a string. */
static const char *receive(void)
{
	static char buf[2048];
	ssize_t n = recv(sock, buf, sizeof buf - 1, 0);
	ck_assert_msg(n >= 0, "recv: %s", strerror(errno));
	buf[n] = '\0';
	return buf;
}

/* ---- a socket file --------------------------------------------------------- */

START_TEST(ready_stopping_watchdog_status)
{
	ck_assert_int_gt(winnow_notify_ready(), 0);
	ck_assert_str_eq(receive(), "READY=1");
	ck_assert_int_gt(winnow_notify_status("consuming docs: 3 partitions"), 0);
	ck_assert_str_eq(receive(), "STATUS=consuming docs: 3 partitions");
	ck_assert_int_gt(winnow_notify_watchdog(), 0);
	ck_assert_str_eq(receive(), "WATCHDOG=1");
	ck_assert_int_gt(winnow_notify_stopping(), 0);
	ck_assert_str_eq(receive(), "STOPPING=1");
	ck_assert_int_gt(winnow_notify("STATUS=a\nERRNO=5"), 0);
	ck_assert_str_eq(receive(), "STATUS=a\nERRNO=5");
}
END_TEST

START_TEST(reloading_carries_monotonic_usec)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t before = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	ck_assert_int_gt(winnow_notify_reloading(), 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t after = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;

	const char *msg = receive();
	uint64_t usec = 0;
	int consumed = 0;
	ck_assert_int_eq(sscanf(msg, "RELOADING=1\nMONOTONIC_USEC=%" SCNu64 "%n",
				&usec, &consumed), 1);
	ck_assert_uint_eq((size_t)consumed, strlen(msg));
	ck_assert_uint_ge(usec, before);
	ck_assert_uint_le(usec, after);
}
END_TEST

START_TEST(status_is_one_line_and_bounded)
{
	ck_assert_int_gt(winnow_notify_status("two\nlines"), 0);
	ck_assert_str_eq(receive(), "STATUS=two lines");

	char long_status[3000];
	memset(long_status, 'x', sizeof long_status - 1);
	long_status[sizeof long_status - 1] = '\0';
	ck_assert_int_gt(winnow_notify_status(long_status), 0);
	const char *msg = receive();
	ck_assert_uint_eq(strlen(msg), strlen("STATUS=") + 1000);
}
END_TEST

START_TEST(vanished_socket_is_an_error)
{
	unlink(path);
	ck_assert_int_eq(winnow_notify_ready(), -ENOENT);
}
END_TEST

/* ---- an abstract socket ---------------------------------------------------- */

START_TEST(abstract_socket_receives)
{
	ck_assert_int_gt(winnow_notify_ready(), 0);
	ck_assert_str_eq(receive(), "READY=1");
}
END_TEST

/* ---- no systemd ------------------------------------------------------------ */

START_TEST(unset_socket_is_a_noop)
{
	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(winnow_notify_ready(), 0);
	ck_assert_int_eq(winnow_notify_reloading(), 0);
	ck_assert_int_eq(winnow_notify_status("x"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	ck_assert_int_eq(winnow_notify_watchdog(), 0);
}
END_TEST

START_TEST(bad_socket_names_refused)
{
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	ck_assert_int_eq(winnow_notify_ready(), -EINVAL);
	setenv("NOTIFY_SOCKET", "@", 1);
	ck_assert_int_eq(winnow_notify_ready(), -EINVAL);
	char too_long[200] = "/";
	memset(too_long + 1, 'a', sizeof too_long - 2);
	too_long[sizeof too_long - 1] = '\0';
	setenv("NOTIFY_SOCKET", too_long, 1);
	ck_assert_int_eq(winnow_notify_ready(), -EINVAL);
}
END_TEST

START_TEST(watchdog_usec_read_from_environment)
{
	char pid[32];
	snprintf(pid, sizeof pid, "%ld", (long)getpid());

	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	ck_assert_uint_eq(winnow_notify_watchdog_usec(), 0);

	setenv("WATCHDOG_USEC", "30000000", 1);
	ck_assert_uint_eq(winnow_notify_watchdog_usec(), 30000000);
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_uint_eq(winnow_notify_watchdog_usec(), 30000000);

	/* Meant for another process (a parent that forked us). */
	setenv("WATCHDOG_PID", "1", 1);
	ck_assert_uint_eq(winnow_notify_watchdog_usec(), 0);
	setenv("WATCHDOG_PID", pid, 1);

	static const char *const bad[] = { "0", "", "abc", "30s", "-5",
					   "99999999999999999999999" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		setenv("WATCHDOG_USEC", bad[i], 1);
		ck_assert_msg(winnow_notify_watchdog_usec() == 0, "'%s'", bad[i]);
	}
}
END_TEST

static Suite *notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("path");
	tcase_add_checked_fixture(tc, setup_path, teardown_path);
	tcase_add_test(tc, ready_stopping_watchdog_status);
	tcase_add_test(tc, reloading_carries_monotonic_usec);
	tcase_add_test(tc, status_is_one_line_and_bounded);
	tcase_add_test(tc, vanished_socket_is_an_error);
	suite_add_tcase(s, tc);

	tc = tcase_create("abstract");
	tcase_add_checked_fixture(tc, setup_abstract, teardown_abstract);
	tcase_add_test(tc, abstract_socket_receives);
	suite_add_tcase(s, tc);

	tc = tcase_create("environment");
	tcase_add_test(tc, unset_socket_is_a_noop);
	tcase_add_test(tc, bad_socket_names_refused);
	tcase_add_test(tc, watchdog_usec_read_from_environment);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(notify_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
