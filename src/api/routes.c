/* The API's request router: pure functions from (method, path, body, VM
 * state) to (status, JSON body, action), and the configuration the API
 * builds up before InstanceStart. Shapes and messages follow Firecracker's
 * swagger (firecracker.yaml) so its clients work; docs/API.md lists them.
 *
 * Every body is untrusted: parsed by json-c in strict mode with a depth
 * limit, checked field by field (unknown fields, types, ranges), and
 * committed to the configuration only once the whole request is valid. */
#include "api.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define API_JSON_DEPTH  16
#define API_MAX_STRING  4096  /* paths, boot_args */

#define MSG_AFTER_START  "The requested operation is not supported after starting the microVM."
#define MSG_BEFORE_START "The requested operation is not supported before starting the microVM."
#define MSG_STOPPED      "The microVM has stopped."

/* ---- replies --------------------------------------------------------- */

static char *json_dup(json_object *obj)
{
	const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	return s ? strdup(s) : NULL;
}

void api_reply_free(struct api_reply *reply)
{
	free(reply->body);
	reply->body = NULL;
}

void api_reply_error(struct api_reply *reply, int status, const char *msg)
{
	api_reply_free(reply);
	reply->action = API_ACT_NONE;
	reply->status = status;
	json_object *obj = json_object_new_object();
	if (obj) {
		json_object_object_add(obj, "fault_message", json_object_new_string(msg));
		reply->body = json_dup(obj);
		json_object_put(obj);
	}
	if (!reply->body)
		reply->status = 500;
}

static int reply_json(struct api_reply *reply, json_object *obj)
{
	reply->status = 200;
	reply->body = obj ? json_dup(obj) : NULL;
	json_object_put(obj);
	if (!reply->body) {
		reply->status = 500;
		return -ENOMEM;
	}
	return 0;
}

/* ---- field checks ------------------------------------------------------ */

enum field_type { FT_STRING, FT_INT, FT_BOOL, FT_OBJECT, FT_ARRAY };

struct field {
	const char *name;
	enum field_type type;
	bool required;
};

static const char *type_name(enum field_type t)
{
	switch (t) {
	case FT_STRING: return "a string";
	case FT_INT: return "an integer";
	case FT_BOOL: return "a boolean";
	case FT_OBJECT: return "an object";
	case FT_ARRAY: return "an array";
	}
	return "?";
}

static bool type_matches(json_object *v, enum field_type t)
{
	switch (t) {
	case FT_STRING: return json_object_is_type(v, json_type_string);
	case FT_INT: return json_object_is_type(v, json_type_int);
	case FT_BOOL: return json_object_is_type(v, json_type_boolean);
	case FT_OBJECT: return json_object_is_type(v, json_type_object);
	case FT_ARRAY: return json_object_is_type(v, json_type_array);
	}
	return false;
}

/* obj must be an object whose keys are all in fields, with the right
 * types (null counts as absent), and, unless partial, every required
 * field present. */
static int check_fields(json_object *obj, const struct field *fields, size_t n, bool partial, char *err,
			size_t errlen)
{
	if (!json_object_is_type(obj, json_type_object))
		return fail_einval(err, errlen, "The request body must be a JSON object.");
	json_object_object_foreach(obj, key, val) {
		size_t i;
		for (i = 0; i < n && strcmp(key, fields[i].name); i++)
			;
		if (i == n)
			return fail_einval(err, errlen, "unknown field `%.64s`", key);
		if (val && !type_matches(val, fields[i].type))
			return fail_einval(err, errlen, "field `%s` must be %s", key, type_name(fields[i].type));
		if (val && fields[i].type == FT_STRING) {
			size_t len = (size_t)json_object_get_string_len(val);
			if (strlen(json_object_get_string(val)) != len)
				return fail_einval(err, errlen, "field `%s` must not contain NUL characters", key);
			if (len > API_MAX_STRING)
				return fail_einval(err, errlen, "field `%s` is longer than %d bytes", key, API_MAX_STRING);
		}
	}
	if (partial)
		return 0;
	for (size_t i = 0; i < n; i++) {
		json_object *v;
		if (fields[i].required && (!json_object_object_get_ex(obj, fields[i].name, &v) || !v))
			return fail_einval(err, errlen, "missing field `%s`", fields[i].name);
	}
	return 0;
}

/* The value of key, or NULL when absent or null. */
static json_object *get(json_object *obj, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(obj, key, &v) ? v : NULL;
}

static const char *get_str(json_object *obj, const char *key)
{
	json_object *v = get(obj, key);
	return v ? json_object_get_string(v) : NULL;
}

static int get_int(json_object *obj, const char *key, int64_t min, int64_t max, int64_t *out, char *err,
		   size_t errlen)
{
	json_object *v = get(obj, key);
	if (!v)
		return 0;
	int64_t x = json_object_get_int64(v);
	/* json-c saturates out-of-range numbers at INT64_MIN/MAX, or keeps
	 * them as uint64: either way outside [min, max] here. */
	if (json_object_get_type(v) != json_type_int || x < min || x > max ||
	    (x == INT64_MAX && json_object_get_uint64(v) != (uint64_t)INT64_MAX))
		return fail_einval(err, errlen, "field `%s` must be from %lld to %lld", key, (long long)min, (long long)max);
	*out = x;
	return 1;
}

