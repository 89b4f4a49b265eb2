/* SPDX-License-Identifier: MIT */
/*
 * mgmt_server.c: the management plane's event loop. One io_uring: multishot accepts on the Unix control
 * socket and the loopback HTTP port, a receive and a send per connection, the model loader's file
 * operations, and a 10 ms timeout that drives the control core's periodic work. `user_data` says what
 * a completion belongs to: the operation, the connection slot and the slot's generation (a completion
 * for a slot since reused is stale and ignored).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <rte_ethdev.h>
#include <rte_telemetry.h>
#include <systemd/sd-daemon.h>

#include "mgmt_internal.h"

#define RING_ENTRIES 256u
#define TICK_NS 10000000ll

enum op {
	OP_ACCEPT_CTL = 1,
	OP_ACCEPT_HTTP,
	OP_RECV,
	OP_SEND,
	OP_TICK,
	OP_LOAD,
};

static uint64_t ud_make(enum op op, uint32_t idx, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(idx & 0xffffff) << 32) | gen;
}

uint64_t mgmt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint32_t mgmt_conn_idx(const struct mgmt *m, const struct mgmt_conn *c)
{
	return (uint32_t)(c - m->conns);
}

/* An SQE, submitting what is queued first if the submission queue is full. */
static struct io_uring_sqe *get_sqe(struct mgmt *m)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&m->ring);

	if (!sqe) {
		io_uring_submit(&m->ring);
		sqe = io_uring_get_sqe(&m->ring);
	}
	return sqe;
}

int mgmt_submit_load_op(struct mgmt *m, struct io_uring_sqe **sqe)
{
	*sqe = get_sqe(m);
	if (!*sqe)
		return -EBUSY;
	io_uring_sqe_set_data64(*sqe, ud_make(OP_LOAD, 0, 0));
	return 0;
}

static int arm_accept(struct mgmt *m, int fd, enum op op)
{
	struct io_uring_sqe *sqe = get_sqe(m);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(op, 0, 0));
	return 0;
}

static int arm_tick(struct mgmt *m)
{
	struct io_uring_sqe *sqe = get_sqe(m);

	if (!sqe)
		return -EBUSY;
	m->tick.tv_sec = 0;
	m->tick.tv_nsec = TICK_NS;
	io_uring_prep_timeout(sqe, &m->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_TICK, 0, 0));
	return 0;
}

static void post_recv(struct mgmt *m, struct mgmt_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->state != CONN_OPEN || c->recv_posted || c->rx_len >= MGMT_RX_BYTES)
		return;
	sqe = get_sqe(m);
	if (!sqe)
		return;
	io_uring_prep_recv(sqe, c->fd, c->rx + c->rx_len, MGMT_RX_BYTES - c->rx_len, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, mgmt_conn_idx(m, c), c->gen));
	c->recv_posted = 1;
	c->ops_in_flight++;
}

static void conn_close(struct mgmt_conn *c)
{
	if (c->state != CONN_OPEN)
		return;
	/* Shut down first: a posted receive then completes at once, and the buffers are only reused
	 * once nothing is in flight on them. */
	shutdown(c->fd, SHUT_RDWR);
	c->state = CONN_CLOSING;
}

static void conn_reap(struct mgmt *m, struct mgmt_conn *c)
{
	if (c->state != CONN_CLOSING || c->ops_in_flight > 0)
		return;
	close(c->fd);
	c->fd = -1;
	c->state = CONN_FREE;
	c->gen++;
	m->conn_count--;
}

void mgmt_conn_flush(struct mgmt *m, struct mgmt_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->state != CONN_OPEN || c->send_posted || c->tx_off >= c->tx_len)
		return;
	sqe = get_sqe(m);
	if (!sqe)
		return;
	io_uring_prep_send(sqe, c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, mgmt_conn_idx(m, c), c->gen));
	c->send_posted = 1;
	c->ops_in_flight++;
}

/* A connection past the limit: a short refusal written straight away (a fresh socket's send buffer
 * always takes it), then closed. */
