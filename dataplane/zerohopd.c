/* SPDX-License-Identifier: MIT */
/*
 * zerohopd: the appliance. `zerohopd [EAL options] -- [zerohop options]`.
 *
 * The main lcore is the control core: it sets everything up, launches one rx/tx lcore per queue on the
 * other lcores, then sleeps until a signal asks it to print counters or to stop. Shutdown runs in the
 * reverse order of start-up: rx/tx lcores (which let the device finish what they published), the
 * device, the port, the EAL.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <rte_common.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <systemd/sd-daemon.h>

#include "dp_lcore.h"
#include "dp_port.h"
#include "gpu_cuda.h"
#include "gpu_device.h"
#include "krn_math.h"
#include "mgmt.h"
#include "mgmt_config.h"
#include "mgmt_model.h"
#include "mgmt_registry.h"

#define DEFAULT_IP "198.18.0.1"
#define DEFAULT_UDP_PORT 9000u
#define DEFAULT_RING_SLOTS 1024u
#define DEFAULT_RUN_STATE_MIB 16u
#define DEFAULT_STOP_DEADLINE_MS 2000u
#define STOP_POLL_US 1000u
#define DP_QUEUES_MAX 16u

struct model_arg {
	const char *name;  /* points into argv */
	size_t name_len;
	const char *dir;   /* NULL: the built-in echo model */
};

struct options {
	uint16_t port_id;
	uint32_t model_count;
	struct model_arg model_args[KRN_MODELS_MAX];
	struct in_addr ip;
	uint16_t udp_port;
	enum dp_idle idle;
	uint32_t stats_interval_ms;
	struct gpu_config gpu;
	uint32_t worker_core_count; /* cores given with --worker-cores, 0 if none */
	struct dp_acl acl;          /* --allow prefixes; empty: every source */
	const char *ctl_socket;
	uint32_t http_port;
	uint32_t max_connections;
	uint32_t stop_deadline_ms;
	uint32_t run_state_mib;
	uint32_t queue_count;       /* rx/tx queue pairs, one rx/tx lcore each */
	int tx_copy;                /* copy answers into the request mbuf instead of attaching them */
	int no_rx_stamp;            /* start traces at the rx poll even where the port stamps frames */
};

static volatile sig_atomic_t quit_signal;
static volatile sig_atomic_t stats_signal;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		stats_signal = 1;
	else
		quit_signal = sig;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: zerohopd [EAL options] -- [options]\n"
		"  EAL options: always --no-pci (or an allow-list) and a --vdev, e.g.\n"
		"    --no-pci --no-huge -m 256 --vdev net_af_packet0,iface=zh0 -l 0-1\n"
		"  --ip ADDR            IPv4 address the appliance answers on (default " DEFAULT_IP ")\n"
		"  --udp-port N         UDP port of requests (default %u)\n"
		"  --port N             DPDK port id (default 0)\n"
		"  --device KIND        auto, cpu, cuda-host or cuda-gpudirect (default auto)\n"
		"  --workers N          cpu device worker threads (default 1; 0: inline, the rx lcore serves)\n"
		"  --worker-cores LIST  comma-separated cores for the workers (default: the main lcore's)\n"
		"  --ring-slots N       request ring slots, a power of two (default %u)\n"
		"  --idle MODE          poll (busy polling, the default) or backoff (sleep when idle)\n"
		"  --model NAME=DIR     serve the model repository DIR (config.json, model.safetensors) as NAME;\n"
		"                       repeat for more models, the first is the default\n"
		"  --model NAME         serve the built-in diagnostic model `echo` under NAME (default: echo)\n"
		"  --stats-interval-ms N  print counters every N ms (default 0: only on SIGUSR1 and at exit)\n"
		"  --cuda-blocks N      blocks of the persistent CUDA kernel (default 4)\n"
		"  --stall-ms N         heartbeat age after which the device counts as stalled (default 1000)\n"
		"  --ctl-socket PATH    control socket for zerohopctl (default " MGMT_CTL_SOCKET_DEFAULT ", \"\" disables)\n"
		"  --http-port N        loopback HTTP port for /metrics, /healthz, /readyz (default 9100, 0 disables)\n"
		"  --max-connections N  management connections at once (default 64)\n"
		"  --stop-deadline-ms N how long SIGTERM waits for requests in flight (default 2000)\n"
		"  --run-state-mib N    run state (KV cache) per consumer, MiB, for models loaded later (default 16)\n"
		"  --queues N           rx/tx queue pairs, one rx/tx lcore each (default 1; RSS spreads flows\n"
		"                       where the port has it; af_packet needs qpairs=N in its --vdev)\n"
		"  --payload-memory M   pool (the port's hugepage mbufs, the default) or external (memory the\n"
		"                       device sets apart, registered with DPDK and DMA-mapped for the port, as\n"
		"                       cuda-gpudirect does with GPU memory; always external there)\n"
		"  --tx-copy            copy answers into the request's mbuf (default: send them zero-copy,\n"
		"                       attached where the device wrote them, when the port allows)\n"
		"  --config FILE        an INI configuration file (docs/MGMT.md); options given here override it\n"
		"  --check-config FILE  validate FILE and exit: 0 valid, 1 not (each error with its line)\n"
		"  --allow ADDR/LEN     answer only sources in this IPv4 prefix (repeat for up to 64; default: all)\n"
		"  --no-rx-timestamp    ignore the port's rx timestamps: traces start at the rx poll\n"
		"  --help\n",
		DEFAULT_UDP_PORT, DEFAULT_RING_SLOTS);
}