static bool get_bool(json_object *obj, const char *key, bool dflt)
{
	json_object *v = get(obj, key);
	return v ? json_object_get_boolean(v) : dflt;
}

/* One of names[] (NULL-terminated); case-sensitive unless nocase. */
static int get_enum(json_object *obj, const char *key, const char *const *names, bool nocase, int *out, char *err,
		    size_t errlen)
{
	const char *s = get_str(obj, key);
	if (!s)
		return 0;
	for (int i = 0; names[i]; i++) {
		if (nocase ? !strcasecmp(s, names[i]) : !strcmp(s, names[i])) {
			*out = i;
			return 1;
		}
	}
	char list[256] = "";
	size_t off = 0;
	for (int i = 0; names[i] && off < sizeof(list); i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s`%s`", i ? ", " : "", names[i]);
	return fail_einval(err, errlen, "unknown variant `%.64s` for `%s`, expected one of %s", s, key, list);
}

static int dup_str(char **dst, const char *src)
{
	char *copy = NULL;
	if (src && !(copy = strdup(src)))
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

/* Firecracker's resource ids: 1-64 of [A-Za-z0-9_]. */
static bool id_valid(const char *id)
{
	size_t len = strlen(id);
	if (len == 0 || len > API_MAX_ID)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '_')
			return false;
	return true;
}

static bool mac_valid(const char *mac)
{
	uint8_t bytes[6];
	return parse_mac(mac, bytes) == 0;
}

/* ---- the configuration ------------------------------------------------ */

int api_config_init(struct api_config *cfg, const struct vm_config *vm_cfg)
{
	*cfg = (struct api_config){
		.vcpu_count = vm_cfg->nr_cpus > 0 ? vm_cfg->nr_cpus : 1,
		.mem_size_mib = (uint32_t)(vm_cfg->ram_size >> 20),
		.log_level = API_LOG_WARNING,
	};
	snprintf(cfg->id, sizeof(cfg->id), "anonymous-instance");
	if (dup_str(&cfg->kernel_path, vm_cfg->kernel_path) || dup_str(&cfg->initrd_path, vm_cfg->initrd_path) ||
	    dup_str(&cfg->boot_args, vm_cfg->cmdline))
		goto nomem;
	/* Devices from the command line show up as if PUT with these ids. */
	for (int i = 0; i < vm_cfg->nr_disks && i < API_MAX_DRIVES; i++) {
		struct api_drive *d = &cfg->drives[cfg->nr_drives++];
		snprintf(d->id, sizeof(d->id), "%s", vm_cfg->disks[i].id ? vm_cfg->disks[i].id : "");
		if (!vm_cfg->disks[i].id)
			snprintf(d->id, sizeof(d->id), "drive%d", i);
		d->is_read_only = vm_cfg->disks[i].read_only;
		if (dup_str(&d->path_on_host, vm_cfg->disks[i].path))
			goto nomem;
	}
	for (int i = 0; i < vm_cfg->nr_nets && i < API_MAX_IFACES; i++) {
		const struct net_config *n = &vm_cfg->nets[i];
		struct api_iface *f = &cfg->ifaces[cfg->nr_ifaces++];
		snprintf(f->id, sizeof(f->id), "net%d", i);
		if (dup_str(&f->host_dev_name, n->tap))
			goto nomem;
		if (n->has_mac && asprintf(&f->guest_mac, "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1],
					   n->mac[2], n->mac[3], n->mac[4], n->mac[5]) < 0) {
			f->guest_mac = NULL;
			goto nomem;
		}
	}
	if (vm_cfg->vsock.enabled) {
		cfg->has_vsock = true;
		cfg->vsock_cid = vm_cfg->vsock.guest_cid;
		if (dup_str(&cfg->vsock_uds_path, vm_cfg->vsock.uds_path))
			goto nomem;
	}
	return 0;
nomem:
	api_config_free(cfg);
	return -ENOMEM;
}

static void drive_free(struct api_drive *d)
{
	free(d->path_on_host);
	free(d->partuuid);
	free(d->cache_type);
	free(d->io_engine);
	*d = (struct api_drive){ 0 };
}

static void iface_free(struct api_iface *f)
{
	free(f->host_dev_name);
	free(f->guest_mac);
	*f = (struct api_iface){ 0 };
}

void api_config_free(struct api_config *cfg)
{
	free(cfg->kernel_path);
	free(cfg->initrd_path);
	free(cfg->boot_args);
	for (int i = 0; i < cfg->nr_drives; i++)
		drive_free(&cfg->drives[i]);
	for (int i = 0; i < cfg->nr_ifaces; i++)
		iface_free(&cfg->ifaces[i]);
	free(cfg->vsock_uds_path);
	free(cfg->log_path);
	free(cfg->metrics_path);
	*cfg = (struct api_config){ 0 };
}

void api_config_apply(const struct api_config *cfg, struct vm_config *vm_cfg)
{
	vm_cfg->kernel_path = cfg->kernel_path;
	vm_cfg->initrd_path = cfg->initrd_path;
	vm_cfg->cmdline = cfg->boot_args;
	vm_cfg->nr_cpus = cfg->vcpu_count;
	vm_cfg->ram_size = (uint64_t)cfg->mem_size_mib << 20;

	/* As Firecracker: the root drive is the first disk (/dev/vda) and the
	 * kernel is told to mount it. */
	vm_cfg->nr_disks = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < cfg->nr_drives && vm_cfg->nr_disks < VM_MAX_DISKS; i++) {
			const struct api_drive *d = &cfg->drives[i];
			if (d->is_root_device != (pass == 0))
				continue;
			vm_cfg->disks[vm_cfg->nr_disks++] = (struct disk_config){
				.path = d->path_on_host, .read_only = d->is_read_only, .id = d->id,
			};
			if (d->is_root_device)
				vm_cfg->append = d->is_read_only ? "root=/dev/vda ro" : "root=/dev/vda rw";
		}
	}
	vm_cfg->nr_nets = 0;
	for (int i = 0; i < cfg->nr_ifaces && i < VM_MAX_NETS; i++) {
		struct net_config *n = &vm_cfg->nets[vm_cfg->nr_nets++];
		*n = (struct net_config){ .tap = cfg->ifaces[i].host_dev_name };
		n->has_mac = cfg->ifaces[i].guest_mac && parse_mac(cfg->ifaces[i].guest_mac, n->mac) == 0;
	}
	vm_cfg->vsock = (struct vsock_config){
		.enabled = cfg->has_vsock, .guest_cid = cfg->vsock_cid, .uds_path = cfg->vsock_uds_path,
	};
}

