/*
 * queue.h: a bounded blocking queue of pointers between pipeline stages.
 * Private to pipeline/.
 *
 * Any number of producers and consumers. push blocks while the queue is
 * full and pop while it is empty, so a slow stage holds back the ones before
 * it and memory stays bounded. Closing wakes everyone: push then fails, and
 * pop drains what is left before it fails.
 */
#ifndef WINNOW_QUEUE_H
#define WINNOW_QUEUE_H

#include <pthread.h>
#include <stddef.h>

typedef struct {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	void **items;
	size_t cap, head, count;
	int closed;
} winnow_queue_t;

/* 0, or -1 when out of memory. */
int winnow_queue_init(winnow_queue_t *q, size_t capacity);
void winnow_queue_destroy(winnow_queue_t *q);

/* 0, or -1 when the queue is closed (the item was not taken). */
int winnow_queue_push(winnow_queue_t *q, void *item);
/* The oldest item, or NULL once the queue is closed and empty. */
void *winnow_queue_pop(winnow_queue_t *q);
/* Like pop, but waits at most timeout_ms; NULL on time-out too
 * (*closed tells the two apart when not NULL). */
void *winnow_queue_pop_timed(winnow_queue_t *q, int timeout_ms, int *closed);
/* Pops without waiting: NULL when empty. */
void *winnow_queue_try_pop(winnow_queue_t *q);

void winnow_queue_close(winnow_queue_t *q);
size_t winnow_queue_depth(winnow_queue_t *q);

#endif /* WINNOW_QUEUE_H */