static int parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_cores(const char *text, struct options *opt)
{
	struct gpu_config *gpu = &opt->gpu;
	char buf[256];
	uint32_t count = 0;

	if (strlen(text) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, text);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint32_t core;

		if (count >= GPU_WORKERS_MAX || parse_u32(tok, 0, CPU_SETSIZE - 1, &core))
			return -EINVAL;
		gpu->worker_cores[count++] = (int)core;
	}
	opt->worker_core_count = count;
	return count > 0 ? 0 : -EINVAL;
}

/* Settings from a configuration file, under the command line's: every key the file set. */
static int apply_config(const struct mgmt_config *f, struct options *opt)
{
	struct gpu_config *gpu = &opt->gpu;

	if ((f->set_mask & MGMT_CFG_IP) && inet_pton(AF_INET, f->ip, &opt->ip) != 1)
		return -EINVAL;
	if (f->set_mask & MGMT_CFG_UDP_PORT)
		opt->udp_port = (uint16_t)f->udp_port;
	if (f->set_mask & MGMT_CFG_PORT_ID)
		opt->port_id = (uint16_t)f->port_id;
	for (uint32_t i = 0; (f->set_mask & MGMT_CFG_ALLOW) && i < f->allow_count; i++)
		if (dp_acl_add(&opt->acl, f->allow[i]) != 0)
			return -EINVAL;
	if ((f->set_mask & MGMT_CFG_KIND) && gpu_kind_parse(f->kind, &gpu->kind) != 0)
		return -EINVAL;
	if (f->set_mask & MGMT_CFG_WORKERS)
		gpu->worker_count = f->workers;
	if (f->set_mask & MGMT_CFG_WORKER_CORES) {
		for (uint32_t i = 0; i < f->worker_core_count; i++)
			gpu->worker_cores[i] = f->worker_cores[i];
		opt->worker_core_count = f->worker_core_count;
	}
	if (f->set_mask & MGMT_CFG_RING_SLOTS)
		gpu->ring_slot_count = f->ring_slots;
	if (f->set_mask & MGMT_CFG_IDLE)
		opt->idle = strcmp(f->idle, "backoff") == 0 ? DP_IDLE_BACKOFF : DP_IDLE_POLL;
	if (f->set_mask & MGMT_CFG_CUDA_BLOCKS)
		gpu->cuda_block_count = f->cuda_blocks;
	if (f->set_mask & MGMT_CFG_STALL_MS)
		gpu->stall_ms = f->stall_ms;
	if (f->set_mask & MGMT_CFG_RUN_STATE_MIB)
		opt->run_state_mib = f->run_state_mib;
	if (f->set_mask & MGMT_CFG_PAYLOAD_MEMORY)
		gpu->payload_memory = strcmp(f->payload_memory, "external") == 0 ? GPU_PAYLOAD_EXTERNAL : GPU_PAYLOAD_PORT_POOL;
	if (f->set_mask & MGMT_CFG_CTL_SOCKET)
		opt->ctl_socket = f->ctl_socket;
	if (f->set_mask & MGMT_CFG_HTTP_PORT)
		opt->http_port = f->http_port;
	if (f->set_mask & MGMT_CFG_MAX_CONNECTIONS)
		opt->max_connections = f->max_connections;
	if (f->set_mask & MGMT_CFG_STOP_DEADLINE_MS)
		opt->stop_deadline_ms = f->stop_deadline_ms;
	if (f->set_mask & MGMT_CFG_STATS_INTERVAL_MS)
		opt->stats_interval_ms = f->stats_interval_ms;
	for (uint32_t i = 0; (f->set_mask & MGMT_CFG_MODELS) && i < f->model_count; i++) {
		struct model_arg *ma = &opt->model_args[opt->model_count++];

		ma->name = f->models[i].name;
		ma->name_len = strlen(f->models[i].name);
		ma->dir = strcmp(f->models[i].dir, "echo") == 0 ? NULL : f->models[i].dir;
	}
	return 0;
}

