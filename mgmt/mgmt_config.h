/* SPDX-License-Identifier: MIT */
/*
 * mgmt_config.h: the configuration file (docs/MGMT.md, "Configuration file"). An INI file read with
 * Debian's libinih: sections [network], [device], [mgmt] and [models]; every value is checked as the
 * matching command-line option checks it, and the first problem is reported with its file and line.
 * The file only says what it sets (set_mask); defaults and command-line overrides are the caller's.
 *
 * Host only, control path, start-up only: mgmt_config_load sets libinih's process-wide options for
 * the length of the call, so it must not run beside another user of libinih.
 */
#ifndef MGMT_CONFIG_H
#define MGMT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* Models in [models] (KRN_MODELS_MAX) and CIDR entries in network.allow. */
#define MGMT_CONFIG_MODELS_MAX 8u
#define MGMT_CONFIG_ALLOW_MAX 64u
/* Cores in device.worker_cores (GPU_WORKERS_MAX). */
#define MGMT_CONFIG_CORES_MAX 64u
/* Bytes of one line, its line end not counted; a longer line is an error, never split. */
#define MGMT_CONFIG_LINE_MAX 4096u
/* Bytes of the whole file. */
#define MGMT_CONFIG_FILE_MAX (1u << 20)
/* mgmt.max_connections is at most this (MGMT_CONN_MAX, as --max-connections). */
#define MGMT_CONFIG_CONNECTIONS_MAX 64u
/* network.port_id is at most this (RTE_MAX_ETHPORTS - 1 in Debian's DPDK 22.11). */
#define MGMT_CONFIG_PORT_ID_MAX 31u
/* Sizes of the string fields, NUL included. */
#define MGMT_CONFIG_IP_SIZE 16u          /* "255.255.255.255" */
#define MGMT_CONFIG_CIDR_SIZE 19u        /* "255.255.255.255/32" */
#define MGMT_CONFIG_KIND_SIZE 16u        /* "cuda-gpudirect" */
#define MGMT_CONFIG_IDLE_SIZE 8u         /* "backoff" */
#define MGMT_CONFIG_SOCKET_SIZE 108u     /* sun_path */
#define MGMT_CONFIG_MODEL_NAME_SIZE 32u  /* ZH_MODEL_NAME_MAX + 1 */
#define MGMT_CONFIG_DIR_SIZE 4096u       /* PATH_MAX */
/* Bytes of a reason, NUL included, that is never truncated short of the path and the line. */
#define MGMT_CONFIG_WHY_SIZE 512u

/* One bit of set_mask per key, in the order mgmt_config_each reports them. */
#define MGMT_CFG_IP (1ull << 0)                 /* network.ip */
#define MGMT_CFG_UDP_PORT (1ull << 1)           /* network.udp_port */
#define MGMT_CFG_PORT_ID (1ull << 2)            /* network.port_id */
#define MGMT_CFG_ALLOW (1ull << 3)              /* network.allow */
#define MGMT_CFG_KIND (1ull << 4)               /* device.kind */
#define MGMT_CFG_WORKERS (1ull << 5)            /* device.workers */
#define MGMT_CFG_WORKER_CORES (1ull << 6)       /* device.worker_cores */
#define MGMT_CFG_RING_SLOTS (1ull << 7)         /* device.ring_slots */
#define MGMT_CFG_IDLE (1ull << 8)               /* device.idle */
#define MGMT_CFG_CUDA_BLOCKS (1ull << 9)        /* device.cuda_blocks */
#define MGMT_CFG_STALL_MS (1ull << 10)          /* device.stall_ms */
#define MGMT_CFG_RUN_STATE_MIB (1ull << 11)     /* device.run_state_mib */
#define MGMT_CFG_CTL_SOCKET (1ull << 12)        /* mgmt.ctl_socket */
#define MGMT_CFG_HTTP_PORT (1ull << 13)         /* mgmt.http_port */
#define MGMT_CFG_MAX_CONNECTIONS (1ull << 14)   /* mgmt.max_connections */
#define MGMT_CFG_STOP_DEADLINE_MS (1ull << 15)  /* mgmt.stop_deadline_ms */
#define MGMT_CFG_STATS_INTERVAL_MS (1ull << 16) /* mgmt.stats_interval_ms */
#define MGMT_CFG_MODELS (1ull << 17)            /* at least one line in [models] */
#define MGMT_CFG_PAYLOAD_MEMORY (1ull << 18)    /* device.payload_memory */
#define MGMT_CFG_KEY_COUNT 19u