const char *api_config_unsupported(const struct api_config *cfg)
{
	for (int i = 0; i < cfg->nr_drives; i++) {
		if (cfg->drives[i].partuuid)
			return "partuuid root devices are not supported by kvmlite: use is_root_device without partuuid.";
	}
	return NULL;
}

const char *api_state_name(enum api_state state)
{
	switch (state) {
	case API_NOT_STARTED: return "Not started";
	case API_RUNNING: return "Running";
	case API_PAUSED: return "Paused";
	case API_STOPPED: return "Stopped";
	}
	return "?";
}

/* ---- one handler per resource: check, then commit ---------------------- */

static int put_machine_config(struct api_config *cfg, json_object *body, bool partial, char *err, size_t errlen)
{
	static const struct field fields[] = {
		{ "vcpu_count", FT_INT, true },
		{ "mem_size_mib", FT_INT, true },
		{ "smt", FT_BOOL, false },
		{ "track_dirty_pages", FT_BOOL, false },
		{ "cpu_template", FT_STRING, false },
		{ "huge_pages", FT_STRING, false },
	};
	static const char *const templates[] = { "None", "C3", "T2", "T2S", "T2CL", "T2A", NULL };
	static const char *const huge[] = { "None", "2M", NULL };
	int rc = check_fields(body, fields, ARRAY_SIZE(fields), partial, err, errlen);
	if (rc)
		return rc;
	if (partial && json_object_object_length(body) == 0)
		return fail_einval(err, errlen, "Empty PATCH request.");
	int64_t cpus = cfg->vcpu_count, mib = cfg->mem_size_mib;
	int tmpl = 0, hp = 0;
	if (get_int(body, "vcpu_count", 1, API_MAX_CPUS, &cpus, err, errlen) < 0 ||
	    get_int(body, "mem_size_mib", 2, API_MAX_MEM_MIB, &mib, err, errlen) < 0 ||
	    get_enum(body, "cpu_template", templates, false, &tmpl, err, errlen) < 0 ||
	    get_enum(body, "huge_pages", huge, false, &hp, err, errlen) < 0)
		return -EINVAL;
	/* Accepted for compatibility only where kvmlite does what they ask. */
	if (get_bool(body, "smt", false))
		return fail_einval(err, errlen, "smt: simultaneous multithreading is not supported by kvmlite yet.");
	if (get_bool(body, "track_dirty_pages", false))
		return fail_einval(err, errlen, "track_dirty_pages: dirty page tracking is not supported by kvmlite yet.");
	if (tmpl)
		return fail_einval(err, errlen, "cpu_template: CPU templates are not supported by kvmlite yet.");
	if (hp)
		return fail_einval(err, errlen, "huge_pages: huge pages are not supported by kvmlite yet.");
	cfg->vcpu_count = (int)cpus;
	cfg->mem_size_mib = (uint32_t)mib;
	return 0;
}