static int parse_options(int argc, char **argv, struct options *opt, const struct mgmt_config *file)
{
	enum { O_IP = 256, O_UDP_PORT, O_PORT, O_DEVICE, O_WORKERS, O_WORKER_CORES, O_RING_SLOTS, O_IDLE,
	       O_MODEL, O_STATS, O_CUDA_BLOCKS, O_STALL_MS, O_CTL_SOCKET, O_HTTP_PORT, O_MAX_CONN, O_STOP_DEADLINE,
	       O_RUN_STATE, O_CONFIG, O_QUEUES, O_TX_COPY, O_ALLOW, O_PAYLOAD_MEMORY, O_NO_RX_STAMP, O_HELP };
	static const struct option longopts[] = {
		{ "ip", required_argument, NULL, O_IP },
		{ "udp-port", required_argument, NULL, O_UDP_PORT },
		{ "port", required_argument, NULL, O_PORT },
		{ "device", required_argument, NULL, O_DEVICE },
		{ "workers", required_argument, NULL, O_WORKERS },
		{ "worker-cores", required_argument, NULL, O_WORKER_CORES },
		{ "ring-slots", required_argument, NULL, O_RING_SLOTS },
		{ "idle", required_argument, NULL, O_IDLE },
		{ "model", required_argument, NULL, O_MODEL },
		{ "stats-interval-ms", required_argument, NULL, O_STATS },
		{ "cuda-blocks", required_argument, NULL, O_CUDA_BLOCKS },
		{ "stall-ms", required_argument, NULL, O_STALL_MS },
		{ "ctl-socket", required_argument, NULL, O_CTL_SOCKET },
		{ "http-port", required_argument, NULL, O_HTTP_PORT },
		{ "max-connections", required_argument, NULL, O_MAX_CONN },
		{ "stop-deadline-ms", required_argument, NULL, O_STOP_DEADLINE },
		{ "run-state-mib", required_argument, NULL, O_RUN_STATE },
		{ "config", required_argument, NULL, O_CONFIG },
		{ "queues", required_argument, NULL, O_QUEUES },
		{ "tx-copy", no_argument, NULL, O_TX_COPY },
		{ "allow", required_argument, NULL, O_ALLOW },
		{ "payload-memory", required_argument, NULL, O_PAYLOAD_MEMORY },
		{ "no-rx-timestamp", no_argument, NULL, O_NO_RX_STAMP },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	uint32_t v;
	int c;

	memset(opt, 0, sizeof(*opt));
	dp_acl_init(&opt->acl);
	inet_pton(AF_INET, DEFAULT_IP, &opt->ip);
	opt->udp_port = DEFAULT_UDP_PORT;
	opt->idle = DP_IDLE_POLL;
	opt->gpu.kind = GPU_KIND_AUTO;
	opt->gpu.worker_count = 1;
	opt->gpu.ring_slot_count = DEFAULT_RING_SLOTS;
	opt->ctl_socket = MGMT_CTL_SOCKET_DEFAULT;
	opt->http_port = MGMT_HTTP_PORT_DEFAULT;
	opt->max_connections = MGMT_CONN_MAX;
	opt->stop_deadline_ms = DEFAULT_STOP_DEADLINE_MS;
	opt->run_state_mib = DEFAULT_RUN_STATE_MIB;
	opt->queue_count = 1;
	if (file && apply_config(file, opt) != 0) {
		fprintf(stderr, "zerohopd: the configuration file's values do not apply\n");
		return -EINVAL;
	}
	/* Models on the command line replace the file's. */
	int cli_models = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_IP:
			if (inet_pton(AF_INET, optarg, &opt->ip) != 1)
				goto bad;
			break;
		case O_UDP_PORT:
			if (parse_u32(optarg, 1, 65535, &v))
				goto bad;
			opt->udp_port = (uint16_t)v;
			break;
		case O_PORT:
			if (parse_u32(optarg, 0, RTE_MAX_ETHPORTS - 1, &v))
				goto bad;
			opt->port_id = (uint16_t)v;
			break;
		case O_DEVICE:
			if (gpu_kind_parse(optarg, &opt->gpu.kind))
				goto bad;
			break;
		case O_WORKERS:
			if (parse_u32(optarg, 0, GPU_WORKERS_MAX, &opt->gpu.worker_count))
				goto bad;
			break;
		case O_WORKER_CORES:
			if (parse_cores(optarg, opt))
				goto bad;
			break;
		case O_RING_SLOTS:
			if (parse_u32(optarg, ZH_RING_SLOTS_MIN, ZH_RING_SLOTS_MAX, &opt->gpu.ring_slot_count))
				goto bad;
			break;
		case O_IDLE:
			if (strcmp(optarg, "poll") == 0)
				opt->idle = DP_IDLE_POLL;
			else if (strcmp(optarg, "backoff") == 0)
				opt->idle = DP_IDLE_BACKOFF;
			else
				goto bad;
			break;
		case O_MODEL: {
			const char *eq = strchr(optarg, '=');

			if (!cli_models++)
				opt->model_count = 0;
			struct model_arg *ma = &opt->model_args[opt->model_count];

			if (opt->model_count == KRN_MODELS_MAX)
				goto bad;
			ma->name = optarg;
			ma->name_len = eq ? (size_t)(eq - optarg) : strlen(optarg);
			ma->dir = eq ? eq + 1 : NULL;
			if (ma->name_len == 0 || ma->name_len > ZH_MODEL_NAME_MAX || (ma->dir && ma->dir[0] == '\0'))
				goto bad;
			opt->model_count++;
			break;
		}
		case O_STATS:
			if (parse_u32(optarg, 0, 3600000, &opt->stats_interval_ms))
				goto bad;
			break;
		case O_CUDA_BLOCKS:
			if (parse_u32(optarg, 1, 1024, &opt->gpu.cuda_block_count))
				goto bad;
			break;
		case O_STALL_MS:
			if (parse_u32(optarg, 10, 600000, &opt->gpu.stall_ms))
				goto bad;
			break;
		case O_CTL_SOCKET:
			opt->ctl_socket = optarg;
			break;
		case O_HTTP_PORT:
			if (parse_u32(optarg, 0, 65535, &opt->http_port))
				goto bad;
			break;
		case O_MAX_CONN:
			if (parse_u32(optarg, 1, MGMT_CONN_MAX, &opt->max_connections))
				goto bad;
			break;
		case O_STOP_DEADLINE:
			if (parse_u32(optarg, 0, 600000, &opt->stop_deadline_ms))
				goto bad;
			break;
		case O_RUN_STATE:
			if (parse_u32(optarg, 1, 65536, &opt->run_state_mib))
				goto bad;
			break;
		case O_CONFIG:
			break; /* read before the options, so that they override it */
		case O_TX_COPY:
			opt->tx_copy = 1;
			break;
		case O_PAYLOAD_MEMORY:
			if (strcmp(optarg, "pool") == 0)
				opt->gpu.payload_memory = GPU_PAYLOAD_PORT_POOL;
			else if (strcmp(optarg, "external") == 0)
				opt->gpu.payload_memory = GPU_PAYLOAD_EXTERNAL;
			else
				goto bad;
			break;
		case O_NO_RX_STAMP:
			opt->no_rx_stamp = 1;
			break;
		case O_QUEUES:
			if (parse_u32(optarg, 1, DP_QUEUES_MAX, &opt->queue_count))
				goto bad;
			break;
		case O_ALLOW:
			if (dp_acl_add(&opt->acl, optarg))
				goto bad;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "zerohopd: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (opt->worker_core_count != 0 && opt->worker_core_count != opt->gpu.worker_count) {
		fprintf(stderr, "zerohopd: --worker-cores names %u cores for %u workers\n",
			opt->worker_core_count, opt->gpu.worker_count);
		return -EINVAL;
	}
	opt->gpu.idle = opt->idle == DP_IDLE_BACKOFF ? GPU_IDLE_BACKOFF : GPU_IDLE_POLL;
	if (opt->model_count == 0) {
		opt->model_args[0].name = "echo";
		opt->model_args[0].name_len = 4;
		opt->model_count = 1;
	}
	for (uint32_t i = 0; i < opt->model_count; i++)
		for (uint32_t k = 0; k < i; k++)
			if (opt->model_args[i].name_len == opt->model_args[k].name_len &&
			    memcmp(opt->model_args[i].name, opt->model_args[k].name, opt->model_args[i].name_len) == 0) {
				fprintf(stderr, "zerohopd: model name '%.*s' given twice\n",
					(int)opt->model_args[i].name_len, opt->model_args[i].name);
				return -EINVAL;
			}
	return 0;
bad:
	fprintf(stderr, "zerohopd: bad value '%s' for --%s\n", optarg, longopts[c - O_IP].name);
	return -EINVAL;
}

