/*
 * notify.c: sd_notify's datagram protocol, as notify.h describes it.
 *
 * The protocol: one AF_UNIX SOCK_DGRAM datagram per notification, sent to
 * the socket named by $NOTIFY_SOCKET; "/path" is a socket file, "@name" the
 * abstract socket whose address is a NUL byte followed by name (no
 * terminating NUL, so the address length is exact). systemd identifies the
 * sender by its credentials, which the kernel attaches; nothing else is
 * needed.
 */
#include "notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define STATUS_MAX 1000

int winnow_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 0;

	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t path_len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || path_len < 2 ||
	    path_len > sizeof sa.sun_path ||
	    (path[0] == '/' && path_len == sizeof sa.sun_path))
		return -EINVAL; /* also "vsock:..." of systemd 254, unused here */
	memcpy(sa.sun_path, path, path_len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	socklen_t sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
				       path_len + (path[0] == '/'));

	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	size_t len = strlen(state);
	ssize_t sent = sendto(fd, state, len, MSG_NOSIGNAL,
			      (struct sockaddr *)&sa, sa_len);
	int rc = sent < 0 ? -errno : (size_t)sent == len ? 1 : -EMSGSIZE;
	close(fd);
	return rc;
}

int winnow_notify_ready(void)
{
	return winnow_notify("READY=1");
}

int winnow_notify_stopping(void)
{
	return winnow_notify("STOPPING=1");
}

int winnow_notify_watchdog(void)
{
	return winnow_notify("WATCHDOG=1");
}

int winnow_notify_reloading(void)
{
	struct timespec ts;
	char state[64];
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(state, sizeof state, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
		 (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
	return winnow_notify(state);
}

int winnow_notify_status(const char *status)
{
	char state[sizeof "STATUS=" + STATUS_MAX];
	size_t n = strlen(status);
	if (n > STATUS_MAX)
		n = STATUS_MAX;
	memcpy(state, "STATUS=", 7);
	for (size_t i = 0; i < n; i++)
		state[7 + i] = status[i] == '\n' ? ' ' : status[i];
	state[7 + n] = '\0';
	return winnow_notify(state);
}

/* A positive decimal number with nothing after it, else 0. */
static uint64_t parse_positive(const char *s)
{
	if (!s || *s < '0' || *s > '9')
		return 0;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return 0;
	return v;
}

uint64_t winnow_notify_watchdog_usec(void)
{
	const char *pid = getenv("WATCHDOG_PID");
	if (pid && parse_positive(pid) != (uint64_t)getpid())
		return 0;
	return parse_positive(getenv("WATCHDOG_USEC"));
}