static int put_boot_source(struct api_config *cfg, json_object *body, char *err, size_t errlen)
{
	static const struct field fields[] = {
		{ "kernel_image_path", FT_STRING, true },
		{ "initrd_path", FT_STRING, false },
		{ "boot_args", FT_STRING, false },
	};
	int rc = check_fields(body, fields, ARRAY_SIZE(fields), false, err, errlen);
	if (rc)
		return rc;
	const char *kernel = get_str(body, "kernel_image_path");
	if (!*kernel)
		return fail_einval(err, errlen, "kernel_image_path must not be empty.");
	const char *initrd = get_str(body, "initrd_path");
	if (initrd && !*initrd)
		return fail_einval(err, errlen, "initrd_path must not be empty.");
	char *k = strdup(kernel), *i = initrd ? strdup(initrd) : NULL;
	const char *args = get_str(body, "boot_args");
	char *a = args ? strdup(args) : NULL;
	if (!k || (initrd && !i) || (args && !a)) {
		free(k);
		free(i);
		free(a);
		return -ENOMEM;
	}
	free(cfg->kernel_path);
	free(cfg->initrd_path);
	free(cfg->boot_args);
	cfg->kernel_path = k;
	cfg->initrd_path = i;
	cfg->boot_args = a;
	return 0;
}

static int put_drive(struct api_config *cfg, const char *path_id, json_object *body, char *err, size_t errlen)
{
	static const struct field fields[] = {
		{ "drive_id", FT_STRING, true },
		{ "path_on_host", FT_STRING, true },
		{ "is_root_device", FT_BOOL, true },
		{ "is_read_only", FT_BOOL, false },
		{ "partuuid", FT_STRING, false },
		{ "cache_type", FT_STRING, false },
		{ "io_engine", FT_STRING, false },
		{ "rate_limiter", FT_OBJECT, false },
	};
	static const char *const caches[] = { "Unsafe", "Writeback", NULL };
	static const char *const engines[] = { "Sync", "Async", NULL };
	int rc = check_fields(body, fields, ARRAY_SIZE(fields), false, err, errlen);
	if (rc)
		return rc;
	const char *id = get_str(body, "drive_id");
	if (!id_valid(id))
		return fail_einval(err, errlen, "Invalid drive_id: 1 to %d characters of A-Z, a-z, 0-9 and _.", API_MAX_ID);
	if (path_id && strcmp(id, path_id))
		return fail_einval(err, errlen, "The id from the path does not match the id from the body!");
	if (!*get_str(body, "path_on_host"))
		return fail_einval(err, errlen, "path_on_host must not be empty.");
	int cache = 0, engine = 0;
	if (get_enum(body, "cache_type", caches, false, &cache, err, errlen) < 0 ||
	    get_enum(body, "io_engine", engines, false, &engine, err, errlen) < 0)
		return -EINVAL;
	bool root = get_bool(body, "is_root_device", false);
	int slot = cfg->nr_drives;
	for (int i = 0; i < cfg->nr_drives; i++) {
		if (!strcmp(cfg->drives[i].id, id))
			slot = i;
		else if (root && cfg->drives[i].is_root_device)
			return fail_einval(err, errlen, "A root block device already exists!");
	}
	if (slot == API_MAX_DRIVES)
		return fail_einval(err, errlen, "Too many drives: kvmlite takes at most %d.", API_MAX_DRIVES);
	struct api_drive d = { .is_root_device = root, .is_read_only = get_bool(body, "is_read_only", false) };
	snprintf(d.id, sizeof(d.id), "%s", id);
	if (dup_str(&d.path_on_host, get_str(body, "path_on_host")) ||
	    dup_str(&d.partuuid, get_str(body, "partuuid")) || dup_str(&d.cache_type, caches[cache]) ||
	    dup_str(&d.io_engine, engines[engine])) {
		drive_free(&d);
		return -ENOMEM;
	}
	if (slot < cfg->nr_drives)
		drive_free(&cfg->drives[slot]);
	else
		cfg->nr_drives++;
	cfg->drives[slot] = d;
	return 0;
}

static int put_iface(struct api_config *cfg, const char *path_id, json_object *body, char *err, size_t errlen)
{
	static const struct field fields[] = {
		{ "iface_id", FT_STRING, true },
		{ "host_dev_name", FT_STRING, true },
		{ "guest_mac", FT_STRING, false },
		{ "rx_rate_limiter", FT_OBJECT, false },
		{ "tx_rate_limiter", FT_OBJECT, false },
	};
	int rc = check_fields(body, fields, ARRAY_SIZE(fields), false, err, errlen);
	if (rc)
		return rc;
	const char *id = get_str(body, "iface_id");
	if (!id_valid(id))
		return fail_einval(err, errlen, "Invalid iface_id: 1 to %d characters of A-Z, a-z, 0-9 and _.", API_MAX_ID);
	if (path_id && strcmp(id, path_id))
		return fail_einval(err, errlen, "The id from the path does not match the id from the body!");
	const char *dev = get_str(body, "host_dev_name");
	if (!*dev || strlen(dev) > 15)
		return fail_einval(err, errlen, "host_dev_name must be 1 to 15 characters (a Linux interface name).");
	const char *mac = get_str(body, "guest_mac");
	if (mac && !mac_valid(mac))
		return fail_einval(err, errlen, "guest_mac must look like 06:00:AC:10:00:02.");
	int slot = cfg->nr_ifaces;
	for (int i = 0; i < cfg->nr_ifaces; i++) {
		if (!strcmp(cfg->ifaces[i].id, id))
			slot = i;
		else if (!strcmp(cfg->ifaces[i].host_dev_name, dev))
			return fail_einval(err, errlen, "The host device %s is already used by interface %s.", dev,
				    cfg->ifaces[i].id);
	}
	if (slot == API_MAX_IFACES)
		return fail_einval(err, errlen, "Too many network interfaces: kvmlite takes at most %d.", API_MAX_IFACES);
	struct api_iface f = { 0 };
	snprintf(f.id, sizeof(f.id), "%s", id);
	if (dup_str(&f.host_dev_name, dev) || dup_str(&f.guest_mac, mac)) {
		iface_free(&f);
		return -ENOMEM;
	}
	if (slot < cfg->nr_ifaces)
		iface_free(&cfg->ifaces[slot]);
	else
		cfg->nr_ifaces++;
	cfg->ifaces[slot] = f;
	return 0;
}