/* Workers without a given core go to the main lcore's core: the control core sleeps. */
static void default_worker_cores(struct options *opt)
{
	if (opt->worker_core_count != 0)
		return;
	for (uint32_t i = 0; i < opt->gpu.worker_count; i++)
		opt->gpu.worker_cores[i] = (int)rte_lcore_to_cpu_id((int)rte_get_main_lcore());
}

/* Load every --model into the registry (repositories through the loader, `echo` built in), then
 * build the device's first table from it. The registry owns the models from here on. */
static int load_models(struct options *opt, struct mgmt_registry *reg, struct mgmt_registry *next)
{
	struct gpu_config *gpu = &opt->gpu;
	char why[MGMT_WHY_SIZE];
	uint64_t need;

	for (uint32_t i = 0; i < opt->model_count; i++) {
		const struct model_arg *ma = &opt->model_args[i];
		struct mgmt_model model;
		char name[ZH_MODEL_NAME_MAX + 1];
		int rc;

		memset(&model, 0, sizeof(model));
		snprintf(name, sizeof(name), "%.*s", (int)ma->name_len, ma->name);
		if (ma->dir) {
			rc = mgmt_model_load(name, ma->dir, &model, why);
			if (rc) {
				fprintf(stderr, "zerohopd: model %s: %s\n", name, why);
				return rc;
			}
		}
		rc = mgmt_registry_stage_put(reg, next, name, ma->dir, ma->dir ? &model : NULL, 0, why);
		if (rc) {
			mgmt_model_free(&model);
			fprintf(stderr, "zerohopd: model %s: %s\n", name, why);
			return rc;
		}
		mgmt_registry_commit(reg, next);
	}
	mgmt_registry_table(reg, &gpu->models, &need, gpu->model_arenas, gpu->model_arena_floats);
	/* Room for the models of now and for larger ones loaded later, up to --run-state-mib. */
	gpu->model_state_floats = (uint64_t)opt->run_state_mib * 1024 * 1024 / sizeof(float);
	if (need > gpu->model_state_floats)
		gpu->model_state_floats = need;
	return 0;
}

