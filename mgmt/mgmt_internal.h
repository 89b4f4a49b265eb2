/* SPDX-License-Identifier: MIT */
/*
 * mgmt_internal.h: what the management plane's files share: the loop's state and the functions one
 * file offers another. Not for use outside mgmt/.
 */
#ifndef MGMT_INTERNAL_H
#define MGMT_INTERNAL_H

#include <limits.h>
#include <stdint.h>

#include <liburing.h>

#include "mgmt.h"

#define MGMT_RX_BYTES (64u * 1024u + 4u) /* one largest frame and its length */
#define MGMT_TX_BYTES (256u * 1024u)
#define MGMT_FRAME_MAX_BYTES 65536u
#define MGMT_HTTP_HEADER_MAX_BYTES 8192u
#define MGMT_IDLE_CLOSE_NS (10ull * 1000000000ull)
#define MGMT_STAGING_BYTES (1u << 20)

enum mgmt_conn_kind { CONN_CTL = 1, CONN_HTTP = 2 };

enum mgmt_conn_state {
	CONN_FREE = 0,
	CONN_OPEN,
	CONN_CLOSING,   /* shut down; the slot frees once no operation is in flight on it */
};

struct mgmt_conn {
	enum mgmt_conn_state state;
	enum mgmt_conn_kind kind;
	int fd;
	uint32_t gen;               /* bumped when the slot is reused: stale completions are ignored */
	uint32_t ops_in_flight;     /* recv and send submitted and not completed */
	int recv_posted;
	int send_posted;
	int close_after_send;
	int waiting;                /* a reply is deferred (a model load in progress) */
	uint64_t last_active_ns;
	uint8_t *rx;                /* [MGMT_RX_BYTES] */
	uint32_t rx_len;
	uint8_t *tx;                /* [MGMT_TX_BYTES] */
	uint32_t tx_len;
	uint32_t tx_off;
};

enum load_step {
	LOAD_IDLE = 0,
	LOAD_OPEN_CONFIG,
	LOAD_READ_CONFIG,
	LOAD_OPEN_MODEL,
	LOAD_STATX_MODEL,
	LOAD_READ_MODEL,
};

/* One model load in progress (one at a time): its files are read through the ring. */
struct mgmt_load {
	enum load_step step;
	uint32_t conn_idx;
	uint32_t conn_gen;
	uint64_t request_id;
	int replace;
	char name[ZH_MODEL_NAME_MAX + 1];
	char path[PATH_MAX];
	char file[PATH_MAX + 32];
	int fd;
	int direct;                 /* O_DIRECT for the model file */
	struct statx stx;
	uint8_t *cfg_buf;
	uint32_t cfg_len;
	uint8_t *st_buf;            /* the model file, read through the staging buffer */
	uint64_t st_size;
	uint64_t st_off;
	uint64_t started_ns;
};

struct mgmt {
	struct mgmt_params p;
	struct io_uring ring;
	int ring_ready;
	int ctl_fd;
	int http_fd;
	uint64_t started_ns;
	uint64_t last_stats_ns;
	struct __kernel_timespec tick;
	struct mgmt_conn conns[MGMT_CONN_MAX];
	uint32_t conn_count;
	uint8_t *staging;           /* [MGMT_STAGING_BYTES], registered with the ring */
	struct mgmt_load load;
	struct mgmt_registry *next; /* scratch for staged registry changes */
	uint64_t refused_connections;
	uint64_t watchdog_us;       /* systemd's WatchdogSec in us, 0 when not under a watchdog */
	uint64_t last_watchdog_ns;
	int clock_failing;          /* the last device clock refresh failed (said once, not every second) */
};

uint64_t mgmt_now_ns(void);

/* mgmt_http.c */
void mgmt_http_handle(struct mgmt *m, struct mgmt_conn *c);
int mgmt_metrics_render(struct mgmt *m, char *buf, uint32_t cap, uint32_t *len);

/* mgmt_ctl.c */
void mgmt_ctl_handle(struct mgmt *m, struct mgmt_conn *c);
/* The load state machine, driven by ring completions of kind MGMT_OP_LOAD. */
void mgmt_load_complete(struct mgmt *m, int res);
void mgmt_ctl_refuse(struct mgmt_conn *c);

/* mgmt_server.c */
void mgmt_conn_flush(struct mgmt *m, struct mgmt_conn *c);
uint32_t mgmt_conn_idx(const struct mgmt *m, const struct mgmt_conn *c);
int mgmt_submit_load_op(struct mgmt *m, struct io_uring_sqe **sqe);
/* Publish the staged registry m->next to the device; 0 or -errno with why. */
int mgmt_publish(struct mgmt *m, char why[MGMT_WHY_SIZE]);

#endif /* MGMT_INTERNAL_H */