static int put_vsock(struct api_config *cfg, json_object *body, char *err, size_t errlen)
{
	static const struct field fields[] = {
		{ "guest_cid", FT_INT, true },
		{ "uds_path", FT_STRING, true },
		{ "vsock_id", FT_STRING, false },
	};
	int rc = check_fields(body, fields, ARRAY_SIZE(fields), false, err, errlen);
	if (rc)
		return rc;
	int64_t cid = 0;
	/* 0-2 are reserved (hypervisor, local, host). */
	if (get_int(body, "guest_cid", 3, UINT32_MAX, &cid, err, errlen) < 0)
		return -EINVAL;
	if (!*get_str(body, "uds_path"))
		return fail_einval(err, errlen, "uds_path must not be empty.");
	if (dup_str(&cfg->vsock_uds_path, get_str(body, "uds_path")))
		return -ENOMEM;
	cfg->vsock_cid = (uint32_t)cid;
	cfg->has_vsock = true;
	return 0;
}

static int put_logger(struct api_config *cfg, json_object *body, char *err, size_t errlen)
{
	static const struct field fields[] = {
		{ "log_path", FT_STRING, true },
		{ "level", FT_STRING, false },
		{ "show_level", FT_BOOL, false },
		{ "show_log_origin", FT_BOOL, false },
	};
	static const char *const levels[] = { "Off", "Error", "Warning", "Info", "Debug", "Trace", NULL };
	int rc = check_fields(body, fields, ARRAY_SIZE(fields), false, err, errlen);
	if (rc)
		return rc;
	int level = API_LOG_WARNING;
	if (get_enum(body, "level", levels, true, &level, err, errlen) < 0)
		return -EINVAL;
	if (!*get_str(body, "log_path"))
		return fail_einval(err, errlen, "log_path must not be empty.");
	if (dup_str(&cfg->log_path, get_str(body, "log_path")))
		return -ENOMEM;
	cfg->log_level = (enum api_log_level)level;
	cfg->log_show_level = get_bool(body, "show_level", false);
	cfg->log_show_origin = get_bool(body, "show_log_origin", false);
	cfg->has_logger = true;
	return 0;
}

static int put_metrics(struct api_config *cfg, json_object *body, char *err, size_t errlen)
{
	static const struct field fields[] = { { "metrics_path", FT_STRING, true } };
	int rc = check_fields(body, fields, ARRAY_SIZE(fields), false, err, errlen);
	if (rc)
		return rc;
	if (cfg->metrics_path)
		return fail_einval(err, errlen, "Reinitialization of metrics not allowed.");
	if (!*get_str(body, "metrics_path"))
		return fail_einval(err, errlen, "metrics_path must not be empty.");
	return dup_str(&cfg->metrics_path, get_str(body, "metrics_path"));
}

/* ---- GET bodies --------------------------------------------------------- */

static json_object *machine_config_json(const struct api_config *cfg)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "vcpu_count", json_object_new_int(cfg->vcpu_count));
	json_object_object_add(o, "mem_size_mib", json_object_new_int64(cfg->mem_size_mib));
	json_object_object_add(o, "smt", json_object_new_boolean(cfg->smt));
	json_object_object_add(o, "track_dirty_pages", json_object_new_boolean(cfg->track_dirty_pages));
	return o;
}

