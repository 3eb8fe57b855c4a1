/*
 * now: the two clocks the daemon reads, in milliseconds.
 */
#ifndef TLSGATE_NOW_H
#define TLSGATE_NOW_H

#include <stdint.h>

/** Milliseconds of CLOCK_MONOTONIC: for intervals and deadlines. */
int64_t now_mono_ms(void);

/** Milliseconds since the epoch (CLOCK_REALTIME): for timestamps shown
 *  to people or stored on disk; may jump. */
int64_t now_wall_ms(void);

#endif