static void print_model(const struct krn_model *m, const struct model_arg *ma, uint64_t arena_floats, int is_default)
{
	const char *dflt = is_default ? ", the default" : "";

	switch (m->arch) {
	case KRN_ARCH_LLAMA: {
		const struct krn_llama_config *c = &m->u.llama.cfg;

		printf("zerohopd: model %s: llama from %s: dim %u, %u layers, %u heads (%u kv), vocab %u, context %u, "
		       "%.1fk weights%s\n", m->name, ma->dir, c->dim, c->n_layers, c->n_heads, c->n_kv_heads,
		       c->vocab_size, c->seq_len, (double)arena_floats / 1000.0, dflt);
		break;
	}
	case KRN_ARCH_RANKER: {
		const struct krn_ranker_config *c = &m->u.ranker.cfg;

		printf("zerohopd: model %s: ranker from %s: vocab %u, embedding %u, %u dense, %u layers, %u output(s)%s\n",
		       m->name, ma->dir, c->vocab_size, c->embedding_dim, c->dense_features, c->layer_count,
		       c->layer_out[c->layer_count - 1], dflt);
		break;
	}
	default:
		printf("zerohopd: model %s: echo (answers the token ids it receives)%s\n", m->name, dflt);
		break;
	}
}

struct pool_register {
	struct gpu_device *dev;
	int rc;
	char why[GPU_WHY_SIZE];
};

static void register_chunk(struct rte_mempool *mp, void *opaque, struct rte_mempool_memhdr *memhdr,
			   unsigned mem_idx)
{
	struct pool_register *pr = opaque;

	(void)mp;
	(void)mem_idx;
	if (pr->rc == 0)
		pr->rc = gpu_device_register_payload_memory(pr->dev, memhdr->addr, memhdr->len, pr->why);
}

/* Request payloads stay in the mbufs the port filled: the device must be able to read that memory. */
static int register_pool_memory(struct dp_port *port, struct gpu_device *dev)
{
	struct pool_register pr = { .dev = dev, .rc = 0 };

	rte_mempool_mem_iter(port->pool, register_chunk, &pr);
	if (pr.rc)
		fprintf(stderr, "zerohopd: registering packet memory with the device: %s\n", pr.why);
	return pr.rc;
}