static json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static json_object *full_config_json(const struct api_config *cfg)
{
	static const char *const levels[] = { "Off", "Error", "Warning", "Info", "Debug", "Trace" };
	json_object *o = json_object_new_object();
	json_object *boot = NULL;
	if (cfg->kernel_path) {
		boot = json_object_new_object();
		json_object_object_add(boot, "kernel_image_path", json_object_new_string(cfg->kernel_path));
		json_object_object_add(boot, "initrd_path", str_or_null(cfg->initrd_path));
		json_object_object_add(boot, "boot_args", str_or_null(cfg->boot_args));
	}
	json_object_object_add(o, "boot-source", boot);
	json_object_object_add(o, "machine-config", machine_config_json(cfg));
	json_object *drives = json_object_new_array();
	for (int i = 0; i < cfg->nr_drives; i++) {
		const struct api_drive *d = &cfg->drives[i];
		json_object *j = json_object_new_object();
		json_object_object_add(j, "drive_id", json_object_new_string(d->id));
		json_object_object_add(j, "path_on_host", json_object_new_string(d->path_on_host));
		json_object_object_add(j, "is_root_device", json_object_new_boolean(d->is_root_device));
		json_object_object_add(j, "is_read_only", json_object_new_boolean(d->is_read_only));
		json_object_object_add(j, "partuuid", str_or_null(d->partuuid));
		json_object_object_add(j, "cache_type", str_or_null(d->cache_type));
		json_object_object_add(j, "io_engine", str_or_null(d->io_engine));
		json_object_array_add(drives, j);
	}
	json_object_object_add(o, "drives", drives);
	json_object *ifaces = json_object_new_array();
	for (int i = 0; i < cfg->nr_ifaces; i++) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "iface_id", json_object_new_string(cfg->ifaces[i].id));
		json_object_object_add(j, "host_dev_name", json_object_new_string(cfg->ifaces[i].host_dev_name));
		json_object_object_add(j, "guest_mac", str_or_null(cfg->ifaces[i].guest_mac));
		json_object_array_add(ifaces, j);
	}
	json_object_object_add(o, "network-interfaces", ifaces);
	json_object *vsock = NULL;
	if (cfg->has_vsock) {
		vsock = json_object_new_object();
		json_object_object_add(vsock, "guest_cid", json_object_new_int64(cfg->vsock_cid));
		json_object_object_add(vsock, "uds_path", json_object_new_string(cfg->vsock_uds_path));
	}
	json_object_object_add(o, "vsock", vsock);
	json_object *logger = NULL;
	if (cfg->has_logger) {
		logger = json_object_new_object();
		json_object_object_add(logger, "log_path", json_object_new_string(cfg->log_path));
		json_object_object_add(logger, "level", json_object_new_string(levels[cfg->log_level]));
		json_object_object_add(logger, "show_level", json_object_new_boolean(cfg->log_show_level));
		json_object_object_add(logger, "show_log_origin", json_object_new_boolean(cfg->log_show_origin));
	}
	json_object_object_add(o, "logger", logger);
	json_object *metrics = NULL;
	if (cfg->metrics_path) {
		metrics = json_object_new_object();
		json_object_object_add(metrics, "metrics_path", json_object_new_string(cfg->metrics_path));
	}
	json_object_object_add(o, "metrics", metrics);
	return o;
}

/* ---- parsing ------------------------------------------------------------ */

/* Offset of a single quote outside strings, or len. json-c's strict mode
 * still takes 'single-quoted' strings, which JSON does not have. */
static size_t find_single_quote(const char *body, size_t len)
{
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		if (in_string && body[i] == '\\')
			i++;
		else if (body[i] == '"')
			in_string = !in_string;
		else if (!in_string && body[i] == '\'')
			return i;
	}
	return len;
}

/* The whole of body as one JSON value, or NULL with a message in err. */
static json_object *parse_body(const char *body, size_t len, char *err, size_t errlen)
{
	if (!body || len == 0) {
		fail_einval(err, errlen, "The request body is empty: a JSON object is expected.");
		return NULL;
	}
	size_t quote = find_single_quote(body, len);
	if (quote < len) {
		fail_einval(err, errlen, "Malformed JSON: single quote at byte %zu.", quote);
		return NULL;
	}
	json_tokener *tok = json_tokener_new_ex(API_JSON_DEPTH);
	if (!tok) {
		fail_einval(err, errlen, "Out of memory.");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	json_object *obj = json_tokener_parse_ex(tok, body, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr == json_tokener_continue) {
		json_object_put(obj);
		fail_einval(err, errlen, "Malformed JSON: unexpected end of the body.");
		return NULL;
	}
	if (jerr != json_tokener_success || !obj) {
		json_object_put(obj);
		fail_einval(err, errlen, "Malformed JSON: %s at byte %zu.", json_tokener_error_desc(jerr), end);
		return NULL;
	}
	for (size_t i = end; i < len; i++) {
		if (!strchr(" \t\r\n", body[i]) || !body[i]) {
			json_object_put(obj);
			fail_einval(err, errlen, "Malformed JSON: trailing characters at byte %zu.", i);
			return NULL;
		}
	}
	return obj;
}

/* ---- the router ----------------------------------------------------------- */

enum route {
	R_ROOT, R_MACHINE_CONFIG, R_BOOT_SOURCE, R_ACTIONS, R_VM, R_VM_CONFIG, R_DRIVES, R_IFACES, R_VSOCK,
	R_LOGGER, R_METRICS, R_UNKNOWN,
};

static enum route route_of(const char *path, const char **id)
{
	static const struct {
		const char *path;
		enum route route;
	} exact[] = {
		{ "/", R_ROOT }, { "/machine-config", R_MACHINE_CONFIG }, { "/boot-source", R_BOOT_SOURCE },
		{ "/actions", R_ACTIONS }, { "/vm", R_VM }, { "/vm/config", R_VM_CONFIG }, { "/vsock", R_VSOCK },
		{ "/logger", R_LOGGER }, { "/metrics", R_METRICS },
	};
	*id = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(exact); i++)
		if (!strcmp(path, exact[i].path))
			return exact[i].route;
	if (!strncmp(path, "/drives/", 8)) {
		*id = path + 8;
		return R_DRIVES;
	}
	if (!strncmp(path, "/network-interfaces/", 20)) {
		*id = path + 20;
		return R_IFACES;
	}
	return R_UNKNOWN;
}

