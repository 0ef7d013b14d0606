/*
 * fixed_port.c: give the first mock broker the port asked for with -p.
 *
 * librdkafka 2.0.x binds every mock broker to 127.0.0.1:0 and has no way to
 * choose the port (rd_kafka_mock_broker_set_host_port() only arrived in
 * 2.10). So this file defines bind() itself: the executable comes first in
 * the dynamic linker's search order, so librdkafka's call to bind() lands
 * here (the link keeps the symbol exported, see CMakeLists.txt). While armed,
 * the first bind of an IPv4 socket to 127.0.0.1:0 becomes a bind to
 * 127.0.0.1:PORT; every other call goes straight to the kernel. The mock
 * remembers the address it got, so the broker keeps the port across
 * "broker down" / "broker up".
 *
 * The broker that gets the port is broker 1, because
 * rd_kafka_mock_cluster_new() creates brokers 1..N in order, binding each
 * one's listener before the next and before its own thread starts.
 *
 * A bind failure inside rd_kafka_mock_cluster_new() is fatal in 2.0.x: it
 * tears down the half-built cluster and trips an assertion. main() therefore
 * checks the port first; if another process takes it in the moment between
 * that check and this bind, we end the process here with the same message
 * rather than let the mock abort.
 */
#include "broker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_int armed_port;   /* 0: every bind() passes through */
static atomic_int port_taken;

void fixed_port_arm(int port)
{
	atomic_store(&port_taken, 0);
	atomic_store(&armed_port, port);
}

int fixed_port_disarm(void)
{
	atomic_store(&armed_port, 0);
	return atomic_load(&port_taken);
}

/*
 * The C library's bind() is a plain system call on Linux; calling the system
 * call directly avoids looking the next definition up with dlsym().
 */
static int bind_syscall(int fd, const struct sockaddr *addr, socklen_t len)
{
	return (int)syscall(SYS_bind, fd, addr, len);
}

int bind(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	struct sockaddr_in sin;
	int port = atomic_load(&armed_port);

	if (!port || !addr || addrlen != sizeof sin ||
	    addr->sa_family != AF_INET)
		return bind_syscall(fd, addr, addrlen);

	memcpy(&sin, addr, sizeof sin);
	if (sin.sin_port != 0 || sin.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
		return bind_syscall(fd, addr, addrlen);

	/* Only one bind gets the port, whichever thread makes it. */
	if (!atomic_compare_exchange_strong(&armed_port, &port, 0))
		return bind_syscall(fd, addr, addrlen);

	sin.sin_port = htons((uint16_t)port);
	if (bind_syscall(fd, (const struct sockaddr *)&sin, sizeof sin) == 0) {
		atomic_store(&port_taken, 1);
		return 0;
	}
	if (errno == EADDRINUSE)
		broker_log("port %d is in use", port);
	else
		broker_log("cannot listen on 127.0.0.1:%d: %s", port,
			   strerror(errno));
	_exit(2);   /* not exit(): librdkafka's threads are running */
}