static void print_startup(const struct options *opt, const struct dp_port *port, const struct gpu_device *dev)
{
	char ip[INET_ADDRSTRLEN];
	char mac[RTE_ETHER_ADDR_FMT_SIZE];
	char stamps[DP_RX_STAMP_TEXT_SIZE];

	inet_ntop(AF_INET, &opt->ip, ip, sizeof(ip));
	rte_ether_format_addr(mac, sizeof(mac), &port->mac);
	printf("zerohopd: port %u (%s) MAC %s, IPv4 %s, UDP port %u, %u queue(s)\n", port->port_id,
	       port->name, mac, ip, opt->udp_port, port->queue_count);
	dp_port_rx_stamp_text(port, stamps);
	printf("zerohopd: port %u rx timestamps: %s\n", port->port_id, stamps);
	printf("zerohopd: device %s, ", gpu_device_kind_name(gpu_device_kind(dev)));
	if (gpu_device_kind(dev) != GPU_KIND_CPU) {
		printf("one persistent kernel of %u blocks", opt->gpu.cuda_block_count ? opt->gpu.cuda_block_count : 4);
	} else if (gpu_device_is_inline(dev)) {
		printf("inline (the rx lcore runs the device loop)");
	} else {
		printf("%u worker(s) on core(s)", opt->gpu.worker_count);
		for (uint32_t i = 0; i < opt->gpu.worker_count; i++)
			printf("%s%d", i ? "," : " ", opt->gpu.worker_cores[i]);
	}
	printf(", ring %u slots, idle %s\n", opt->gpu.ring_slot_count,
	       opt->idle == DP_IDLE_BACKOFF ? "backoff" : "poll");
	if (port->ext.addr) {
		char split[64];

		if (!port->split)
			snprintf(split, sizeof(split), "no header split (the CPU may read it)");
		else
			snprintf(split, sizeof(split), "headers split off at %u bytes", port->split_head_bytes);
		printf("zerohopd: payloads in external %s memory: %zu KiB in %zu KiB pages, registered with DPDK, %s, %s\n",
		       port->ext.cpu_readable ? "host" : "GPU", port->ext.len_bytes >> 10, port->ext.page_size_bytes >> 10,
		       port->dma_mapped ? "mapped for the port's DMA (rte_dev_dma_map)" : "no DMA mapping (a virtual port: the CPU copies its frames)", split);
	}
	for (uint32_t i = 0; i < opt->gpu.models.count; i++)
		print_model(&opt->gpu.models.models[i], &opt->model_args[i], opt->gpu.model_arena_floats[i], i == 0);
	printf("zerohopd: cpu matrix kernel: %s\n", krn_matmul_impl());
}

/* The effective configuration as "section.key" = value, for `zerohopctl config`. */
static uint32_t effective_config(const struct options *opt, char (*store)[2][160], const char *(*kv)[2])
{
	char ip[INET_ADDRSTRLEN];
	uint32_t n = 0;

	inet_ntop(AF_INET, &opt->ip, ip, sizeof(ip));
#define KV(k, ...)                                                                 \
	do {                                                                       \
		snprintf(store[n][0], sizeof(store[n][0]), "%s", k);               \
		snprintf(store[n][1], sizeof(store[n][1]), __VA_ARGS__);           \
		kv[n][0] = store[n][0];                                            \
		kv[n][1] = store[n][1];                                            \
		n++;                                                               \
	} while (0)
	KV("network.ip", "%s", ip);
	KV("network.udp_port", "%u", opt->udp_port);
	KV("network.port_id", "%u", opt->port_id);
	KV("device.kind", "%s", gpu_device_kind_name(opt->gpu.kind));
	/* cuda-gpudirect's payloads are always external, whatever was asked. */
	KV("device.payload_memory", "%s", opt->gpu.payload_memory == GPU_PAYLOAD_EXTERNAL ||
	   opt->gpu.kind == GPU_KIND_CUDA_GPUDIRECT ? "external" : "pool");
	KV("device.workers", "%u", opt->gpu.worker_count);
	KV("device.ring_slots", "%u", opt->gpu.ring_slot_count);
	KV("device.idle", "%s", opt->idle == DP_IDLE_BACKOFF ? "backoff" : "poll");
	KV("device.stall_ms", "%u", opt->gpu.stall_ms ? opt->gpu.stall_ms : 1000);
	KV("device.run_state_mib", "%u", opt->run_state_mib);
	KV("mgmt.ctl_socket", "%s", opt->ctl_socket ? opt->ctl_socket : "");
	KV("mgmt.http_port", "%u", opt->http_port);
	KV("mgmt.max_connections", "%u", opt->max_connections);
	KV("mgmt.stop_deadline_ms", "%u", opt->stop_deadline_ms);
	KV("mgmt.stats_interval_ms", "%u", opt->stats_interval_ms);
	for (uint32_t i = 0; i < opt->model_count && n < 32; i++) {
		char key[48];

		snprintf(key, sizeof(key), "models.%.*s", (int)opt->model_args[i].name_len, opt->model_args[i].name);
		KV(key, "%s", opt->model_args[i].dir ? opt->model_args[i].dir : "echo");
	}
#undef KV
	return n;
}

