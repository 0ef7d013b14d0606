/*
 * team.c: the thread team of team.h.
 *
 * Both the start of a run and every barrier are a generation counter: a
 * waiter spins on it for a while, then sleeps on it with FUTEX_WAIT; the
 * last member to arrive bumps it and wakes the sleepers. Sequentially
 * consistent atomics order everything a member wrote before arriving
 * before everything the others read after leaving.
 */
#define _GNU_SOURCE
#include "team.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ~20-50 us of spinning before sleeping. */
#define SPIN_ROUNDS 20000

struct winnow_team_s {
	unsigned n;
	pthread_t *helpers;

	/* The run: bumped by winnow_team_run, read by the helpers. */
	_Atomic uint32_t run_gen;
	winnow_team_fn fn;      /* written before run_gen is bumped */
	void *arg;
	atomic_int stop;

	/* Helpers done with the current run. */
	atomic_uint done;
	_Atomic uint32_t done_gen;

	/* The barrier. */
	atomic_uint arrived;
	_Atomic uint32_t barrier_gen;
};

static void futex_wait(_Atomic uint32_t *addr, uint32_t seen)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Waits until *gen differs from seen. */
static void wait_change(_Atomic uint32_t *gen, uint32_t seen)
{
	for (int i = 0; i < SPIN_ROUNDS; i++) {
		if (atomic_load(gen) != seen)
			return;
		cpu_relax();
	}
	while (atomic_load(gen) == seen)
		futex_wait(gen, seen);
}

static void bump(_Atomic uint32_t *gen)
{
	atomic_fetch_add(gen, 1);
	futex_wake_all(gen);
}

typedef struct {
	winnow_team_t *team;
	unsigned tid;
} helper_arg_t;

static void *helper_main(void *p)
{
	helper_arg_t a = *(helper_arg_t *)p;
	winnow_team_t *t = a.team;
	free(p);
	uint32_t seen = 0;
	for (;;) {
		wait_change(&t->run_gen, seen);
		seen = atomic_load(&t->run_gen);
		if (atomic_load(&t->stop))
			return NULL;
		t->fn(t->arg, a.tid);
		if (atomic_fetch_add(&t->done, 1) + 1 == t->n - 1)
			bump(&t->done_gen);
	}
}

winnow_team_t *winnow_team_new(unsigned n, char *errstr, size_t errstr_size)
{
	if (n == 0)
		n = 1;
	winnow_team_t *t = calloc(1, sizeof *t);
	if (!t)
		goto out_nomem;
	t->n = n;
	if (n == 1)
		return t;
	t->helpers = calloc(n - 1, sizeof *t->helpers);
	if (!t->helpers)
		goto out_free_team;
	for (unsigned i = 1; i < n; i++) {
		helper_arg_t *a = malloc(sizeof *a);
		int err = ENOMEM;
		if (a) {
			a->team = t;
			a->tid = i;
			err = pthread_create(&t->helpers[i - 1], NULL, helper_main, a);
		}
		if (err) {
			free(a);
			snprintf(errstr, errstr_size,
				 "cannot start engine thread %u of %u: %s", i, n,
				 strerror(err));
			t->n = i; /* join the ones started */
			winnow_team_destroy(t);
			return NULL;
		}
	}
	return t;

out_free_team:
	free(t);
out_nomem:
	snprintf(errstr, errstr_size, "cannot start %u engine threads: out of memory", n);
	return NULL;
}

void winnow_team_destroy(winnow_team_t *t)
{
	if (!t)
		return;
	if (t->n > 1) {
		atomic_store(&t->stop, 1);
		bump(&t->run_gen);
		for (unsigned i = 0; i + 1 < t->n; i++)
			pthread_join(t->helpers[i], NULL);
	}
	free(t->helpers);
	free(t);
}

unsigned winnow_team_size(const winnow_team_t *t)
{
	return t->n;
}

void winnow_team_run(winnow_team_t *t, winnow_team_fn fn, void *arg)
{
	if (t->n == 1) {
		fn(arg, 0);
		return;
	}
	t->fn = fn;
	t->arg = arg;
	atomic_store(&t->done, 0);
	uint32_t done_seen = atomic_load(&t->done_gen);
	bump(&t->run_gen);
	fn(arg, 0);
	wait_change(&t->done_gen, done_seen);
}

void winnow_team_barrier(winnow_team_t *t)
{
	if (t->n == 1)
		return;
	uint32_t seen = atomic_load(&t->barrier_gen);
	if (atomic_fetch_add(&t->arrived, 1) + 1 == t->n) {
		atomic_store(&t->arrived, 0);
		bump(&t->barrier_gen);
		return;
	}
	wait_change(&t->barrier_gen, seen);
}
