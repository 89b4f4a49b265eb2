/* SPDX-License-Identifier: MIT */
/*
 * mgmt_registry.h: the models the appliance serves, by name, and the tables built from them for the
 * device (docs/MGMT.md, "Hot swap").
 *
 * A loaded model's memory is shared by the registry and every device table that still names it
 * (the published one and retired ones not yet reclaimed); it is freed when the last of these lets go.
 * Names keep a stable id (< ZH_MODEL_IDS_MAX) across reloads, so per-model counters survive a swap.
 * Control core only: nothing here is thread-safe, and nothing here is on the fast path.
 */
#ifndef MGMT_REGISTRY_H
#define MGMT_REGISTRY_H

#include <limits.h>
#include <stdint.h>

#include "krn_serve.h"
#include "mgmt_model.h"

struct mgmt_loaded; /* a loaded model and its reference count */

struct mgmt_entry {
	char name[ZH_MODEL_NAME_MAX + 1];
	char path[PATH_MAX];          /* "" for the built-in echo model */
	uint16_t id;
	enum krn_arch arch;
	uint32_t version;             /* 1 at first load, +1 per reload */
	struct mgmt_loaded *loaded;   /* NULL for echo */
};

struct mgmt_registry {
	struct mgmt_entry entries[KRN_MODELS_MAX]; /* entries[0] is the default model */
	uint32_t count;
	char id_names[ZH_MODEL_IDS_MAX][ZH_MODEL_NAME_MAX + 1]; /* id -> name, never reused */
	uint32_t id_count;
	uint64_t loads_ok;
	uint64_t loads_failed;
};

void mgmt_registry_init(struct mgmt_registry *reg);
/* Drop every entry's reference (the device's tables must be gone or hold their own). */
void mgmt_registry_fini(struct mgmt_registry *reg);

/*
 * The registry as it would be with `name` served by `model` (moved in on success; NULL = echo), added
 * at the end or replacing the entry of that name. `next` receives the candidate; nothing changes until
 * mgmt_registry_commit. Returns 0 or -errno with `why`.
 */
int mgmt_registry_stage_put(const struct mgmt_registry *reg, struct mgmt_registry *next, const char *name,
			     const char *path, struct mgmt_model *model, int replace, char why[MGMT_WHY_SIZE]);
/* The registry without `name` (-ENOENT if absent, -EINVAL if it is the last model). */
int mgmt_registry_stage_remove(const struct mgmt_registry *reg, struct mgmt_registry *next, const char *name,
			       char why[MGMT_WHY_SIZE]);
/* Undo a staged registry that will not be committed: frees a model it loaded. */
void mgmt_registry_stage_abort(const struct mgmt_registry *reg, struct mgmt_registry *next);
/* Make the staged registry the registry. */
void mgmt_registry_commit(struct mgmt_registry *reg, struct mgmt_registry *next);

/*
 * The device table for the registry: one krn_model per entry, id and host_cookie filled in; each
 * model the table names gains a reference, given back by mgmt_registry_release_table. *state_floats
 * receives the run state the table needs per consumer; arenas/arena_floats (optional) each model's
 * weight arena, for devices that copy them.
 */
void mgmt_registry_table(const struct mgmt_registry *reg, struct krn_models *table, uint64_t *state_floats,
			 const float *arenas[KRN_MODELS_MAX], uint64_t arena_floats[KRN_MODELS_MAX]);
void mgmt_registry_release_table(const struct krn_models *table);

const struct mgmt_entry *mgmt_registry_find(const struct mgmt_registry *reg, const char *name);
/* The name an id was given, or NULL. */
const char *mgmt_registry_id_name(const struct mgmt_registry *reg, uint32_t id);
/* Weights of an entry's model (0 for echo). */
uint64_t mgmt_registry_params(const struct mgmt_entry *e);

#endif /* MGMT_REGISTRY_H */