static int handle_actions(struct api_config *cfg, enum api_state state, json_object *body, struct api_reply *reply)
{
	static const struct field fields[] = { { "action_type", FT_STRING, true } };
	static const char *const actions[] = { "FlushMetrics", "InstanceStart", "SendCtrlAltDel", "Stop", NULL };
	char err[256];
	int action = 0;
	if (check_fields(body, fields, ARRAY_SIZE(fields), false, err, sizeof(err)) ||
	    get_enum(body, "action_type", actions, false, &action, err, sizeof(err)) < 0) {
		api_reply_error(reply, 400, err);
		return 0;
	}
	switch (action) {
	case 0: /* FlushMetrics */
		if (!cfg->metrics_path)
			api_reply_error(reply, 400, "The metrics system is not initialized: PUT /metrics first.");
		else
			reply->action = API_ACT_FLUSH_METRICS;
		return 0;
	case 1: { /* InstanceStart */
		const char *why = api_config_unsupported(cfg);
		if (state != API_NOT_STARTED)
			api_reply_error(reply, 400, MSG_AFTER_START);
		else if (why)
			api_reply_error(reply, 400, why);
		else
			reply->action = API_ACT_START;
		return 0;
	}
	case 2: /* SendCtrlAltDel */
		if (state == API_NOT_STARTED)
			api_reply_error(reply, 400, MSG_BEFORE_START);
		else
			api_reply_error(reply, 400,
					"SendCtrlAltDel is not supported by kvmlite yet: it has no keyboard device. "
					"Use the \"Stop\" action.");
		return 0;
	default: /* Stop (kvmlite's own): valid in any state, the VMM exits */
		reply->action = API_ACT_STOP;
		return 0;
	}
}

static void handle_patch_vm(enum api_state state, json_object *body, struct api_reply *reply)
{
	static const struct field fields[] = { { "state", FT_STRING, true } };
	static const char *const states[] = { "Paused", "Resumed", NULL };
	char err[256];
	int want = 0;
	if (check_fields(body, fields, ARRAY_SIZE(fields), false, err, sizeof(err)) ||
	    get_enum(body, "state", states, false, &want, err, sizeof(err)) < 0) {
		api_reply_error(reply, 400, err);
		return;
	}
	if (state == API_NOT_STARTED)
		api_reply_error(reply, 400, MSG_BEFORE_START);
	else if (state == API_STOPPED)
		api_reply_error(reply, 400, MSG_STOPPED);
	else if (want == 0 && state == API_RUNNING)
		reply->action = API_ACT_PAUSE;
	else if (want == 1 && state == API_PAUSED)
		reply->action = API_ACT_RESUME;
	/* else already there: 204, as Firecracker */
}

int api_handle(struct api_config *cfg, enum api_state state, const char *method, const char *path,
	       const char *body, size_t len, struct api_reply *reply)
{
	*reply = (struct api_reply){ .status = 204 };
	char err[512];
	const char *id = NULL;
	enum route route = path ? route_of(path, &id) : R_UNKNOWN;
	bool get = method && !strcmp(method, "GET"), put = method && !strcmp(method, "PUT"),
	     patch = method && !strcmp(method, "PATCH");

	bool ok;
	switch (route) {
	case R_ROOT: case R_VM_CONFIG: ok = get; break;
	case R_MACHINE_CONFIG: ok = get || put || patch; break;
	case R_VM: ok = patch; break;
	case R_UNKNOWN: ok = false; break;
	default: ok = put; break;
	}
	if (!ok) {
		snprintf(err, sizeof(err), "Invalid request method and/or path: %.16s %.128s.", method ? method : "",
			 path ? path : "");
		api_reply_error(reply, 400, err);
		return reply->body ? 0 : -ENOMEM;
	}
	if (get) {
		json_object *o = NULL;
		if (route == R_ROOT) {
			o = json_object_new_object();
			json_object_object_add(o, "id", json_object_new_string(cfg->id));
			json_object_object_add(o, "state", json_object_new_string(api_state_name(state)));
			json_object_object_add(o, "vmm_version", json_object_new_string(KVMLITE_VERSION));
			json_object_object_add(o, "app_name", json_object_new_string("kvmlite"));
		} else if (route == R_MACHINE_CONFIG) {
			o = machine_config_json(cfg);
		} else {
			o = full_config_json(cfg);
		}
		return reply_json(reply, o);
	}

	if (len > API_MAX_BODY) {
		snprintf(err, sizeof(err), "Request payload with size %zu is larger than the limit of %d allowed by server.",
			 len, API_MAX_BODY);
		api_reply_error(reply, 413, err);
		return reply->body ? 0 : -ENOMEM;
	}
	json_object *obj = parse_body(body, len, err, sizeof(err));
	if (!obj) {
		api_reply_error(reply, 400, err);
		return reply->body ? 0 : -ENOMEM;
	}
	int rc = 0;
	bool pre_boot_only = route != R_ACTIONS && route != R_VM;
	if (route == R_ACTIONS) {
		handle_actions(cfg, state, obj, reply);
	} else if (route == R_VM) {
		handle_patch_vm(state, obj, reply);
	} else if (pre_boot_only && state != API_NOT_STARTED) {
		api_reply_error(reply, 400, MSG_AFTER_START);
	} else {
		switch (route) {
		case R_MACHINE_CONFIG: rc = put_machine_config(cfg, obj, patch, err, sizeof(err)); break;
		case R_BOOT_SOURCE: rc = put_boot_source(cfg, obj, err, sizeof(err)); break;
		case R_DRIVES:
			rc = id_valid(id) ? put_drive(cfg, id, obj, err, sizeof(err))
					  : fail_einval(err, sizeof(err), "Invalid drive id in the path.");
			break;
		case R_IFACES:
			rc = id_valid(id) ? put_iface(cfg, id, obj, err, sizeof(err))
					  : fail_einval(err, sizeof(err), "Invalid interface id in the path.");
			break;
		case R_VSOCK: rc = put_vsock(cfg, obj, err, sizeof(err)); break;
		case R_LOGGER:
			rc = put_logger(cfg, obj, err, sizeof(err));
			reply->action = API_ACT_LOGGER;
			break;
		case R_METRICS:
			rc = put_metrics(cfg, obj, err, sizeof(err));
			reply->action = API_ACT_METRICS;
			break;
		default: rc = fail_einval(err, sizeof(err), "internal error: unrouted request"); break;
		}
		if (rc == -ENOMEM)
			snprintf(err, sizeof(err), "Out of memory.");
		if (rc)
			api_reply_error(reply, rc == -ENOMEM ? 500 : 400, err);
	}
	json_object_put(obj);
	if (reply->status >= 400 && !reply->body)
		return -ENOMEM;
	return 0;
}