/* SIGTERM/SIGINT: drain, give requests in flight until the deadline, then stop. */
static void drain_then_stop(struct mgmt *m, uint32_t deadline_ms)
{
	uint64_t waited_us = 0;

	mgmt_set_draining(m, 1);
	while (mgmt_in_flight(m) > 0 && waited_us < (uint64_t)deadline_ms * 1000) {
		usleep(STOP_POLL_US);
		waited_us += STOP_POLL_US;
		mgmt_tick(m);
	}
	if (mgmt_in_flight(m) > 0)
		printf("zerohopd: %u requests still in flight at the %u ms deadline\n", mgmt_in_flight(m), deadline_ms);
}

static void release_table(void *arg, const struct krn_models *table)
{
	(void)arg;
	mgmt_registry_release_table(table);
}

int main(int argc, char **argv)
{
	static struct dp_lcore lcores[RTE_MAX_LCORE];
	static struct mgmt_registry registry, staging;
	static char config_store[40][2][160];
	static const char *config_kv[40][2];
	struct mgmt *mgmt = NULL;
	uint32_t lcore_count = 0;
	struct dp_port port = { 0 };
	struct gpu_device *dev = NULL;
	struct options opt;
	char why[GPU_WHY_SIZE];
	unsigned lcore_id;
	int eal_argc;
	int rc;

	static struct mgmt_config file_config;
	const char *config_path = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		/* Before the EAL: checking a file needs no hugepages, no port, no root. */
		if (strcmp(argv[i], "--check-config") == 0) {
			char cwhy[MGMT_CONFIG_WHY_SIZE];

			if (i + 1 >= argc) {
				fprintf(stderr, "zerohopd: --check-config needs a file\n");
				return 1;
			}
			if (mgmt_config_load(argv[i + 1], &file_config, cwhy, sizeof(cwhy)) != 0) {
				fprintf(stderr, "zerohopd: %s\n", cwhy);
				return 1;
			}
			printf("zerohopd: %s: valid\n", argv[i + 1]);
			return 0;
		}
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config_path = argv[i + 1];
	}
	if (config_path) {
		char cwhy[MGMT_CONFIG_WHY_SIZE];

		if (mgmt_config_load(config_path, &file_config, cwhy, sizeof(cwhy)) != 0) {
			fprintf(stderr, "zerohopd: %s\n", cwhy);
			return 1;
		}
	}
	eal_argc = rte_eal_init(argc, argv);
	if (eal_argc < 0) {
		fprintf(stderr, "zerohopd: EAL init failed: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	argc -= eal_argc;
	argv += eal_argc;
	rc = parse_options(argc, argv, &opt, config_path ? &file_config : NULL);
	if (rc)
		goto out_eal;

	/* One rx/tx lcore per queue on the worker lcores; the main lcore stays the control core. */
	RTE_LCORE_FOREACH_WORKER(lcore_id)
		lcore_count++;
	if (lcore_count == 0) {
		fprintf(stderr, "zerohopd: needs two lcores, the control core and one rx/tx lcore "
				"(-l 0-1, or --lcores '(0,1)@0' on one core)\n");
		rc = -EINVAL;
		goto out_eal;
	}
	if (lcore_count < opt.queue_count) {
		fprintf(stderr, "zerohopd: %u queues need %u rx/tx lcores besides the control core; -l gives %u\n",
			opt.queue_count, opt.queue_count, lcore_count);
		rc = -EINVAL;
		goto out_eal;
	}
	lcore_count = opt.queue_count; /* one rx/tx lcore per queue */
	default_worker_cores(&opt);
	mgmt_registry_init(&registry);
	rc = load_models(&opt, &registry, &staging);
	if (rc)
		goto out_models;

	rc = gpu_device_open(&opt.gpu, &dev, why);
	if (rc) {
		fprintf(stderr, "zerohopd: device: %s\n", why);
		goto out_models;
	}
	if (why[0] != '\0')
		printf("zerohopd: CUDA: %s\n", why);

	port.no_rx_stamp = opt.no_rx_stamp;
	struct gpu_payload_region payload = { 0 };
	if (gpu_device_payload_external(dev)) {
		/* Payloads land where the device reads them: the port's payload mbufs are built on memory
		 * the device set apart (GPU memory on cuda-gpudirect). */
		size_t bytes = dp_port_payload_bytes((uint16_t)lcore_count, opt.gpu.ring_slot_count);

		rc = gpu_device_payload_region(dev, bytes, &payload, why);
		if (rc) {
			fprintf(stderr, "zerohopd: payload memory: %s\n", why);
			goto out_dev;
		}
		struct dp_payload_mem ext = {
			.addr = payload.addr,
			.len_bytes = payload.len_bytes,
			.page_size_bytes = payload.page_size_bytes,
			.cpu_readable = payload.cpu_readable,
		};
		rc = dp_port_open(&port, opt.port_id, (uint16_t)lcore_count, opt.gpu.ring_slot_count, &ext, why);
	} else {
		rc = dp_port_open(&port, opt.port_id, (uint16_t)lcore_count, opt.gpu.ring_slot_count, NULL, why);
	}
	if (rc) {
		fprintf(stderr, "zerohopd: port: %s\n", why);
		goto out_dev;
	}
	rc = gpu_device_payload_external(dev) ? 0 : register_pool_memory(&port, dev);
	if (rc)
		goto out_lcores;
	for (uint32_t i = 0; i < lcore_count; i++) {
		struct dp_lcore *lc = &lcores[i];

		lc->port_id = port.port_id;
		lc->queue_idx = (uint16_t)i;
		lc->producer_idx = i;
		lc->idle = opt.idle;
		lc->device_healthy = 1;
		lc->self.mac = port.mac;
		lc->self.ip = opt.ip.s_addr;
		lc->self.udp_port = rte_cpu_to_be_16(opt.udp_port);
		lc->acl = opt.acl;
		lc->zero_copy = !opt.tx_copy;
		lc->split = port.split;
		lc->hdr_pool = port.hdr_pool;
		lc->flush_payload = payload.needs_flush;
		if (port.rx_stamp == DP_RX_STAMP_NIC) {
			lc->rx_clock = &port.clock.pub;
			lc->rx_stamp_flag = port.rx_stamp_flag;
			lc->rx_stamp_offset = port.rx_stamp_offset;
		}
		rc = dp_lcore_init(lc, dev);
		if (rc) {
			fprintf(stderr, "zerohopd: lcore state: %s\n", strerror(-rc));
			goto out_lcores;
		}
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGUSR1, on_signal);

	rc = gpu_device_start(dev, why);
	if (rc) {
		fprintf(stderr, "zerohopd: device start: %s\n", why);
		goto out_lcores;
	}
	struct mgmt_params mp = {
		.ctl_socket = opt.ctl_socket,
		.http_port = (uint16_t)opt.http_port,
		.max_connections = opt.max_connections,
		.stats_interval_ms = opt.stats_interval_ms,
		.dev = dev,
		.lcores = lcores,
		.lcore_count = lcore_count,
		.port_id = port.port_id,
		.port = &port,
		.registry = &registry,
		.config = (const char *const (*)[2])config_kv,
		.config_count = effective_config(&opt, config_store, config_kv),
		.quit = &quit_signal,
		.stats = &stats_signal,
	};
	rc = mgmt_open(&mp, &mgmt, why);
	if (rc) {
		fprintf(stderr, "zerohopd: management plane: %s\n", why);
		gpu_device_stop(dev);
		goto out_lcores;
	}
	print_startup(&opt, &port, dev);
	if (opt.ctl_socket && opt.ctl_socket[0])
		printf("zerohopd: control socket %s\n", opt.ctl_socket);
	if (opt.http_port)
		printf("zerohopd: HTTP on 127.0.0.1:%u (/metrics, /healthz, /readyz)\n", opt.http_port);
	{
		uint32_t i = 0;

		RTE_LCORE_FOREACH_WORKER(lcore_id) {
			if (i == lcore_count)
				break;
			rte_eal_remote_launch(dp_lcore_main, &lcores[i++], lcore_id);
		}
	}
	printf("zerohopd: ready\n");
	sd_notify(0, "READY=1\nSTATUS=serving");

	rc = mgmt_run(mgmt);
	if (rc)
		fprintf(stderr, "zerohopd: management loop: %s\n", strerror(-rc));
	printf("zerohopd: stopping (signal %d): draining\n", (int)quit_signal);
	sd_notify(0, "STOPPING=1\nSTATUS=draining");
	drain_then_stop(mgmt, opt.stop_deadline_ms);
	for (uint32_t i = 0; i < lcore_count; i++)
		lcores[i].stop = 1;
	rte_eal_mp_wait_lcore();
	gpu_device_stop(dev);
	mgmt_print_stats(mgmt);
	rc = 0;
out_lcores:
	mgmt_close(mgmt);
	/* The port first: closing it frees the answers it still holds, which releases their slots
	 * through the lcores' zero-copy state. */
	dp_port_close(&port);
	for (uint32_t i = 0; i < lcore_count; i++)
		dp_lcore_free(&lcores[i]);
out_dev:
	/* The device's tables hold references to the models: give them back before the registry's. */
	if (dev) {
		gpu_device_stop(dev);
		gpu_device_reclaim(dev, release_table, NULL);
		mgmt_registry_release_table(gpu_device_models(dev));
	}
	gpu_device_close(dev);
out_models:
	mgmt_registry_fini(&registry);
out_eal:
	rte_eal_cleanup();
	if (rc == 0)
		printf("zerohopd: stopped\n");
	return rc ? 1 : 0;
}
