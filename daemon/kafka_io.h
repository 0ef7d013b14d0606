/*
 * kafka_io.h: winnowd's Kafka side: the consumer loop, the producer of
 * output and dead-letter records, offsets, rebalances, replay.
 *
 * Delivery semantics (DESIGN.md): at-least-once. A consumed message enters
 * the offset tracker (offsets.h) and the pipeline; its output or
 * dead-letter record is produced from the pipeline's output thread; only
 * when the broker acknowledges that record (the delivery report, served on
 * the main thread) is the offset finished and the partition's lowest
 * unfinished offset stored for the next commit. Records for partitions
 * revoked meanwhile are dropped, never committed.
 */
#ifndef WINNOW_KAFKA_IO_H
#define WINNOW_KAFKA_IO_H

#include "config.h"
#include "winnow_pipeline.h"

#include <signal.h>
#include <stdint.h>

/* What --replay asks for (DESIGN.md, Replay). */
typedef struct {
	const char *topic;
	int64_t from_offset;   /* -1: from the beginning (or from_time) */
	int64_t from_time_ms;  /* -1: unset */
	int64_t to_time_ms;    /* -1: up to the end offsets read at start */
	const char *output_topic;
} winnow_replay_t;

/* Flags the signal handlers set and the loop reads. */
typedef struct {
	volatile sig_atomic_t stop;
	volatile sig_atomic_t reload;
} winnow_signals_t;

/*
 * Runs the daemon until a stop signal: consumes, classifies, produces,
 * commits. replay NULL: the live consumer group; else a bounded replay
 * that exits when done. config_path is re-read on SIGHUP. Returns the
 * process exit code.
 */
int winnow_kafka_run(winnow_config_t *cfg, const char *config_path,
		     const winnow_model_t *model, const winnow_replay_t *replay,
		     winnow_signals_t *signals);

#endif /* WINNOW_KAFKA_IO_H */