/* ---- --config-file ---------------------------------------------------------- */

int api_config_load(struct api_config *cfg, const char *json, size_t len, char *err, size_t errlen)
{
	static const struct field sections[] = {
		{ "boot-source", FT_OBJECT, false },   { "machine-config", FT_OBJECT, false },
		{ "drives", FT_ARRAY, false },         { "network-interfaces", FT_ARRAY, false },
		{ "vsock", FT_OBJECT, false },         { "logger", FT_OBJECT, false },
		{ "metrics", FT_OBJECT, false },       { "balloon", FT_OBJECT, false },
		{ "mmds-config", FT_OBJECT, false },   { "entropy", FT_OBJECT, false },
		{ "cpu-config", FT_OBJECT, false },
	};
	if (len > 16 * API_MAX_BODY)
		return fail_einval(err, errlen, "the configuration is larger than %d bytes", 16 * API_MAX_BODY);
	char msg[512];
	json_object *doc = parse_body(json, len, msg, sizeof(msg));
	if (!doc)
		return fail_einval(err, errlen, "%s", msg);
	int rc = check_fields(doc, sections, ARRAY_SIZE(sections), false, msg, sizeof(msg));
	const char *where = "";
	json_object *v;
	static const char *const unsupported[] = { "balloon", "mmds-config", "entropy", "cpu-config" };
	for (size_t i = 0; !rc && i < ARRAY_SIZE(unsupported); i++) {
		if (get(doc, unsupported[i])) {
			where = unsupported[i];
			rc = fail_einval(msg, sizeof(msg), "not supported by kvmlite yet");
		}
	}
	if (!rc && (v = get(doc, "machine-config")))
		where = "machine-config", rc = put_machine_config(cfg, v, false, msg, sizeof(msg));
	if (!rc && (v = get(doc, "boot-source")))
		where = "boot-source", rc = put_boot_source(cfg, v, msg, sizeof(msg));
	if (!rc && (v = get(doc, "drives"))) {
		where = "drives";
		for (size_t i = 0; !rc && i < json_object_array_length(v); i++)
			rc = put_drive(cfg, NULL, json_object_array_get_idx(v, i), msg, sizeof(msg));
	}
	if (!rc && (v = get(doc, "network-interfaces"))) {
		where = "network-interfaces";
		for (size_t i = 0; !rc && i < json_object_array_length(v); i++)
			rc = put_iface(cfg, NULL, json_object_array_get_idx(v, i), msg, sizeof(msg));
	}
	if (!rc && (v = get(doc, "vsock")))
		where = "vsock", rc = put_vsock(cfg, v, msg, sizeof(msg));
	if (!rc && (v = get(doc, "logger")))
		where = "logger", rc = put_logger(cfg, v, msg, sizeof(msg));
	if (!rc && (v = get(doc, "metrics")))
		where = "metrics", rc = put_metrics(cfg, v, msg, sizeof(msg));
	json_object_put(doc);
	if (rc == -ENOMEM)
		return fail_einval(err, errlen, "out of memory");
	if (rc)
		return fail_einval(err, errlen, "%s%s%s", where, *where ? ": " : "", msg);
	return 0;
}
