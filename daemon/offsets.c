/*
 * offsets.c: the commit points of offsets.h. Each partition keeps its open
 * offsets in a ring, oldest first; entries are marked finished in any order
 * and leave from the front, so the front is always the lowest unfinished.
 */
#include "offsets.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
	int64_t offset;
	int finished;
} entry_t;

typedef struct {
	int32_t id;
	int assigned;
	entry_t *ring;
	size_t cap, head, count;
	int64_t last; /* the last offset begun, -1 before any */
} partition_t;

struct winnow_offsets_s {
	partition_t *parts;
	size_t n, cap;
};

winnow_offsets_t *winnow_offsets_new(void)
{
	return calloc(1, sizeof(winnow_offsets_t));
}

void winnow_offsets_destroy(winnow_offsets_t *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->parts[i].ring);
	free(t->parts);
	free(t);
}

static partition_t *find(const winnow_offsets_t *t, int32_t id)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->parts[i].id == id)
			return &t->parts[i];
	return NULL;
}

int winnow_offsets_assign(winnow_offsets_t *t, int32_t id)
{
	partition_t *p = find(t, id);
	if (!p) {
		if (t->n == t->cap) {
			size_t ncap = t->cap ? 2 * t->cap : 16;
			partition_t *np = realloc(t->parts, ncap * sizeof *np);
			if (!np)
				return -1;
			t->parts = np;
			t->cap = ncap;
		}
		p = &t->parts[t->n++];
		memset(p, 0, sizeof *p);
		p->id = id;
	}
	p->assigned = 1;
	p->head = p->count = 0;
	p->last = -1;
	return 0;
}

void winnow_offsets_revoke(winnow_offsets_t *t, int32_t id)
{
	partition_t *p = find(t, id);
	if (p) {
		p->assigned = 0;
		p->head = p->count = 0;
	}
}

int winnow_offsets_assigned(const winnow_offsets_t *t, int32_t id)
{
	const partition_t *p = find(t, id);
	return p && p->assigned;
}

static entry_t *at(partition_t *p, size_t i)
{
	return &p->ring[(p->head + i) % p->cap];
}

int winnow_offsets_begin(winnow_offsets_t *t, int32_t id, int64_t offset)
{
	partition_t *p = find(t, id);
	if (!p || !p->assigned || offset <= p->last)
		return -1;
	if (p->count == p->cap) {
		size_t ncap = p->cap ? 2 * p->cap : 64;
		entry_t *nr = malloc(ncap * sizeof *nr);
		if (!nr)
			return -1;
		for (size_t i = 0; i < p->count; i++)
			nr[i] = *at(p, i);
		free(p->ring);
		p->ring = nr;
		p->cap = ncap;
		p->head = 0;
	}
	p->ring[(p->head + p->count) % p->cap] = (entry_t){ offset, 0 };
	p->count++;
	p->last = offset;
	return 0;
}

int winnow_offsets_finish(winnow_offsets_t *t, int32_t id, int64_t offset,
			  int64_t *commit)
{
	partition_t *p = find(t, id);
	if (!p || !p->assigned || p->count == 0)
		return -1;
	/* Binary search: offsets rise from the front of the ring. */
	size_t lo = 0, hi = p->count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (at(p, mid)->offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == p->count || at(p, lo)->offset != offset)
		return -1;
	at(p, lo)->finished = 1;
	if (lo != 0)
		return 0;
	while (p->count && at(p, 0)->finished) {
		p->head = (p->head + 1) % p->cap;
		p->count--;
	}
	*commit = p->count ? at(p, 0)->offset : p->last + 1;
	return 1;
}

size_t winnow_offsets_open(const winnow_offsets_t *t, int32_t id)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n; i++)
		if (id < 0 || t->parts[i].id == id)
			n += t->parts[i].count;
	return n;
}
