/* SPDX-License-Identifier: MIT */
/*
 * mgmt.h: the management plane: one io_uring event loop on the control core serving the control socket
 * (zerohopctl), HTTP /metrics, /healthz and /readyz on loopback, model loads and hot swaps, and the
 * periodic work of the control core (watchdog, reclamation, counters). docs/MGMT.md is the contract.
 */
#ifndef MGMT_H
#define MGMT_H

#include <signal.h>
#include <stdint.h>

#include "dp_lcore.h"
#include "dp_port.h"
#include "gpu_device.h"
#include "mgmt_registry.h"

#define MGMT_CONN_MAX 64u
#define MGMT_CTL_SOCKET_DEFAULT "/run/zerohop/zerohopd.sock"
#define MGMT_HTTP_PORT_DEFAULT 9100u

struct mgmt_params {
	const char *ctl_socket;          /* path of the control socket; NULL or "" disables it */
	uint16_t http_port;              /* loopback TCP port for HTTP; 0 disables it */
	uint32_t max_connections;        /* 1..MGMT_CONN_MAX */
	uint32_t stats_interval_ms;      /* print counters this often (0: only on SIGUSR1) */
	struct gpu_device *dev;
	struct dp_lcore *lcores;
	uint32_t lcore_count;
	uint16_t port_id;
	struct dp_port *port;            /* its rx timestamp clock is sampled each tick; NULL: none */
	struct mgmt_registry *registry;  /* the models served; the plane publishes changes to dev */
	/* The effective configuration, "section.key" = value, for the `config` command. */
	const char *const (*config)[2];
	uint32_t config_count;
	/* Signals, read each tick: quit ends mgmt_run; stats prints the counters. */
	volatile sig_atomic_t *quit;
	volatile sig_atomic_t *stats;
};

struct mgmt;

int mgmt_open(const struct mgmt_params *params, struct mgmt **out, char why[MGMT_WHY_SIZE]);
/* Serve until *quit; returns 0, or -errno if the loop itself failed. */
int mgmt_run(struct mgmt *m);
void mgmt_close(struct mgmt *m);

/* Print the counters as JSON lines on stdout (also used at exit). */
void mgmt_print_stats(struct mgmt *m);
/* Drain on or off: rx lcores answer new requests `draining`. */
void mgmt_set_draining(struct mgmt *m, int on);
/* Requests the rx lcores published and the device has not answered yet. */
uint32_t mgmt_in_flight(const struct mgmt *m);
/* Run the periodic work once (watchdog, reclamation) outside the loop, e.g. while stopping. */
void mgmt_tick(struct mgmt *m);

#endif /* MGMT_H */