struct mgmt_config_model {
	char name[MGMT_CONFIG_MODEL_NAME_SIZE]; /* 1..31 bytes of [A-Za-z0-9._-] */
	char dir[MGMT_CONFIG_DIR_SIZE];         /* the model repository; "echo" is the built-in echo model */
};

/* What the file set; a field whose bit is clear in set_mask is zero. */
struct mgmt_config {
	uint64_t set_mask;                      /* MGMT_CFG_* of each key the file set */
	/* [network] */
	char ip[MGMT_CONFIG_IP_SIZE];           /* dotted quad, as inet_pton(AF_INET) accepts it */
	uint32_t udp_port;                      /* 1..65535 */
	uint32_t port_id;                       /* 0..MGMT_CONFIG_PORT_ID_MAX */
	uint32_t allow_count;                   /* 1..MGMT_CONFIG_ALLOW_MAX when set */
	char allow[MGMT_CONFIG_ALLOW_MAX][MGMT_CONFIG_CIDR_SIZE]; /* "a.b.c.d/len", len 0..32, no host bits */
	/* [device] */
	char kind[MGMT_CONFIG_KIND_SIZE];       /* auto, cpu, cuda-host or cuda-gpudirect */
	uint32_t workers;                       /* 0..64 */
	uint32_t worker_core_count;             /* 1..MGMT_CONFIG_CORES_MAX when set; == workers if both set */
	int worker_cores[MGMT_CONFIG_CORES_MAX]; /* 0..CPU_SETSIZE - 1 */
	uint32_t ring_slots;                    /* power of two, 2..65536 */
	char idle[MGMT_CONFIG_IDLE_SIZE];       /* poll or backoff */
	uint32_t cuda_blocks;                   /* 1..1024 */
	uint32_t stall_ms;                      /* 10..600000 */
	uint32_t run_state_mib;                 /* 1..65536 */
	char payload_memory[MGMT_CONFIG_KIND_SIZE]; /* pool or external */
	/* [mgmt] */
	char ctl_socket[MGMT_CONFIG_SOCKET_SIZE]; /* 0..107 bytes; empty: no control socket */
	uint32_t http_port;                     /* 0..65535; 0: no HTTP */
	uint32_t max_connections;               /* 1..MGMT_CONFIG_CONNECTIONS_MAX */
	uint32_t stop_deadline_ms;              /* 0..600000 */
	uint32_t stats_interval_ms;             /* 0..3600000 */
	/* [models], in file order: the first is the default */
	uint32_t model_count;                   /* 0..MGMT_CONFIG_MODELS_MAX */
	struct mgmt_config_model models[MGMT_CONFIG_MODELS_MAX];
};

/*
 * Parse the INI file at `path` into *out. Integers are decimal digits only (no sign, no hex, no
 * trailing junk) and range-checked; strings are length-checked; there are no booleans. Comments are
 * lines starting with ';' or '#', and ';' after whitespace ends a value. Returns 0, or a negative errno
 * with `why` set to "PATH:LINE: problem" (the first problem in the file), or "PATH: problem" when the
 * file cannot be read: -ENOENT and other open/read errors, -EFBIG over MGMT_CONFIG_FILE_MAX,
 * -EINVAL for a refused file, -ENOMEM. On failure *out is zeroed.
 */
int mgmt_config_load(const char *path, struct mgmt_config *out, char *why, size_t why_size);

/*
 * Call fn once for each key the file set, as "section.key" and its value as text, in MGMT_CFG_* order;
 * each model is "models.NAME" with its directory, in file order. Lists are comma-separated. The strings
 * are valid only during the call.
 */
void mgmt_config_each(const struct mgmt_config *cfg, void (*fn)(void *arg, const char *key, const char *value),
		      void *arg);

#endif /* MGMT_CONFIG_H */
