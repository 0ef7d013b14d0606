/*
 * team.h: a fixed team of threads that run one function together, each
 * with its index, and meet at barriers inside it (the SPMD style of
 * llama.cpp's graph compute). The engine runs a whole forward pass this
 * way: one wake-up per pass, then a barrier between steps that read what
 * the others wrote, instead of a fork and a join per matrix product.
 * Private to model/.
 *
 * Waiting spins briefly (a barrier between two GEMM halves on two cores is
 * a few microseconds apart), then sleeps on a futex, so a team never burns
 * a core that other work needs for long.
 */
#ifndef WINNOW_TEAM_H
#define WINNOW_TEAM_H

#include <stddef.h>

typedef struct winnow_team_s winnow_team_t;

typedef void (*winnow_team_fn)(void *arg, unsigned tid);

/* A team of n threads: the caller of winnow_team_run and n - 1 helpers,
 * started here. n = 1 starts none. NULL with errstr set on failure. */
winnow_team_t *winnow_team_new(unsigned n, char *errstr, size_t errstr_size);

/* Stops and joins the helpers. NULL is a no-op. */
void winnow_team_destroy(winnow_team_t *team);

unsigned winnow_team_size(const winnow_team_t *team);

/* Runs fn(arg, tid) on every member, tid 0 on the caller; returns when all
 * have returned. Not reentrant: one run at a time per team. */
void winnow_team_run(winnow_team_t *team, winnow_team_fn fn, void *arg);

/* Inside fn: returns once every member has reached it; what each wrote
 * before is then visible to all. */
void winnow_team_barrier(winnow_team_t *team);

#endif /* WINNOW_TEAM_H */
