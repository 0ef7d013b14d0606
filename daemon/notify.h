/*
 * notify.h: the systemd notification protocol (sd_notify(3)) without
 * libsystemd.
 *
 * Under Type=notify, systemd passes a datagram socket in $NOTIFY_SOCKET (a
 * path, or "@name" for an abstract socket) and reads newline-separated
 * VAR=value assignments from it. winnowd sends:
 *
 *   READY=1          once it is consuming (and again after a reload);
 *   RELOADING=1      on SIGHUP, before re-reading its configuration;
 *   STOPPING=1       on SIGTERM, before it drains;
 *   STATUS=...       a line for `systemctl status`;
 *   WATCHDOG=1       from the loop that makes progress, every half of
 *                    winnow_notify_watchdog_usec().
 *
 * Outside systemd (NOTIFY_SOCKET unset) every call is a no-op returning 0,
 * so the daemon calls them unconditionally. Any thread may call them: each
 * call opens, sends on and closes its own socket. The environment is left
 * as it is (later notifications need it).
 *
 * Return values, as sd_notify(): > 0 sent, 0 not under systemd, -errno on
 * failure (a bad NOTIFY_SOCKET, a socket that went away).
 */
#ifndef WINNOW_NOTIFY_H
#define WINNOW_NOTIFY_H

#include <stdint.h>

/* Sends state, one or more "VAR=value" lines, as one datagram. */
int winnow_notify(const char *state);

int winnow_notify_ready(void);      /* "READY=1" */
int winnow_notify_stopping(void);   /* "STOPPING=1" */
int winnow_notify_watchdog(void);   /* "WATCHDOG=1" */

/* "RELOADING=1" with "MONOTONIC_USEC=<CLOCK_MONOTONIC now>", which systemd
 * 253 and later require for Type=notify-reload and older ones ignore. Send
 * winnow_notify_ready() when the reload is done. */
int winnow_notify_reloading(void);

/* "STATUS=<status>", one line: newlines in status become spaces and a
 * status beyond 1000 bytes is cut. */
int winnow_notify_status(const char *status);

/*
 * The watchdog interval systemd expects pings within (WatchdogSec=), in
 * microseconds: $WATCHDOG_USEC if it is set, a positive number and
 * $WATCHDOG_PID is unset or this process; 0 (no watchdog) otherwise. Ping
 * at half of it.
 */
uint64_t winnow_notify_watchdog_usec(void);

#endif /* WINNOW_NOTIFY_H */
