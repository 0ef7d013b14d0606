/* queue.c: the bounded blocking queue of queue.h (a ring of pointers). */
#include "queue.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

int winnow_queue_init(winnow_queue_t *q, size_t capacity)
{
	q->items = calloc(capacity ? capacity : 1, sizeof *q->items);
	if (!q->items)
		return -1;
	q->cap = capacity ? capacity : 1;
	q->head = q->count = 0;
	q->closed = 0;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&q->not_empty, &attr);
	pthread_cond_init(&q->not_full, &attr);
	pthread_condattr_destroy(&attr);
	return 0;
}

void winnow_queue_destroy(winnow_queue_t *q)
{
	if (!q->items)
		return;
	pthread_cond_destroy(&q->not_full);
	pthread_cond_destroy(&q->not_empty);
	pthread_mutex_destroy(&q->lock);
	free(q->items);
	q->items = NULL;
}

int winnow_queue_push(winnow_queue_t *q, void *item)
{
	pthread_mutex_lock(&q->lock);
	while (q->count == q->cap && !q->closed)
		pthread_cond_wait(&q->not_full, &q->lock);
	if (q->closed) {
		pthread_mutex_unlock(&q->lock);
		return -1;
	}
	q->items[(q->head + q->count) % q->cap] = item;
	q->count++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

/* Takes the oldest item; the lock is held and count > 0. */
static void *take(winnow_queue_t *q)
{
	void *item = q->items[q->head];
	q->head = (q->head + 1) % q->cap;
	q->count--;
	pthread_cond_signal(&q->not_full);
	return item;
}

void *winnow_queue_pop(winnow_queue_t *q)
{
	return winnow_queue_pop_timed(q, -1, NULL);
}

void *winnow_queue_pop_timed(winnow_queue_t *q, int timeout_ms, int *closed)
{
	struct timespec deadline;
	void *item = NULL;
	if (timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && !q->closed) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&q->not_empty, &q->lock);
		} else if (pthread_cond_timedwait(&q->not_empty, &q->lock,
						  &deadline) == ETIMEDOUT) {
			break;
		}
	}
	if (q->count)
		item = take(q);
	if (closed)
		*closed = q->closed && q->count == 0 && !item;
	pthread_mutex_unlock(&q->lock);
	return item;
}

void *winnow_queue_try_pop(winnow_queue_t *q)
{
	void *item = NULL;
	pthread_mutex_lock(&q->lock);
	if (q->count)
		item = take(q);
	pthread_mutex_unlock(&q->lock);
	return item;
}

void winnow_queue_close(winnow_queue_t *q)
{
	if (!q->items)
		return; /* never initialised */
	pthread_mutex_lock(&q->lock);
	q->closed = 1;
	pthread_cond_broadcast(&q->not_empty);
	pthread_cond_broadcast(&q->not_full);
	pthread_mutex_unlock(&q->lock);
}

size_t winnow_queue_depth(winnow_queue_t *q)
{
	if (!q->items)
		return 0;
	pthread_mutex_lock(&q->lock);
	size_t n = q->count;
	pthread_mutex_unlock(&q->lock);
	return n;
}
