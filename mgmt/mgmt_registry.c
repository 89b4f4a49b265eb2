/* SPDX-License-Identifier: MIT */
/*
 * mgmt_registry.c: see mgmt_registry.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt_registry.h"

struct mgmt_loaded {
	struct mgmt_model model;
	uint32_t refs; /* the registry's (while an entry names it) + one per device table naming it */
};

static void unref(struct mgmt_loaded *l)
{
	if (!l || --l->refs > 0)
		return;
	mgmt_model_free(&l->model);
	free(l);
}

void mgmt_registry_init(struct mgmt_registry *reg)
{
	memset(reg, 0, sizeof(*reg));
}

void mgmt_registry_fini(struct mgmt_registry *reg)
{
	for (uint32_t i = 0; i < reg->count; i++)
		unref(reg->entries[i].loaded);
	reg->count = 0;
}

static int find_idx(const struct mgmt_registry *reg, const char *name)
{
	for (uint32_t i = 0; i < reg->count; i++)
		if (strcmp(reg->entries[i].name, name) == 0)
			return (int)i;
	return -1;
}

const struct mgmt_entry *mgmt_registry_find(const struct mgmt_registry *reg, const char *name)
{
	int i = find_idx(reg, name);

	return i < 0 ? NULL : &reg->entries[i];
}

const char *mgmt_registry_id_name(const struct mgmt_registry *reg, uint32_t id)
{
	return id < reg->id_count ? reg->id_names[id] : NULL;
}

uint64_t mgmt_registry_params(const struct mgmt_entry *e)
{
	return e->loaded ? e->loaded->model.arena_floats : 0;
}

/* The stable id of a name: the one it had before, or the next unused one. */
static int id_for(struct mgmt_registry *next, const char *name, uint16_t *id, char why[MGMT_WHY_SIZE])
{
	for (uint32_t i = 0; i < next->id_count; i++) {
		if (strcmp(next->id_names[i], name) == 0) {
			*id = (uint16_t)i;
			return 0;
		}
	}
	if (next->id_count == ZH_MODEL_IDS_MAX) {
		snprintf(why, MGMT_WHY_SIZE, "%u model names have been used; restart to reuse ids", ZH_MODEL_IDS_MAX);
		return -ENOSPC;
	}
	snprintf(next->id_names[next->id_count], sizeof(next->id_names[0]), "%s", name);
	*id = (uint16_t)next->id_count++;
	return 0;
}

int mgmt_registry_stage_put(const struct mgmt_registry *reg, struct mgmt_registry *next, const char *name,
			     const char *path, struct mgmt_model *model, int replace, char why[MGMT_WHY_SIZE])
{
	int idx = find_idx(reg, name);
	struct mgmt_loaded *l = NULL;
	struct mgmt_entry *e;
	uint16_t id;
	int rc;

	*next = *reg;
	if (strlen(name) == 0 || strlen(name) > ZH_MODEL_NAME_MAX) {
		snprintf(why, MGMT_WHY_SIZE, "model names are 1..%u bytes", ZH_MODEL_NAME_MAX);
		return -EINVAL;
	}
	if (idx >= 0 && !replace) {
		snprintf(why, MGMT_WHY_SIZE, "model %s is already loaded (reload replaces it)", name);
		return -EEXIST;
	}
	if (idx < 0 && replace) {
		snprintf(why, MGMT_WHY_SIZE, "no model %s", name);
		return -ENOENT;
	}
	if (idx < 0 && reg->count == KRN_MODELS_MAX) {
		snprintf(why, MGMT_WHY_SIZE, "%u models are loaded, the most the device serves", KRN_MODELS_MAX);
		return -ENOSPC;
	}
	rc = id_for(next, name, &id, why);
	if (rc)
		return rc;
	if (model) {
		l = calloc(1, sizeof(*l));
		if (!l) {
			snprintf(why, MGMT_WHY_SIZE, "out of memory");
			return -ENOMEM;
		}
		l->model = *model;
		l->refs = 1;
		memset(model, 0, sizeof(*model)); /* moved */
	}
	e = idx >= 0 ? &next->entries[idx] : &next->entries[next->count++];
	e->arch = l ? l->model.model.arch : KRN_ARCH_ECHO;
	snprintf(e->name, sizeof(e->name), "%s", name);
	snprintf(e->path, sizeof(e->path), "%s", path ? path : "");
	e->id = id;
	e->version = idx >= 0 ? reg->entries[idx].version + 1 : 1;
	e->loaded = l;
	return 0;
}

int mgmt_registry_stage_remove(const struct mgmt_registry *reg, struct mgmt_registry *next, const char *name,
			       char why[MGMT_WHY_SIZE])
{
	int idx = find_idx(reg, name);

	*next = *reg;
	if (idx < 0) {
		snprintf(why, MGMT_WHY_SIZE, "no model %s", name);
		return -ENOENT;
	}
	if (reg->count == 1) {
		snprintf(why, MGMT_WHY_SIZE, "%s is the last model: the appliance always serves one", name);
		return -EINVAL;
	}
	/* Order is kept: the next entry becomes the default when the default goes. */
	memmove(&next->entries[idx], &next->entries[idx + 1], (next->count - (uint32_t)idx - 1) * sizeof(next->entries[0]));
	next->count--;
	return 0;
}

static int names(const struct mgmt_registry *reg, const struct mgmt_loaded *l)
{
	for (uint32_t i = 0; i < reg->count; i++)
		if (reg->entries[i].loaded == l)
			return 1;
	return 0;
}

void mgmt_registry_stage_abort(const struct mgmt_registry *reg, struct mgmt_registry *next)
{
	for (uint32_t i = 0; i < next->count; i++)
		if (next->entries[i].loaded && !names(reg, next->entries[i].loaded))
			unref(next->entries[i].loaded);
	next->count = 0;
}

void mgmt_registry_commit(struct mgmt_registry *reg, struct mgmt_registry *next)
{
	/* The registry's reference to a model no entry names any more goes; device tables may keep
	 * it alive until they are reclaimed. */
	for (uint32_t i = 0; i < reg->count; i++)
		if (reg->entries[i].loaded && !names(next, reg->entries[i].loaded))
			unref(reg->entries[i].loaded);
	*reg = *next;
}

void mgmt_registry_table(const struct mgmt_registry *reg, struct krn_models *table, uint64_t *state_floats,
			 const float *arenas[KRN_MODELS_MAX], uint64_t arena_floats[KRN_MODELS_MAX])
{
	memset(table, 0, sizeof(*table));
	*state_floats = 0;
	table->count = reg->count;
	table->default_idx = 0;
	for (uint32_t i = 0; i < reg->count; i++) {
		const struct mgmt_entry *e = &reg->entries[i];
		struct krn_model *km = &table->models[i];

		if (e->loaded) {
			*km = e->loaded->model.model;
			e->loaded->refs++;
			if (e->loaded->model.state_floats > *state_floats)
				*state_floats = e->loaded->model.state_floats;
		} else {
			km->arch = KRN_ARCH_ECHO;
		}
		snprintf(km->name, sizeof(km->name), "%s", e->name);
		km->id = e->id;
		km->host_cookie = (uint64_t)(uintptr_t)e->loaded;
		if (arenas) {
			arenas[i] = e->loaded ? e->loaded->model.arena : NULL;
			arena_floats[i] = e->loaded ? e->loaded->model.arena_floats : 0;
		}
	}
}

void mgmt_registry_release_table(const struct krn_models *table)
{
	for (uint32_t i = 0; i < table->count; i++)
		unref((struct mgmt_loaded *)(uintptr_t)table->models[i].host_cookie);
}
