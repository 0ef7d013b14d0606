/*
 * offsets.h: which input offsets may be committed (DESIGN.md, delivery
 * semantics). Used by the daemon's main thread only.
 *
 * Per partition, the offsets consumed and not yet finished, in consumption
 * order. An offset is finished when its output or dead-letter record has
 * been acknowledged by the broker. The commit point of a partition is the
 * lowest unfinished offset (or one past the last finished when none is
 * open), so a crash replays at most what was in flight and loses nothing.
 */
#ifndef WINNOW_OFFSETS_H
#define WINNOW_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct winnow_offsets_s winnow_offsets_t;

winnow_offsets_t *winnow_offsets_new(void);
void winnow_offsets_destroy(winnow_offsets_t *t);

/* Starts (or restarts) tracking a partition, forgetting what it held. */
int winnow_offsets_assign(winnow_offsets_t *t, int32_t partition);
/* Stops tracking a partition: later finishes for it are ignored. */
void winnow_offsets_revoke(winnow_offsets_t *t, int32_t partition);
int winnow_offsets_assigned(const winnow_offsets_t *t, int32_t partition);

/* A consumed offset enters flight. Offsets of a partition must rise.
 * 0, or -1 (untracked partition, offset not rising, out of memory). */
int winnow_offsets_begin(winnow_offsets_t *t, int32_t partition, int64_t offset);

/*
 * An offset is finished. Returns 1 and sets *commit to the new commit point
 * when it moved, 0 when it did not (an earlier offset is still open), -1
 * when the partition or offset is not tracked (revoked meanwhile).
 */
int winnow_offsets_finish(winnow_offsets_t *t, int32_t partition,
			  int64_t offset, int64_t *commit);

/* Offsets in flight in one partition, or in all when partition < 0. */
size_t winnow_offsets_open(const winnow_offsets_t *t, int32_t partition);

#endif /* WINNOW_OFFSETS_H */