static void refuse(struct mgmt *m, int fd, enum mgmt_conn_kind kind)
{
	static const char http_busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
					"Content-Length: 20\r\nConnection: close\r\n\r\ntoo many connections";
	struct mgmt_conn tmp;
	uint8_t tx[128];

	m->refused_connections++;
	if (kind == CONN_HTTP) {
		send(fd, http_busy, sizeof(http_busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	} else {
		memset(&tmp, 0, sizeof(tmp));
		tmp.tx = tx;
		mgmt_ctl_refuse(&tmp);
		send(fd, tx, tmp.tx_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	close(fd);
}

static void on_accept(struct mgmt *m, int res, uint32_t flags, enum op op)
{
	enum mgmt_conn_kind kind = op == OP_ACCEPT_CTL ? CONN_CTL : CONN_HTTP;

	if (!(flags & IORING_CQE_F_MORE))
		arm_accept(m, op == OP_ACCEPT_CTL ? m->ctl_fd : m->http_fd, op);
	if (res < 0)
		return;
	if (m->conn_count >= m->p.max_connections) {
		refuse(m, res, kind);
		return;
	}
	for (uint32_t i = 0; i < MGMT_CONN_MAX; i++) {
		struct mgmt_conn *c = &m->conns[i];

		if (c->state != CONN_FREE)
			continue;
		c->state = CONN_OPEN;
		c->kind = kind;
		c->fd = res;
		c->ops_in_flight = 0;
		c->recv_posted = 0;
		c->send_posted = 0;
		c->close_after_send = 0;
		c->waiting = 0;
		c->rx_len = 0;
		c->tx_len = 0;
		c->tx_off = 0;
		c->last_active_ns = mgmt_now_ns();
		m->conn_count++;
		post_recv(m, c);
		return;
	}
	refuse(m, res, kind);
}

static void on_recv(struct mgmt *m, struct mgmt_conn *c, int res)
{
	c->recv_posted = 0;
	if (c->state != CONN_OPEN)
		return;
	if (res <= 0) {
		conn_close(c);
		return;
	}
	c->rx_len += (uint32_t)res;
	c->last_active_ns = mgmt_now_ns();
	if (c->kind == CONN_HTTP)
		mgmt_http_handle(m, c);
	else
		mgmt_ctl_handle(m, c);
	mgmt_conn_flush(m, c);
	if (c->state == CONN_OPEN && !c->close_after_send)
		post_recv(m, c);
}

static void on_send(struct mgmt *m, struct mgmt_conn *c, int res)
{
	c->send_posted = 0;
	if (c->state != CONN_OPEN)
		return;
	if (res < 0) {
		conn_close(c);
		return;
	}
	c->tx_off += (uint32_t)res;
	c->last_active_ns = mgmt_now_ns();
	if (c->tx_off < c->tx_len) {
		mgmt_conn_flush(m, c);
		return;
	}
	c->tx_len = 0;
	c->tx_off = 0;
	if (c->close_after_send && !c->waiting) {
		conn_close(c);
		return;
	}
	/* Frames left waiting for room in the send buffer can go now. */
	if (c->kind == CONN_CTL && c->rx_len > 0) {
		mgmt_ctl_handle(m, c);
		mgmt_conn_flush(m, c);
	}
	post_recv(m, c);
}

static void release_table(void *arg, const struct krn_models *table)
{
	(void)arg;
	mgmt_registry_release_table(table);
}

int mgmt_publish(struct mgmt *m, char why[MGMT_WHY_SIZE])
{
	struct krn_models table;
	uint64_t state_floats;
	char gwhy[GPU_WHY_SIZE];
	int rc;

	mgmt_registry_table(m->next, &table, &state_floats, NULL, NULL);
	rc = gpu_device_publish(m->p.dev, &table, state_floats, gwhy);
	if (rc) {
		mgmt_registry_release_table(&table);
		snprintf(why, MGMT_WHY_SIZE, "%s", gwhy);
		return rc;
	}
	mgmt_registry_commit(m->p.registry, m->next);
	return 0;
}

/* DPDK telemetry (dpdk-telemetry.py): /zerohop/stats, the counters as one dict. It runs on DPDK's
 * telemetry thread, reading the lcores' counters relaxed, as the control core does. */
static struct mgmt *telemetry_mgmt;

static int telemetry_stats(const char *cmd, const char *params, struct rte_tel_data *d)
{
	static const char *const counter_names[] = {
#define DP_X(name, text) #name,
		DP_COUNTER_LIST(DP_X)
#undef DP_X
	};
	struct mgmt *m = telemetry_mgmt;
	struct dp_stats sum;

	(void)cmd;
	(void)params;
	if (!m)
		return -ENODEV;
	memset(&sum, 0, sizeof(sum));
	for (uint32_t i = 0; i < m->p.lcore_count; i++)
		dp_stats_add(&sum, &m->p.lcores[i].stats);
	rte_tel_data_start_dict(d);
	for (uint32_t i = 0; i < DP_COUNTER_COUNT; i++)
		rte_tel_data_add_dict_u64(d, counter_names[i], sum.counters[i]);
	for (uint32_t i = 0; i < DP_DROP_COUNT; i++)
		rte_tel_data_add_dict_u64(d, dp_drop_key((enum dp_drop)i), sum.drops[i]);
	rte_tel_data_add_dict_u64(d, "in_flight", mgmt_in_flight(m));
	rte_tel_data_add_dict_u64(d, "device_healthy", (uint64_t)gpu_device_healthy(m->p.dev));
	rte_tel_data_add_dict_u64(d, "models", m->p.registry->count);
	return 0;
}

void mgmt_set_draining(struct mgmt *m, int on)
{
	for (uint32_t i = 0; i < m->p.lcore_count; i++)
		m->p.lcores[i].draining = on;
}

uint32_t mgmt_in_flight(const struct mgmt *m)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < m->p.lcore_count; i++)
		n += __atomic_load_n(&m->p.lcores[i].pending_count, __ATOMIC_RELAXED);
	return n;
}

void mgmt_print_stats(struct mgmt *m)
{
	struct rte_eth_stats port_stats;
	struct dp_stats sum;

	memset(&sum, 0, sizeof(sum));
	for (uint32_t i = 0; i < m->p.lcore_count; i++)
		dp_stats_add(&sum, &m->p.lcores[i].stats);
	dp_stats_print_json(stdout, "zerohopd: stats ", &sum);
	if (rte_eth_stats_get(m->p.port_id, &port_stats) == 0)
		printf("zerohopd: port {\"ipackets\": %" PRIu64 ", \"opackets\": %" PRIu64 ", \"imissed\": %" PRIu64
		       ", \"ierrors\": %" PRIu64 ", \"oerrors\": %" PRIu64 ", \"rx_nombuf\": %" PRIu64 "}\n",
		       port_stats.ipackets, port_stats.opackets, port_stats.imissed, port_stats.ierrors,
		       port_stats.oerrors, port_stats.rx_nombuf);
	printf("zerohopd: lcores [");
	for (uint32_t i = 0; i < m->p.lcore_count; i++)
		printf("%s{\"queue\": %u, \"rx_frames\": %" PRIu64 ", \"requests\": %" PRIu64 "}", i ? ", " : "",
		       m->p.lcores[i].queue_idx,
		       __atomic_load_n(&m->p.lcores[i].stats.counters[DP_COUNTER_rx_frames], __ATOMIC_RELAXED),
		       __atomic_load_n(&m->p.lcores[i].stats.counters[DP_COUNTER_requests], __ATOMIC_RELAXED));
	printf("]\n");
	printf("zerohopd: device served %" PRIu64 " requests\n", gpu_device_served_count(m->p.dev));
	fflush(stdout);
}

void mgmt_tick(struct mgmt *m)
{
	uint64_t now = mgmt_now_ns();
	int changed;
	uint64_t age_ms = gpu_device_watchdog(m->p.dev, &changed);

	if (changed && !gpu_device_healthy(m->p.dev))
		printf("zerohopd: device stalled: no heartbeat for %" PRIu64 " ms; new requests are answered internal\n",
		       age_ms);
	else if (changed)
		printf("zerohopd: device recovered: heartbeat resumed\n");
	gpu_device_reclaim(m->p.dev, release_table, NULL);
	/* The control core keeps the rx lcores' NIC-clock map fresh; the port says when a sample is due. */
	if (m->p.port)
		dp_port_clock_tick(m->p.port);
	/* The device clock's map to the TSC is recalibrated every GPU_CLOCK_REFRESH_MS; a device that
	 * does not answer leaves it stale, which `status` says. -ESRCH: the device loop is not running. */
	int clock_rc = gpu_device_clock_refresh(m->p.dev, now);
	if (clock_rc && clock_rc != -ESRCH && !m->clock_failing)
		printf("zerohopd: device clock: calibration failed (%s): the map is stale\n", strerror(-clock_rc));
	else if (!clock_rc && m->clock_failing)
		printf("zerohopd: device clock: calibrated again\n");
	m->clock_failing = clock_rc && clock_rc != -ESRCH;
	/* systemd's watchdog hears from us only while the device loop is alive: a stalled appliance
	 * is restarted. */
	if (m->watchdog_us && gpu_device_healthy(m->p.dev) && now - m->last_watchdog_ns >= m->watchdog_us * 500ull) {
		sd_notify(0, "WATCHDOG=1");
		m->last_watchdog_ns = now;
	}
	if ((m->p.stats && *m->p.stats) ||
	    (m->p.stats_interval_ms && now - m->last_stats_ns >= m->p.stats_interval_ms * 1000000ull)) {
		if (m->p.stats)
			*m->p.stats = 0;
		m->last_stats_ns = now;
		mgmt_print_stats(m);
	}
	/* A connection that says nothing for too long goes; one waiting on a load is not idle. */
	for (uint32_t i = 0; i < MGMT_CONN_MAX; i++) {
		struct mgmt_conn *c = &m->conns[i];

		if (c->state == CONN_OPEN && !c->waiting && now - c->last_active_ns > MGMT_IDLE_CLOSE_NS)
			conn_close(c);
		conn_reap(m, c);
	}
}

static void dispatch(struct mgmt *m, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum op op = (enum op)(ud >> 56);
	uint32_t idx = (uint32_t)(ud >> 32) & 0xffffff;
	uint32_t gen = (uint32_t)ud;
	struct mgmt_conn *c = idx < MGMT_CONN_MAX ? &m->conns[idx] : NULL;

	switch (op) {
	case OP_ACCEPT_CTL:
	case OP_ACCEPT_HTTP:
		on_accept(m, cqe->res, cqe->flags, op);
		return;
	case OP_TICK:
		mgmt_tick(m);
		arm_tick(m);
		return;
	case OP_LOAD:
		mgmt_load_complete(m, cqe->res);
		return;
	case OP_RECV:
	case OP_SEND:
		if (!c || c->gen != gen)
			return;
		c->ops_in_flight--;
		if (op == OP_RECV)
			on_recv(m, c, cqe->res);
		else
			on_send(m, c, cqe->res);
		conn_reap(m, c);
		return;
	}
}

int mgmt_run(struct mgmt *m)
{
	while (!*m->p.quit) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int rc = io_uring_submit_and_wait(&m->ring, 1);

		if (rc < 0 && rc != -EINTR && rc != -ETIME)
			return rc;
		io_uring_for_each_cqe(&m->ring, head, cqe) {
			dispatch(m, cqe);
			seen++;
		}
		io_uring_cq_advance(&m->ring, seen);
	}
	return 0;
}

static int listen_unix(const char *path, char why[MGMT_WHY_SIZE])
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];
	int fd = -1;
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(why, MGMT_WHY_SIZE, "control socket path longer than %zu bytes", sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		/* The runtime directory is root's; members of its group may reach the socket. */
		if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
			rc = -errno;
			snprintf(why, MGMT_WHY_SIZE, "mkdir %s: %s", dir, strerror(errno));
			return rc;
		}
	}
	unlink(path); /* a socket left by an earlier run */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(path, 0660) != 0 ||
	    listen(fd, 64) != 0) {
		rc = -errno;
		snprintf(why, MGMT_WHY_SIZE, "control socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return fd;
}

static int listen_http(uint16_t port, char why[MGMT_WHY_SIZE])
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;
	int fd;
	int rc;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0) {
		rc = -errno;
		snprintf(why, MGMT_WHY_SIZE, "HTTP on 127.0.0.1:%u: %s", port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return fd;
}

int mgmt_open(const struct mgmt_params *params, struct mgmt **out, char why[MGMT_WHY_SIZE])
{
	struct mgmt *m = calloc(1, sizeof(*m));
	int rc = 0;

	why[0] = '\0';
	if (!m) {
		snprintf(why, MGMT_WHY_SIZE, "out of memory");
		return -ENOMEM;
	}
	m->p = *params;
	m->ctl_fd = -1;
	m->http_fd = -1;
	m->load.fd = -1;
	m->started_ns = mgmt_now_ns();
	m->last_stats_ns = m->started_ns;
	if (m->p.max_connections == 0 || m->p.max_connections > MGMT_CONN_MAX)
		m->p.max_connections = MGMT_CONN_MAX;
	m->next = malloc(sizeof(*m->next));
	m->staging = aligned_alloc(4096, MGMT_STAGING_BYTES);
	if (!m->next || !m->staging) {
		rc = -ENOMEM;
		snprintf(why, MGMT_WHY_SIZE, "out of memory");
		goto fail;
	}
	/* Every connection's buffers now: nothing is allocated per connection later. */
	for (uint32_t i = 0; i < MGMT_CONN_MAX; i++) {
		m->conns[i].fd = -1;
		m->conns[i].rx = malloc(MGMT_RX_BYTES);
		m->conns[i].tx = malloc(MGMT_TX_BYTES);
		if (!m->conns[i].rx || !m->conns[i].tx) {
			rc = -ENOMEM;
			snprintf(why, MGMT_WHY_SIZE, "out of memory");
			goto fail;
		}
	}
	rc = io_uring_queue_init(RING_ENTRIES, &m->ring, 0);
	if (rc) {
		snprintf(why, MGMT_WHY_SIZE, "io_uring: %s", strerror(-rc));
		goto fail;
	}
	m->ring_ready = 1;
	struct iovec iov = { .iov_base = m->staging, .iov_len = MGMT_STAGING_BYTES };
	rc = io_uring_register_buffers(&m->ring, &iov, 1);
	if (rc) {
		snprintf(why, MGMT_WHY_SIZE, "io_uring buffer registration: %s", strerror(-rc));
		goto fail;
	}
	if (m->p.ctl_socket && m->p.ctl_socket[0] != '\0') {
		rc = listen_unix(m->p.ctl_socket, why);
		if (rc < 0)
			goto fail;
		m->ctl_fd = rc;
		rc = arm_accept(m, m->ctl_fd, OP_ACCEPT_CTL);
		if (rc)
			goto fail;
	}
	if (m->p.http_port) {
		rc = listen_http(m->p.http_port, why);
		if (rc < 0)
			goto fail;
		m->http_fd = rc;
		rc = arm_accept(m, m->http_fd, OP_ACCEPT_HTTP);
		if (rc)
			goto fail;
	}
	rc = arm_tick(m);
	if (rc)
		goto fail;
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0)
		m->watchdog_us = usec;
	telemetry_mgmt = m;
	/* Registration fails only for a name taken twice; telemetry is an extra, not a reason to stop. */
	rte_telemetry_register_cmd("/zerohop/stats", telemetry_stats, "zerohop counters. No parameters");
	*out = m;
	return 0;
fail:
	mgmt_close(m);
	return rc ? rc : -EIO;
}

void mgmt_close(struct mgmt *m)
{
	if (!m)
		return;
	if (telemetry_mgmt == m)
		telemetry_mgmt = NULL;
	for (uint32_t i = 0; i < MGMT_CONN_MAX; i++) {
		if (m->conns[i].fd >= 0)
			close(m->conns[i].fd);
		free(m->conns[i].rx);
		free(m->conns[i].tx);
	}
	if (m->load.fd >= 0)
		close(m->load.fd);
	free(m->load.cfg_buf);
	free(m->load.st_buf);
	if (m->ring_ready)
		io_uring_queue_exit(&m->ring);
	if (m->ctl_fd >= 0) {
		close(m->ctl_fd);
		unlink(m->p.ctl_socket);
	}
	if (m->http_fd >= 0)
		close(m->http_fd);
	free(m->staging);
	free(m->next);
	free(m);
}
