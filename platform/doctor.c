/* SPDX-License-Identifier: MIT */
/*
 * zerohop-doctor: check this machine for what the NIC-to-GPU path needs (docs/DOCTOR.md), and say for
 * each finding whether it is fine (PASS), works but costs latency or is not the production set-up
 * (WARN), breaks the path (FAIL), or cannot be judged here (SKIP: no GPU, no RDMA device, a fact that
 * sysfs does not hold), with the fix for every WARN and FAIL.
 *
 * It only reads files under /sys, /proc, /dev and the CUDA toolkit's directory: no ioctl, no exec, no
 * write. --root puts a prefix in front of every one of those paths, so that the tests can point it at a
 * fake tree. Every read is bounded: attribute files by SMALL_FILE_MAX, line-wise files (/proc/mounts,
 * /proc/modules, /proc/cpuinfo, cuda.h) by LINE_MAX_BYTES per line, directory listings by LIST_MAX.
 *
 * Exit status: 0 no check failed, 1 at least one FAIL (or the report could not be written), 2 usage.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOOL "zerohop-doctor"
/* Version of the --json layout; bumped when a field changes meaning or goes away. */
#define JSON_SCHEMA 1

/* NICs and GPUs checked in one run; more are counted and named in the header, not checked. */
#define MAX_DEVS 16
/* CPUs a core list may name; isolcpus= and friends are parsed into sets of this size. */
#define MAX_CPUS 4096
#define CPU_WORDS (MAX_CPUS / 64)
/* A sysfs attribute is at most a page; /proc/cmdline is at most 4 KiB on every architecture. */
#define SMALL_FILE_MAX 4096
/* Long enough for a /proc/cpuinfo flags line of a current x86 CPU (about 1.7 KB). */
#define LINE_MAX_BYTES 8192
/* Entries kept from one directory listing, and the longest name kept. */
#define LIST_MAX 64
#define LIST_NAME_MAX 64
/* Bridges between a host bridge and a device; real trees are under ten deep. */
#define PCI_DEPTH_MAX 16
#define BDF_SIZE 16
#define DRIVER_SIZE 64
#define FINDING_MAX 384
#define FIX_MAX 256
#define DEVICE_MAX 32

/*
 * Results of one run, at most: the checks that report once (13), the "none found" results of the
 * per-device checks (5), vfio once per NIC, two more per NIC, three per GPU, and one per NIC/GPU pair.
 */
#define MAX_RESULTS (13 + 5 + 3 * MAX_DEVS + 3 * MAX_DEVS + MAX_DEVS * MAX_DEVS)
_Static_assert(MAX_CPUS % 64 == 0, "a CPU set is whole 64-bit words");
_Static_assert(DEVICE_MAX >= 2 * BDF_SIZE - 6, "a device field holds two addresses and a dash");

/* Flags of a line of a PCI device's sysfs `resource` file (include/linux/ioport.h). */
#define IORESOURCE_MEM 0x00000200ull
#define IORESOURCE_PREFETCH 0x00002000ull
#define IORESOURCE_MEM_64 0x00100000ull

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)
/* Below this a BAR1 is a consumer card's default window: too small to pin the receive rings. */
#define BAR1_MIN (256 * MIB)

/* PCI class codes (the top 16 bits of the 24-bit `class` attribute). */
#define PCI_CLASS_ETHERNET 0x0200u
#define PCI_CLASS_VGA 0x0300u
#define PCI_CLASS_3D 0x0302u
#define PCI_VENDOR_NVIDIA 0x10deu
#define PCI_VENDOR_MELLANOX 0x15b3u

/* The flag in /sys/class/net/IF/flags that `ip link set IF up` sets (IFF_UP). */
#define NETDEV_FLAG_UP 0x1ul

enum status { ST_PASS, ST_WARN, ST_FAIL, ST_SKIP, ST_COUNT };

static const char *const status_names[ST_COUNT] = { "PASS", "WARN", "FAIL", "SKIP" };

/* Every check id, in report order; each appears at least once in every report. */
static const char *const check_ids[] = {
	"hugepages", "iommu", "vfio", "nic-driver", "nic-numa", "gpu-present", "gpu-numa", "pcie-topology",
	"gpu-bar1", "gpudirect-rdma", "rdma-devices", "rdma-write-ordering", "cpu-isolation",
	"cpu-governor", "thp", "clocksource", "nvidia-driver", "cuda-version",
};

struct result {
	const char *id;           /* one of check_ids */
	char device[DEVICE_MAX];  /* "" for a machine-wide check */
	enum status status;
	char finding[FINDING_MAX];
	char fix[FIX_MAX];        /* "" when there is nothing to do */
};

struct cpuset {
	uint64_t bits[CPU_WORDS];
};

struct pci_dev {
	char bdf[BDF_SIZE];         /* "0000:00:03.0" */
	bool exists;
	unsigned vendor, device, class;
	char driver[DRIVER_SIZE];   /* "" when no driver is bound */
	int numa;                   /* -1: the firmware gives none */
};

struct dirlist {
	unsigned count;
	unsigned dropped;  /* entries past LIST_MAX or with longer names */
	char names[LIST_MAX][LIST_NAME_MAX];
};

/* Everything one run knows: the options, the devices found, and the results so far. */
struct doctor {
	char root[PATH_MAX];  /* "" for the real root, else the prefix without a trailing slash */
	bool json;
	bool nics_given, gpus_given;
	struct pci_dev nics[MAX_DEVS];
	unsigned nic_count, nic_dropped;
	struct pci_dev gpus[MAX_DEVS];
	unsigned gpu_count, gpu_dropped;
	bool have_cores;
	struct cpuset cores;
	char cmdline[SMALL_FILE_MAX];
	unsigned numa_nodes;  /* node* entries under /sys/devices/system/node; 0 if none */
	struct result results[MAX_RESULTS];
	unsigned result_count;
};

/* About 300 KiB: kept off the stack. */
static struct doctor doc;

/* ---- results ---------------------------------------------------------------------------------- */

static void vappend(char *buf, size_t size, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* Appends to a bounded buffer; what does not fit is cut and the cut is marked with "...". */
static void vappend(char *buf, size_t size, const char *fmt, va_list ap)
{
	size_t used = strlen(buf);
	int n;

	if (used + 1 >= size)
		return;
	n = vsnprintf(buf + used, size - used, fmt, ap);
	if (n >= 0 && (size_t)n >= size - used && size >= 4)
		memcpy(buf + size - 4, "...", 4);
}

static void append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vappend(buf, size, fmt, ap);
	va_end(ap);
}

/* Starts a result; the caller fills its finding (and fix) with say() and fix(). */
static struct result *add_result(struct doctor *d, const char *id, const char *device, enum status st)
{
	struct result *r;

	/* MAX_RESULTS counts every result the checks can make: running out is a programming error. */
	if (d->result_count >= MAX_RESULTS) {
		fprintf(stderr, TOOL ": internal error: more than %d results\n", MAX_RESULTS);
		abort();
	}
	r = &d->results[d->result_count++];
	memset(r, 0, sizeof(*r));
	r->id = id;
	r->status = st;
	snprintf(r->device, sizeof(r->device), "%s", device ? device : "");
	return r;
}

static void say(struct result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct result *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vappend(r->finding, sizeof(r->finding), fmt, ap);
	va_end(ap);
}

static void fix(struct result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fix(struct result *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vappend(r->fix, sizeof(r->fix), fmt, ap);
	va_end(ap);
}

/* ---- reading files under the root ------------------------------------------------------------- */

static int vpath(const struct doctor *d, char *out, size_t size, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/* Builds root + path; -ENAMETOOLONG when it does not fit in PATH_MAX. */
static int vpath(const struct doctor *d, char *out, size_t size, const char *fmt, va_list ap)
{
	size_t n = strlen(d->root);
	int m;

	if (n >= size)
		return -ENAMETOOLONG;
	memcpy(out, d->root, n + 1);
	m = vsnprintf(out + n, size - n, fmt, ap);
	if (m < 0 || (size_t)m >= size - n)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * Reads at most size - 1 bytes of the file at path into buf, NUL-terminated, trailing whitespace
 * removed. Returns the length kept, or -errno (buf is then "").
 */
static int read_path(const char *path, char *buf, size_t size)
{
	size_t len = 0;
	int fd, rc;

	buf[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len + 1 < size) {
		ssize_t got = read(fd, buf + len, size - 1 - len);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			close(fd);
			buf[0] = '\0';
			return rc;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		len--;
	buf[len] = '\0';
	return (int)len;
}

static int read_text(const struct doctor *d, char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* read_path() on root + the formatted path. */
static int read_text(const struct doctor *d, char *buf, size_t size, const char *fmt, ...)
{
	char path[PATH_MAX];
	va_list ap;
	int rc;

	buf[0] = '\0';
	va_start(ap, fmt);
	rc = vpath(d, path, sizeof(path), fmt, ap);
	va_end(ap);
	return rc < 0 ? rc : read_path(path, buf, size);
}

/* Parses a whole decimal or 0x-prefixed integer; false for anything else. */
static bool parse_long(const char *s, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0')
		return false;
	*out = v;
	return true;
}

static int read_long(const struct doctor *d, long *out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads one integer attribute; -EINVAL when the file holds something else. */
static int read_long(const struct doctor *d, long *out, const char *fmt, ...)
{
	char path[PATH_MAX], buf[64];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vpath(d, path, sizeof(path), fmt, ap);
	va_end(ap);
	if (rc < 0)
		return rc;
	rc = read_path(path, buf, sizeof(buf));
	if (rc < 0)
		return rc;
	return parse_long(buf, out) ? 0 : -EINVAL;
}

static int read_link_base(const struct doctor *d, char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Reads a symbolic link and keeps its last component (a driver's or an IOMMU group's name). */
static int read_link_base(const struct doctor *d, char *buf, size_t size, const char *fmt, ...)
{
	char path[PATH_MAX], target[PATH_MAX];
	const char *base;
	va_list ap;
	ssize_t n;
	int rc;

	buf[0] = '\0';
	va_start(ap, fmt);
	rc = vpath(d, path, sizeof(path), fmt, ap);
	va_end(ap);
	if (rc < 0)
		return rc;
	n = readlink(path, target, sizeof(target));
	if (n < 0)
		return -errno;
	if ((size_t)n >= sizeof(target))
		return -ENAMETOOLONG;
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (strlen(base) >= size)
		return -ENAMETOOLONG;
	memcpy(buf, base, strlen(base) + 1);
	return 0;
}

static bool exists(const struct doctor *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool exists(const struct doctor *d, const char *fmt, ...)
{
	char path[PATH_MAX];
	struct stat st;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vpath(d, path, sizeof(path), fmt, ap);
	va_end(ap);
	return rc == 0 && stat(path, &st) == 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

static int list_dir(const struct doctor *d, struct dirlist *dl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Lists a directory's entries (not . and ..), sorted; returns how many were kept, or -errno. */
static int list_dir(const struct doctor *d, struct dirlist *dl, const char *fmt, ...)
{
	char path[PATH_MAX];
	struct dirent *e;
	va_list ap;
	DIR *dir;
	int rc;

	dl->count = 0;
	dl->dropped = 0;
	va_start(ap, fmt);
	rc = vpath(d, path, sizeof(path), fmt, ap);
	va_end(ap);
	if (rc < 0)
		return rc;
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (dl->count >= LIST_MAX || strlen(e->d_name) >= LIST_NAME_MAX) {
			dl->dropped++;
			continue;
		}
		memcpy(dl->names[dl->count++], e->d_name, strlen(e->d_name) + 1);
	}
	closedir(dir);
	qsort(dl->names, dl->count, sizeof(dl->names[0]), compare_names);
	return (int)dl->count;
}

/* Called once per line (without its newline); returns false to stop reading. */
typedef bool (*line_fn)(const char *line, void *ctx);

/*
 * Calls fn on each line of a file. A line longer than LINE_MAX_BYTES is passed cut at that length and
 * the rest of it skipped, so that a tail is never taken for a line of its own. Returns 0 or -errno.
 */
static int for_each_line(const struct doctor *d, const char *rel, line_fn fn, void *ctx)
{
	static char line[LINE_MAX_BYTES];
	char path[PATH_MAX];
	bool in_tail = false;
	FILE *f;
	int rc = 0;

	if (snprintf(path, sizeof(path), "%s%s", d->root, rel) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);
		bool whole = len > 0 && line[len - 1] == '\n';
		bool was_tail = in_tail;

		in_tail = !whole;
		if (was_tail)
			continue;
		if (whole)
			line[len - 1] = '\0';
		if (!fn(line, ctx))
			break;
	}
	if (ferror(f))
		rc = -EIO;
	fclose(f);
	return rc;
}

/* ---- CPU sets --------------------------------------------------------------------------------- */

static void cs_add(struct cpuset *s, unsigned cpu)
{
	s->bits[cpu / 64] |= 1ull << (cpu % 64);
}

static bool cs_has(const struct cpuset *s, unsigned cpu)
{
	return cpu < MAX_CPUS && (s->bits[cpu / 64] >> (cpu % 64)) & 1u;
}

static bool cs_empty(const struct cpuset *s)
{
	for (unsigned w = 0; w < CPU_WORDS; w++)
		if (s->bits[w])
			return false;
	return true;
}

/* out = a without b. */
static void cs_minus(struct cpuset *out, const struct cpuset *a, const struct cpuset *b)
{
	for (unsigned w = 0; w < CPU_WORDS; w++)
		out->bits[w] = a->bits[w] & ~b->bits[w];
}

/* Parses one "N" or "N-M" of a CPU list. */
static int cs_parse_range(struct cpuset *s, const char *tok)
{
	unsigned long lo, hi;
	char *end;

	errno = 0;
	lo = strtoul(tok, &end, 10);
	if (errno != 0 || end == tok || !isdigit((unsigned char)tok[0]))
		return -EINVAL;
	hi = lo;
	if (*end == '-') {
		const char *rest = end + 1;

		if (!isdigit((unsigned char)*rest))
			return -EINVAL;
		hi = strtoul(rest, &end, 10);
		if (errno != 0)
			return -EINVAL;
	}
	if (*end != '\0' || hi < lo)
		return -EINVAL;
	if (hi >= MAX_CPUS)
		return -ERANGE;
	for (unsigned long c = lo; c <= hi; c++)
		cs_add(s, (unsigned)c);
	return 0;
}

/*
 * Parses a kernel CPU list ("0-3,8,10-11") into s. With skip_flags, the words isolcpus= takes before
 * its list (nohz, domain, managed_irq) are passed over. Group syntax ("0-7:2/4") is refused.
 */
static int cs_parse(struct cpuset *s, const char *list, bool skip_flags)
{
	char copy[SMALL_FILE_MAX], *save = NULL, *tok;
	int rc;

	memset(s, 0, sizeof(*s));
	if (strlen(list) >= sizeof(copy))
		return -E2BIG;
	memcpy(copy, list, strlen(list) + 1);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (skip_flags && isalpha((unsigned char)tok[0]))
			continue;
		rc = cs_parse_range(s, tok);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Writes a set as a kernel CPU list ("0-3,8"); "none" when empty. */
static void cs_format(const struct cpuset *s, char *buf, size_t size)
{
	unsigned c = 0;

	buf[0] = '\0';
	while (c < MAX_CPUS) {
		unsigned start;

		if (!cs_has(s, c)) {
			c++;
			continue;
		}
		start = c;
		while (c + 1 < MAX_CPUS && cs_has(s, c + 1))
			c++;
		if (start == c)
			append(buf, size, "%s%u", buf[0] ? "," : "", start);
		else
			append(buf, size, "%s%u-%u", buf[0] ? "," : "", start, c);
		c++;
	}
	if (!buf[0])
		snprintf(buf, size, "none");
}

/* ---- the kernel command line ------------------------------------------------------------------ */

/*
 * Finds NAME=VALUE (or a bare NAME, VALUE "") among the kernel's parameters, those before "--";
 * the last one wins, as in the kernel. Returns whether it is there.
 */
static bool cmdline_param(const struct doctor *d, const char *name, char *val, size_t size)
{
	char copy[SMALL_FILE_MAX], *save = NULL, *tok;
	size_t name_len = strlen(name);
	bool found = false;

	memcpy(copy, d->cmdline, sizeof(copy));
	val[0] = '\0';
	for (tok = strtok_r(copy, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
		if (strcmp(tok, "--") == 0)
			break;
		if (strncmp(tok, name, name_len) != 0)
			continue;
		if (tok[name_len] == '\0') {
			val[0] = '\0';
			found = true;
		} else if (tok[name_len] == '=') {
			snprintf(val, size, "%s", tok + name_len + 1);
			found = true;
		}
	}
	return found;
}

/* Whether a comma-separated option value holds WORD ("on" in intel_iommu=on,sm_on). */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == n && strncmp(p, word, n) == 0)
			return true;
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

/* ---- PCI devices ------------------------------------------------------------------------------ */

/* Whether s matches a pattern where 'x' stands for a hex digit and any other character for itself. */
static bool matches_hex_pattern(const char *s, const char *pattern)
{
	for (; *pattern; s++, pattern++) {
		if (*pattern == 'x' ? !isxdigit((unsigned char)*s) : *s != *pattern)
			return false;
	}
	return *s == '\0';
}

/* Accepts DDDD:BB:DD.F or BB:DD.F (domain 0000) and writes the canonical lower-case form. */
static bool parse_bdf(const char *in, char *out)
{
	unsigned dom = 0, bus, dev, fn;

	if (matches_hex_pattern(in, "xxxx:xx:xx.x")) {
		if (sscanf(in, "%4x:%2x:%2x.%1x", &dom, &bus, &dev, &fn) != 4)
			return false;
	} else if (matches_hex_pattern(in, "xx:xx.x")) {
		if (sscanf(in, "%2x:%2x.%1x", &bus, &dev, &fn) != 3)
			return false;
	} else {
		return false;
	}
	if (dev > 0x1f || fn > 7)
		return false;
	snprintf(out, BDF_SIZE, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
	return true;
}

/* Reads what the checks need of one device; dev->exists is false when it is not on the bus. */
static void pci_load(const struct doctor *d, struct pci_dev *dev)
{
	long v;

	dev->exists = exists(d, "/sys/bus/pci/devices/%s", dev->bdf);
	dev->numa = -1;
	dev->driver[0] = '\0';
	if (!dev->exists)
		return;
	if (read_long(d, &v, "/sys/bus/pci/devices/%s/vendor", dev->bdf) == 0)
		dev->vendor = (unsigned)v;
	if (read_long(d, &v, "/sys/bus/pci/devices/%s/device", dev->bdf) == 0)
		dev->device = (unsigned)v;
	if (read_long(d, &v, "/sys/bus/pci/devices/%s/class", dev->bdf) == 0)
		dev->class = (unsigned)v;
	if (read_long(d, &v, "/sys/bus/pci/devices/%s/numa_node", dev->bdf) == 0)
		dev->numa = (int)v;
	if (read_link_base(d, dev->driver, sizeof(dev->driver), "/sys/bus/pci/devices/%s/driver", dev->bdf) < 0)
		dev->driver[0] = '\0';
}

static int compare_devs(const void *a, const void *b)
{
	return strcmp(((const struct pci_dev *)a)->bdf, ((const struct pci_dev *)b)->bdf);
}

static bool is_nic(const struct pci_dev *dev)
{
	return dev->class >> 8 == PCI_CLASS_ETHERNET;
}

static bool is_gpu(const struct pci_dev *dev)
{
	return dev->vendor == PCI_VENDOR_NVIDIA &&
	       (dev->class >> 8 == PCI_CLASS_VGA || dev->class >> 8 == PCI_CLASS_3D);
}

/* Scans the bus for the NICs and GPUs not given on the command line; order: by address. */
static void pci_scan(struct doctor *d)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *dir;

	if (snprintf(path, sizeof(path), "%s/sys/bus/pci/devices", d->root) >= (int)sizeof(path))
		return;
	dir = opendir(path);
	if (!dir)
		return;
	while ((e = readdir(dir)) != NULL) {
		struct pci_dev dev = { 0 };

		if (!parse_bdf(e->d_name, dev.bdf) || strcmp(dev.bdf, e->d_name) != 0)
			continue;
		pci_load(d, &dev);
		if (!d->nics_given && is_nic(&dev)) {
			if (d->nic_count < MAX_DEVS)
				d->nics[d->nic_count++] = dev;
			else
				d->nic_dropped++;
		}
		if (!d->gpus_given && is_gpu(&dev)) {
			if (d->gpu_count < MAX_DEVS)
				d->gpus[d->gpu_count++] = dev;
			else
				d->gpu_dropped++;
		}
	}
	closedir(dir);
	qsort(d->nics, d->nic_count, sizeof(d->nics[0]), compare_devs);
	qsort(d->gpus, d->gpu_count, sizeof(d->gpus[0]), compare_devs);
}

/* DPDK owns the port through one of these (the mlx5 PMD works beside mlx5_core instead). */
static bool driver_is_dpdk(const char *driver)
{
	return strcmp(driver, "vfio-pci") == 0 || strcmp(driver, "uio_pci_generic") == 0 ||
	       strcmp(driver, "igb_uio") == 0;
}

static bool any_nic_on_dpdk(const struct doctor *d)
{
	for (unsigned i = 0; i < d->nic_count; i++)
		if (d->nics[i].exists && driver_is_dpdk(d->nics[i].driver))
			return true;
	return false;
}

static bool any_gpu(const struct doctor *d)
{
	for (unsigned i = 0; i < d->gpu_count; i++)
		if (d->gpus[i].exists)
			return true;
	return false;
}

/* ---- hugepages -------------------------------------------------------------------------------- */

struct mounts_scan {
	unsigned hugetlbfs;
	char first[128];
};

static bool mounts_line(const char *line, void *ctx)
{
	struct mounts_scan *m = ctx;
	char where[128], type[64];

	if (sscanf(line, "%*s %127s %63s", where, type) == 2 && strcmp(type, "hugetlbfs") == 0) {
		if (m->hugetlbfs++ == 0)
			snprintf(m->first, sizeof(m->first), "%s", where);
	}
	return true;
}

/* Reads every hugepages-* pool into a summary; returns the pages reserved and free in all pools. */
static void hugepage_pools(const struct doctor *d, char *summary, size_t size, long *total, long *free_pages)
{
	static struct dirlist dl;
	long nr, fr;

	*total = 0;
	*free_pages = 0;
	summary[0] = '\0';
	if (list_dir(d, &dl, "/sys/kernel/mm/hugepages") <= 0) {
		snprintf(summary, size, "no hugetlb pools in /sys/kernel/mm/hugepages");
		return;
	}
	for (unsigned i = 0; i < dl.count; i++) {
		const char *name = dl.names[i];

		if (strncmp(name, "hugepages-", 10) != 0)
			continue;
		if (read_long(d, &nr, "/sys/kernel/mm/hugepages/%s/nr_hugepages", name) < 0 ||
		    read_long(d, &fr, "/sys/kernel/mm/hugepages/%s/free_hugepages", name) < 0)
			continue;
		*total += nr;
		*free_pages += fr;
		append(summary, size, "%s%s: %ld reserved, %ld free", summary[0] ? "; " : "", name + 10, nr, fr);
	}
}

static void check_hugepages(struct doctor *d)
{
	static const char fix_reserve[] =
		"echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages (or hugepagesz=1G "
		"hugepages=16 on the kernel command line), and mount -t hugetlbfs nodev /dev/hugepages";
	struct mounts_scan m = { 0 };
	char pools[FINDING_MAX / 2];
	long total, free_pages;
	struct result *r;

	hugepage_pools(d, pools, sizeof(pools), &total, &free_pages);
	if (for_each_line(d, "/proc/mounts", mounts_line, &m) < 0)
		m.hugetlbfs = 0;
	if (total == 0 && any_nic_on_dpdk(d)) {
		r = add_result(d, "hugepages", NULL, ST_FAIL);
		say(r, "no hugepages reserved (%s), yet a NIC is bound for DPDK: its EAL cannot start", pools);
		fix(r, "%s", fix_reserve);
	} else if (total == 0) {
		r = add_result(d, "hugepages", NULL, ST_WARN);
		say(r, "no hugepages reserved (%s): DPDK runs only with --no-huge (the dev set-up)", pools);
		fix(r, "%s", fix_reserve);
	} else if (m.hugetlbfs == 0) {
		r = add_result(d, "hugepages", NULL, ST_FAIL);
		say(r, "%s, but no hugetlbfs mount: DPDK's EAL finds no hugepages", pools);
		fix(r, "mount -t hugetlbfs nodev /dev/hugepages");
	} else if (free_pages == 0) {
		r = add_result(d, "hugepages", NULL, ST_WARN);
		say(r, "%s: every page is in use (zerohopd already running?)", pools);
		fix(r, "reserve more pages, or stop the process that holds them");
	} else {
		r = add_result(d, "hugepages", NULL, ST_PASS);
		say(r, "%s; hugetlbfs at %s", pools, m.first);
	}
}

/* ---- IOMMU and vfio --------------------------------------------------------------------------- */

static void check_iommu(struct doctor *d)
{
	static struct dirlist dl;
	char intel[64], amd[64], iommu[64], passthrough[16], units[128] = "";
	bool requested, disabled, pt;
	struct result *r;

	if (list_dir(d, &dl, "/sys/class/iommu") < 0)
		dl.count = 0;
	for (unsigned i = 0; i < dl.count; i++)
		append(units, sizeof(units), "%s%s", i ? "," : "", dl.names[i]);
	cmdline_param(d, "intel_iommu", intel, sizeof(intel));
	cmdline_param(d, "amd_iommu", amd, sizeof(amd));
	cmdline_param(d, "iommu", iommu, sizeof(iommu));
	cmdline_param(d, "iommu.passthrough", passthrough, sizeof(passthrough));
	requested = has_word(intel, "on");
	disabled = has_word(intel, "off") || has_word(amd, "off") || has_word(iommu, "off");
	pt = has_word(iommu, "pt") || strcmp(passthrough, "1") == 0;
	if (dl.count > 0 && pt) {
		r = add_result(d, "iommu", NULL, ST_PASS);
		say(r, "%u IOMMU unit(s) (%s), passthrough (iommu=pt)", dl.count, units);
	} else if (dl.count > 0) {
		r = add_result(d, "iommu", NULL, ST_WARN);
		say(r, "%u IOMMU unit(s) (%s) in translated mode: NIC-to-GPU peer DMA needs IOMMU mappings of "
		    "the GPU's BAR; NVIDIA's GPUDirect RDMA guide asks for passthrough", dl.count, units);
		fix(r, "add iommu=pt to the kernel command line");
	} else if (requested) {
		r = add_result(d, "iommu", NULL, ST_FAIL);
		say(r, "intel_iommu=%s is on the command line but no IOMMU came up: VT-d is off in the firmware",
		    intel);
		fix(r, "enable VT-d (AMD: AMD-Vi/IOMMU) in the firmware set-up and reboot");
	} else {
		r = add_result(d, "iommu", NULL, ST_WARN);
		say(r, "no IOMMU (/sys/class/iommu is empty%s): vfio-pci works only in unsafe no-IOMMU mode; "
		    "a VM without a virtual IOMMU, or VT-d/AMD-Vi off", disabled ? ", and it is off on the command line" : "");
		fix(r, "enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on iommu=pt (AMD: iommu=pt)");
	}
}

/* Whether every device of an IOMMU group is one vfio can share the group with; names the first that is not. */
static bool group_viable(const struct doctor *d, const char *group, char *blocker, size_t size)
{
	static struct dirlist dl;
	char driver[DRIVER_SIZE];

	if (list_dir(d, &dl, "/sys/kernel/iommu_groups/%s/devices", group) < 0)
		return true;
	for (unsigned i = 0; i < dl.count; i++) {
		if (read_link_base(d, driver, sizeof(driver), "/sys/kernel/iommu_groups/%s/devices/%s/driver",
				   group, dl.names[i]) < 0)
			continue;
		if (strcmp(driver, "vfio-pci") != 0 && strcmp(driver, "pcieport") != 0 &&
		    strcmp(driver, "pci-stub") != 0) {
			snprintf(blocker, size, "%s on %s", dl.names[i], driver);
			return false;
		}
	}
	return true;
}

/* The vfio state of one NIC bound to vfio-pci: FAIL when DPDK cannot open its group. */
static void check_vfio_nic(struct doctor *d, const struct pci_dev *nic, bool vfio_dev)
{
	char group[LIST_NAME_MAX], blocker[96];
	struct result *r;

	if (read_link_base(d, group, sizeof(group), "/sys/bus/pci/devices/%s/iommu_group", nic->bdf) < 0) {
		r = add_result(d, "vfio", nic->bdf, ST_FAIL);
		say(r, "bound to vfio-pci but in no IOMMU group: vfio cannot open it");
		fix(r, "enable the IOMMU (see the iommu check), or modprobe vfio enable_unsafe_noiommu_mode=1");
	} else if (!vfio_dev || (!exists(d, "/dev/vfio/%s", group) && !exists(d, "/dev/vfio/noiommu-%s", group))) {
		r = add_result(d, "vfio", nic->bdf, ST_FAIL);
		say(r, "IOMMU group %s has no /dev/vfio/%s: vfio-pci is not bound as it seems", group, group);
		fix(r, "modprobe vfio-pci; dpdk-devbind.py --bind=vfio-pci %s", nic->bdf);
	} else if (!group_viable(d, group, blocker, sizeof(blocker))) {
		r = add_result(d, "vfio", nic->bdf, ST_FAIL);
		say(r, "IOMMU group %s is not viable: %s (every device of a group must leave its kernel driver)",
		    group, blocker);
		fix(r, "bind the group's other devices to vfio-pci too (dpdk-devbind.py --bind=vfio-pci ...)");
	} else if (exists(d, "/dev/vfio/noiommu-%s", group)) {
		r = add_result(d, "vfio", nic->bdf, ST_WARN);
		say(r, "IOMMU group %s in unsafe no-IOMMU mode: the NIC can DMA anywhere", group);
		fix(r, "enable the IOMMU (see the iommu check)");
	} else {
		r = add_result(d, "vfio", nic->bdf, ST_PASS);
		say(r, "vfio-pci, IOMMU group %s, /dev/vfio/%s present", group, group);
	}
}

static void check_vfio(struct doctor *d)
{
	static struct dirlist groups;
	bool vfio_dev = exists(d, "/dev/vfio/vfio");
	bool any_vfio = false, all_mlx5 = d->nic_count > 0;
	struct result *r;
	int n;

	for (unsigned i = 0; i < d->nic_count; i++) {
		const struct pci_dev *nic = &d->nics[i];

		all_mlx5 = all_mlx5 && nic->exists && strcmp(nic->driver, "mlx5_core") == 0;
		if (nic->exists && strcmp(nic->driver, "vfio-pci") == 0) {
			any_vfio = true;
			check_vfio_nic(d, nic, vfio_dev);
		}
	}
	if (any_vfio)
		return;
	n = list_dir(d, &groups, "/sys/kernel/iommu_groups");
	if (n < 0)
		n = 0;
	if (vfio_dev && n > 0) {
		r = add_result(d, "vfio", NULL, ST_PASS);
		say(r, "vfio loaded, %d%s IOMMU group(s); no NIC bound to vfio-pci yet", n, groups.dropped ? "+" : "");
	} else if (all_mlx5) {
		r = add_result(d, "vfio", NULL, ST_SKIP);
		say(r, "not needed: the NIC(s) stay on mlx5_core (bifurcated)");
	} else if (vfio_dev) {
		r = add_result(d, "vfio", NULL, ST_WARN);
		say(r, "vfio loaded but no IOMMU groups (no IOMMU): only no-IOMMU mode is possible");
		fix(r, "enable the IOMMU (see the iommu check)");
	} else {
		r = add_result(d, "vfio", NULL, ST_WARN);
		say(r, "vfio not loaded (no /dev/vfio/vfio; %d IOMMU group(s)): DPDK cannot take a PCI NIC", n);
		fix(r, "modprobe vfio-pci, then dpdk-devbind.py --bind=vfio-pci <NIC address>");
	}
}

/* ---- the NICs --------------------------------------------------------------------------------- */

struct netif {
	unsigned count;
	char name[LIST_NAME_MAX];  /* the first interface */
	bool up;                   /* any interface administratively up */
};

/* Collects the interfaces in DIR (BDF/net, or BDF/virtioN/net for virtio). */
static void netif_collect(const struct doctor *d, struct netif *nif, const char *dir)
{
	static struct dirlist dl;
	char flags[32];
	long v;

	if (list_dir(d, &dl, "%s", dir) <= 0)
		return;
	for (unsigned i = 0; i < dl.count; i++) {
		if (nif->count++ == 0)
			snprintf(nif->name, sizeof(nif->name), "%s", dl.names[i]);
		if (read_text(d, flags, sizeof(flags), "%s/%s/flags", dir, dl.names[i]) > 0 &&
		    parse_long(flags, &v) && ((unsigned long)v & NETDEV_FLAG_UP))
			nif->up = true;
	}
}

static void nic_interfaces(const struct doctor *d, const char *bdf, struct netif *nif)
{
	static struct dirlist sub;
	char dir[PATH_MAX];

	memset(nif, 0, sizeof(*nif));
	snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s/net", bdf);
	netif_collect(d, nif, dir);
	if (nif->count > 0 || list_dir(d, &sub, "/sys/bus/pci/devices/%s", bdf) <= 0)
		return;
	for (unsigned i = 0; i < sub.count; i++) {
		if (strncmp(sub.names[i], "virtio", 6) != 0)
			continue;
		snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s/%s/net", bdf, sub.names[i]);
		netif_collect(d, nif, dir);
	}
}

static void check_nic_driver(struct doctor *d, const struct pci_dev *nic)
{
	struct netif nif;
	struct result *r;

	if (!nic->exists) {
		r = add_result(d, "nic-driver", nic->bdf, ST_FAIL);
		say(r, "no such PCI device");
		fix(r, "pass the NIC's address (lspci -D, or ls /sys/bus/pci/devices) to --nic");
	} else if (driver_is_dpdk(nic->driver)) {
		r = add_result(d, "nic-driver", nic->bdf, ST_PASS);
		say(r, "bound to %s (DPDK takes it)", nic->driver);
	} else if (strcmp(nic->driver, "mlx5_core") == 0) {
		r = add_result(d, "nic-driver", nic->bdf, ST_PASS);
		say(r, "mlx5_core (bifurcated: DPDK's mlx5 PMD runs beside the kernel's netdev)");
	} else if (nic->driver[0] == '\0') {
		r = add_result(d, "nic-driver", nic->bdf, ST_FAIL);
		say(r, "no driver bound: neither DPDK nor the kernel can use it");
		fix(r, "modprobe vfio-pci; dpdk-devbind.py --bind=vfio-pci %s", nic->bdf);
	} else {
		nic_interfaces(d, nic->bdf, &nif);
		r = add_result(d, "nic-driver", nic->bdf, ST_WARN);
		if (nif.count == 0)
			say(r, "kernel driver %s, no interface: not DPDK's", nic->driver);
		else
			say(r, "kernel driver %s, interface %s%s %s: the kernel owns it, DPDK does not", nic->driver,
			    nif.name, nif.count > 1 ? " (and more)" : "", nif.up ? "up" : "down");
		if (nif.up)
			fix(r, "ip link set %s down; dpdk-devbind.py --bind=vfio-pci %s (or --no-pci --vdev on a dev machine)",
			    nif.name, nic->bdf);
		else
			fix(r, "dpdk-devbind.py --bind=vfio-pci %s (or --no-pci --vdev on a dev machine)", nic->bdf);
	}
}

/* Reads a NUMA node's CPUs; false when the node has no cpulist. */
static bool node_cpus(const struct doctor *d, int node, struct cpuset *cpus, char *text, size_t size)
{
	if (read_text(d, text, size, "/sys/devices/system/node/node%d/cpulist", node) <= 0)
		return false;
	return cs_parse(cpus, text, false) == 0;
}

static void check_nic_numa(struct doctor *d, const struct pci_dev *nic)
{
	char text[256], away_text[256];
	struct cpuset cpus, away;
	struct result *r;

	if (!nic->exists) {
		r = add_result(d, "nic-numa", nic->bdf, ST_SKIP);
		say(r, "no such PCI device");
	} else if (nic->numa < 0 && d->numa_nodes <= 1) {
		r = add_result(d, "nic-numa", nic->bdf, ST_PASS);
		say(r, "one NUMA node (numa_node -1): every core is local");
	} else if (nic->numa < 0) {
		r = add_result(d, "nic-numa", nic->bdf, ST_WARN);
		say(r, "the firmware gives no NUMA node on a %u-node machine: cores cannot be placed by it",
		    d->numa_nodes);
		fix(r, "update the firmware (ACPI _PXM); meanwhile place the cores by the slot (lstopo)");
	} else if (!node_cpus(d, nic->numa, &cpus, text, sizeof(text))) {
		r = add_result(d, "nic-numa", nic->bdf, ST_PASS);
		say(r, "node %d (its CPU list is unreadable)", nic->numa);
	} else if (!d->have_cores) {
		r = add_result(d, "nic-numa", nic->bdf, ST_PASS);
		say(r, "node %d (CPUs %s): give zerohopd its dataplane cores from these", nic->numa, text);
	} else {
		cs_minus(&away, &d->cores, &cpus);
		if (cs_empty(&away)) {
			r = add_result(d, "nic-numa", nic->bdf, ST_PASS);
			say(r, "node %d, and the dataplane cores are on it", nic->numa);
		} else {
			cs_format(&away, away_text, sizeof(away_text));
			r = add_result(d, "nic-numa", nic->bdf, ST_FAIL);
			say(r, "node %d (CPUs %s), but dataplane core(s) %s not on it: every packet crosses the "
			    "socket link", nic->numa, text, away_text);
			fix(r, "run zerohopd's lcores (-l) on node %d's CPUs: %s", nic->numa, text);
		}
	}
}

/* ---- the GPUs --------------------------------------------------------------------------------- */

static void check_gpu_present(struct doctor *d, const struct pci_dev *gpu)
{
	struct result *r;

	if (!gpu->exists) {
		r = add_result(d, "gpu-present", gpu->bdf, ST_FAIL);
		say(r, "no such PCI device");
		fix(r, "pass the GPU's address (lspci -D -d 10de:) to --gpu");
	} else if (!is_gpu(gpu)) {
		r = add_result(d, "gpu-present", gpu->bdf, ST_FAIL);
		say(r, "not an NVIDIA GPU (vendor 0x%04x, class 0x%06x)", gpu->vendor, gpu->class);
		fix(r, "pass the GPU's address (lspci -D -d 10de:) to --gpu");
	} else if (strcmp(gpu->driver, "nvidia") == 0) {
		r = add_result(d, "gpu-present", gpu->bdf, ST_PASS);
		say(r, "NVIDIA device 0x%04x, driver nvidia", gpu->device);
	} else {
		r = add_result(d, "gpu-present", gpu->bdf, ST_FAIL);
		if (gpu->driver[0])
			say(r, "NVIDIA device 0x%04x bound to %s: CUDA needs the nvidia driver", gpu->device, gpu->driver);
		else
			say(r, "NVIDIA device 0x%04x with no driver bound: CUDA cannot see it", gpu->device);
		fix(r, "install the NVIDIA driver (open kernel modules), blacklist nouveau, modprobe nvidia");
	}
}

/* The NUMA node of the NICs when they agree on one; -1 when none is known, -2 when they differ. */
static int nic_node(const struct doctor *d, const char **bdf)
{
	int node = -1;

	*bdf = NULL;
	for (unsigned i = 0; i < d->nic_count; i++) {
		const struct pci_dev *nic = &d->nics[i];

		if (!nic->exists || nic->numa < 0)
			continue;
		if (node >= 0 && nic->numa != node)
			return -2;
		node = nic->numa;
		*bdf = nic->bdf;
	}
	return node;
}

static void check_gpu_numa(struct doctor *d, const struct pci_dev *gpu)
{
	const char *nic_bdf;
	int nic = nic_node(d, &nic_bdf);
	struct result *r;

	if (!gpu->exists) {
		r = add_result(d, "gpu-numa", gpu->bdf, ST_SKIP);
		say(r, "no such PCI device");
	} else if (gpu->numa < 0 && d->numa_nodes <= 1) {
		r = add_result(d, "gpu-numa", gpu->bdf, ST_PASS);
		say(r, "one NUMA node (numa_node -1)");
	} else if (gpu->numa < 0) {
		r = add_result(d, "gpu-numa", gpu->bdf, ST_WARN);
		say(r, "the firmware gives no NUMA node on a %u-node machine", d->numa_nodes);
		fix(r, "update the firmware (ACPI _PXM); the pcie-topology check still places the GPU");
	} else if (nic == -1) {
		r = add_result(d, "gpu-numa", gpu->bdf, ST_PASS);
		say(r, "node %d (no NIC with a known node to compare)", gpu->numa);
	} else if (nic == -2) {
		r = add_result(d, "gpu-numa", gpu->bdf, ST_WARN);
		say(r, "node %d; the NICs are on different nodes: pass the dataplane NIC with --nic", gpu->numa);
		fix(r, TOOL " --nic <the dataplane NIC's address>");
	} else if (nic == gpu->numa) {
		r = add_result(d, "gpu-numa", gpu->bdf, ST_PASS);
		say(r, "node %d, the same as NIC %s", gpu->numa, nic_bdf);
	} else {
		r = add_result(d, "gpu-numa", gpu->bdf, ST_FAIL);
		say(r, "node %d, NIC %s on node %d: the NIC's DMA into GPU memory crosses the socket link",
		    gpu->numa, nic_bdf, nic);
		fix(r, "put the NIC and the GPU in slots of one socket, under one PCIe switch");
	}
}

/* ---- PCIe topology between a NIC and a GPU ---------------------------------------------------- */

/* A device's place in the tree: its host bridge and the bridges down to it, the device last. */
struct pci_chain {
	char host[32];  /* "pci0000:00" */
	char bdf[PCI_DEPTH_MAX][BDF_SIZE];
	unsigned depth;
};

/* Whether a path component names a host bridge: "pci" DDDD ":" BB. */
static bool is_host_bridge(const char *name)
{
	return matches_hex_pattern(name, "pcixxxx:xx");
}

/* Resolves /sys/bus/pci/devices/BDF into its chain of bridges (the upstream path in sysfs). */
static int pci_chain_load(const struct doctor *d, const char *bdf, struct pci_chain *c)
{
	char path[PATH_MAX], real[PATH_MAX], *save = NULL, *tok;

	memset(c, 0, sizeof(*c));
	if (snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s", d->root, bdf) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	if (!realpath(path, real))
		return -errno;
	for (tok = strtok_r(real, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		char canon[BDF_SIZE];

		if (is_host_bridge(tok)) {
			snprintf(c->host, sizeof(c->host), "%s", tok);
			c->depth = 0;
		} else if (c->host[0] && parse_bdf(tok, canon) && strcmp(canon, tok) == 0) {
			if (c->depth >= PCI_DEPTH_MAX)
				return -E2BIG;
			memcpy(c->bdf[c->depth++], canon, BDF_SIZE);
		}
	}
	if (!c->host[0] || c->depth == 0 || strcmp(c->bdf[c->depth - 1], bdf) != 0)
		return -ENOENT;
	return 0;
}

enum pcie_link { LINK_PIX, LINK_PXB, LINK_PHB, LINK_NODE, LINK_SYS };

static const char *const link_names[] = { "PIX", "PXB", "PHB", "NODE", "SYS" };

/*
 * Classifies the path between two devices as nvidia-smi topo -m does. Below one host bridge, the
 * deepest common bridge decides: PIX when it is the parent of both devices or the upstream port of the
 * switch whose downstream ports hold them (at most one bridge between it and each device), PXB when it
 * is higher (several switch levels, still below one root port), PHB when there is none (different root
 * ports). Across host bridges: NODE on one NUMA node, SYS across nodes. *common gets the common bridge.
 */
static enum pcie_link pcie_classify(const struct pci_chain *a, int numa_a, const struct pci_chain *b, int numa_b,
				    const char **common)
{
	unsigned shared = 0, limit = (a->depth < b->depth ? a->depth : b->depth) - 1;

	*common = NULL;
	if (strcmp(a->host, b->host) != 0)
		return numa_a >= 0 && numa_b >= 0 && numa_a != numa_b ? LINK_SYS : LINK_NODE;
	while (shared < limit && strcmp(a->bdf[shared], b->bdf[shared]) == 0)
		shared++;
	if (shared == 0)
		return LINK_PHB;
	*common = a->bdf[shared - 1];
	if (a->depth - 1 - shared <= 1 && b->depth - 1 - shared <= 1)
		return LINK_PIX;
	return LINK_PXB;
}

static void check_pcie_pair(struct doctor *d, const struct pci_dev *nic, const struct pci_dev *gpu)
{
	static struct pci_chain cn, cg;
	char device[DEVICE_MAX];
	const char *common;
	enum pcie_link link;
	struct result *r;

	snprintf(device, sizeof(device), "%s-%s", nic->bdf, gpu->bdf);
	if (!nic->exists || !gpu->exists) {
		r = add_result(d, "pcie-topology", device, ST_SKIP);
		say(r, "%s is not on the bus", nic->exists ? gpu->bdf : nic->bdf);
		return;
	}
	if (pci_chain_load(d, nic->bdf, &cn) < 0 || pci_chain_load(d, gpu->bdf, &cg) < 0) {
		r = add_result(d, "pcie-topology", device, ST_WARN);
		say(r, "cannot place both devices in the PCI tree (/sys/devices/pci*/...)");
		fix(r, "check by hand: nvidia-smi topo -m");
		return;
	}
	link = pcie_classify(&cn, nic->numa, &cg, gpu->numa, &common);
	r = add_result(d, "pcie-topology", device, link <= LINK_PXB ? ST_PASS : link == LINK_PHB ? ST_WARN : ST_FAIL);
	switch (link) {
	case LINK_PIX:
	case LINK_PXB:
		say(r, "%s: below bridge %s (%s), peer DMA stays in the switch", link_names[link], common,
		    link == LINK_PIX ? "one switch" : "several switch levels");
		break;
	case LINK_PHB:
		say(r, "PHB: different root ports of host bridge %s: peer DMA goes through the root complex",
		    cn.host);
		break;
	case LINK_NODE:
		say(r, "NODE: host bridges %s and %s: peer DMA crosses between root complexes", cn.host, cg.host);
		break;
	case LINK_SYS:
		say(r, "SYS: host bridges %s and %s on NUMA nodes %d and %d: peer DMA crosses the socket link",
		    cn.host, cg.host, nic->numa, gpu->numa);
		break;
	}
	if (link >= LINK_PHB)
		fix(r, "put the NIC and the GPU in slots under one PCIe switch (nvidia-smi topo -m: PIX or PXB)");
}

static void check_pcie_topology(struct doctor *d)
{
	struct result *r;

	if (d->nic_count == 0 || d->gpu_count == 0) {
		r = add_result(d, "pcie-topology", NULL, ST_SKIP);
		say(r, "needs a NIC and a GPU (found %u and %u)", d->nic_count, d->gpu_count);
		return;
	}
	for (unsigned i = 0; i < d->nic_count; i++)
		for (unsigned j = 0; j < d->gpu_count; j++)
			check_pcie_pair(d, &d->nics[i], &d->gpus[j]);
}

/* ---- GPU BAR1 --------------------------------------------------------------------------------- */

/*
 * Finds BAR1 in a device's sysfs `resource` file. Line i is BAR register i; a 64-bit BAR takes two
 * registers, so the kernel reports it on its first line and leaves the next one zero. BAR1 (NVIDIA's
 * name for the window onto GPU memory) is the memory BAR after BAR0: line 1 when BAR0 is 32-bit (every
 * NVIDIA GPU so far), line 2 when BAR0 is 64-bit. *size is 0 when the BAR is not assigned.
 */
static int read_bar1(const struct doctor *d, const char *bdf, uint64_t *size, uint64_t *flags, unsigned *line)
{
	char buf[SMALL_FILE_MAX], *save = NULL, *l;
	uint64_t start[3] = { 0 }, end[3] = { 0 }, fl[3] = { 0 };
	unsigned n = 0;
	int rc;

	rc = read_text(d, buf, sizeof(buf), "/sys/bus/pci/devices/%s/resource", bdf);
	if (rc < 0)
		return rc;
	for (l = strtok_r(buf, "\n", &save); l && n < 3; l = strtok_r(NULL, "\n", &save), n++) {
		unsigned long long s, e, f;

		if (sscanf(l, "%llx %llx %llx", &s, &e, &f) != 3)
			return -EINVAL;
		start[n] = s;
		end[n] = e;
		fl[n] = f;
	}
	*line = fl[0] & IORESOURCE_MEM_64 ? 2 : 1;
	if (n <= *line)
		return -EINVAL;
	*flags = fl[*line];
	*size = (fl[*line] & IORESOURCE_MEM) && end[*line] > start[*line] ? end[*line] - start[*line] + 1 : 0;
	return 0;
}

static void format_size(uint64_t bytes, char *buf, size_t size)
{
	if (bytes >= GIB && bytes % GIB == 0)
		snprintf(buf, size, "%" PRIu64 " GiB", bytes / GIB);
	else
		snprintf(buf, size, "%" PRIu64 " MiB", bytes / MIB);
}

static void check_gpu_bar1(struct doctor *d, const struct pci_dev *gpu)
{
	uint64_t size, flags;
	unsigned line;
	struct result *r;
	char text[32];

	if (!gpu->exists) {
		r = add_result(d, "gpu-bar1", gpu->bdf, ST_SKIP);
		say(r, "no such PCI device");
		return;
	}
	if (read_bar1(d, gpu->bdf, &size, &flags, &line) < 0) {
		r = add_result(d, "gpu-bar1", gpu->bdf, ST_WARN);
		say(r, "cannot read BAR1 from /sys/bus/pci/devices/%s/resource", gpu->bdf);
		fix(r, "check by hand: nvidia-smi -q -d MEMORY (BAR1 Memory Usage)");
		return;
	}
	format_size(size, text, sizeof(text));
	if (size == 0) {
		r = add_result(d, "gpu-bar1", gpu->bdf, ST_FAIL);
		say(r, "BAR1 (resource line %u) is not assigned: no window onto GPU memory for peer DMA", line);
		fix(r, "enable Above 4G decoding (and Resizable BAR) in the firmware set-up");
	} else if (size < BAR1_MIN) {
		r = add_result(d, "gpu-bar1", gpu->bdf, ST_WARN);
		say(r, "BAR1 %s: too small to pin zerohop's receive buffers for peer DMA (want >= 256 MiB)", text);
		fix(r, "enable Resizable BAR and Above 4G decoding in the firmware set-up");
	} else {
		r = add_result(d, "gpu-bar1", gpu->bdf, ST_PASS);
		say(r, "BAR1 %s (%s%s)", text, flags & IORESOURCE_MEM_64 ? "64-bit" : "32-bit",
		    flags & IORESOURCE_PREFETCH ? ", prefetchable" : "");
	}
}

/* ---- GPUDirect RDMA and RDMA devices ---------------------------------------------------------- */

struct module_scan {
	bool peermem, nvidia;
};

static bool modules_line(const char *line, void *ctx)
{
	struct module_scan *m = ctx;

	if (strncmp(line, "nvidia_peermem ", 15) == 0 || strncmp(line, "nv_peer_mem ", 12) == 0)
		m->peermem = true;
	if (strncmp(line, "nvidia ", 7) == 0)
		m->nvidia = true;
	return true;
}

/* The running kernel's version as major * 1000 + minor; 0 when unreadable. */
static unsigned kernel_version(const struct doctor *d, char *text, size_t size)
{
	unsigned major, minor;

	if (read_text(d, text, size, "/proc/sys/kernel/osrelease") <= 0 || sscanf(text, "%u.%u", &major, &minor) != 2)
		return 0;
	return major * 1000 + minor;
}

static void check_gpudirect(struct doctor *d)
{
	struct module_scan m = { 0 };
	char kernel[128], version[512];
	unsigned kv;
	bool open_module;
	struct result *r;

	if (!any_gpu(d)) {
		r = add_result(d, "gpudirect-rdma", NULL, ST_SKIP);
		say(r, "no GPU");
		return;
	}
	if (for_each_line(d, "/proc/modules", modules_line, &m) < 0)
		m.peermem = m.nvidia = false;
	m.peermem = m.peermem || exists(d, "/sys/module/nvidia_peermem") || exists(d, "/sys/module/nv_peer_mem");
	m.nvidia = m.nvidia || exists(d, "/sys/module/nvidia");
	kv = kernel_version(d, kernel, sizeof(kernel));
	open_module = read_text(d, version, sizeof(version), "/proc/driver/nvidia/version") > 0 &&
		      strstr(version, "Open Kernel Module") != NULL;
	if (m.peermem) {
		r = add_result(d, "gpudirect-rdma", NULL, ST_PASS);
		say(r, "nvidia_peermem loaded");
	} else if (!m.nvidia) {
		r = add_result(d, "gpudirect-rdma", NULL, ST_FAIL);
		say(r, "the nvidia driver is not loaded: no GPUDirect RDMA");
		fix(r, "modprobe nvidia; modprobe nvidia_peermem");
	} else if (kv >= 5012 && open_module) {
		r = add_result(d, "gpudirect-rdma", NULL, ST_WARN);
		say(r, "nvidia_peermem not loaded; the dma-buf path is there (kernel %s, open kernel modules): "
		    "zerohopd must register GPU memory through it", kernel);
		fix(r, "modprobe nvidia_peermem, or use the dma-buf path (CUDA 11.7+, kernel 5.12+)");
	} else {
		r = add_result(d, "gpudirect-rdma", NULL, ST_FAIL);
		if (kv >= 5012)
			say(r, "nvidia_peermem not loaded, and dma-buf needs the open kernel modules (this driver is "
			    "the proprietary one, or says nothing)");
		else
			say(r, "nvidia_peermem not loaded, and kernel %s has no dma-buf for RDMA (5.12+)",
			    kernel[0] ? kernel : "(unknown)");
		fix(r, "modprobe nvidia_peermem (and add it to /etc/modules-load.d/)");
	}
}

/* Appends "DEV port N STATE (LAYER)" for each port of an RDMA device; counts ACTIVE and INIT ports. */
static void rdma_ports(const struct doctor *d, const char *dev, char *list, size_t size, unsigned *active,
		       unsigned *init)
{
	static struct dirlist ports;
	char state[64], layer[64];
	const char *word;

	if (list_dir(d, &ports, "/sys/class/infiniband/%s/ports", dev) <= 0) {
		append(list, size, "%s%s no ports", list[0] ? ", " : "", dev);
		return;
	}
	for (unsigned i = 0; i < ports.count; i++) {
		const char *port = ports.names[i];

		if (read_text(d, state, sizeof(state), "/sys/class/infiniband/%s/ports/%s/state", dev, port) <= 0)
			snprintf(state, sizeof(state), "?");
		if (read_text(d, layer, sizeof(layer), "/sys/class/infiniband/%s/ports/%s/link_layer", dev, port) <= 0)
			snprintf(layer, sizeof(layer), "?");
		/* The state reads "4: ACTIVE": the word after the number. */
		word = strchr(state, ':');
		word = word ? word + 1 + strspn(word + 1, " ") : state;
		*active += strcmp(word, "ACTIVE") == 0;
		*init += strcmp(word, "INIT") == 0 || strcmp(word, "ARMED") == 0;
		append(list, size, "%s%s port %s %s (%s)", list[0] ? ", " : "", dev, port, word, layer);
	}
}

static void check_rdma_devices(struct doctor *d)
{
	static struct dirlist devs;
	char list[FINDING_MAX / 2] = "";
	unsigned active = 0, init = 0;
	bool mellanox = false;
	struct result *r;

	for (unsigned i = 0; i < d->nic_count; i++)
		mellanox = mellanox || (d->nics[i].exists && d->nics[i].vendor == PCI_VENDOR_MELLANOX);
	if (list_dir(d, &devs, "/sys/class/infiniband") <= 0) {
		r = add_result(d, "rdma-devices", NULL, mellanox ? ST_FAIL : ST_SKIP);
		say(r, "no RDMA devices (rdma-core sees none: /sys/class/infiniband is empty)%s",
		    mellanox ? ", yet a Mellanox/NVIDIA NIC is present" : "");
		if (mellanox)
			fix(r, "modprobe mlx5_ib (and ib_uverbs)");
		return;
	}
	for (unsigned i = 0; i < devs.count; i++)
		rdma_ports(d, devs.names[i], list, sizeof(list), &active, &init);
	if (active > 0) {
		r = add_result(d, "rdma-devices", NULL, ST_PASS);
		say(r, "%s", list);
	} else if (init > 0) {
		r = add_result(d, "rdma-devices", NULL, ST_WARN);
		say(r, "%s: link up, not ACTIVE (no subnet manager on InfiniBand?)", list);
		fix(r, "start a subnet manager (opensm) on the fabric, or check the port's link layer");
	} else {
		r = add_result(d, "rdma-devices", NULL, ST_FAIL);
		say(r, "%s: no port ACTIVE", list);
		fix(r, "check the cable and the switch port (rdma link show)");
	}
}

static void check_write_ordering(struct doctor *d)
{
	struct result *r = add_result(d, "rdma-write-ordering", NULL, ST_SKIP);

	say(r, "not in sysfs: zerohopd checks CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WRITES_ORDERING at start-up "
	    "(cuda-gpudirect)");
}

/* ---- CPUs ------------------------------------------------------------------------------------- */

/* Reads the present CPUs; an empty set when unreadable. */
static void present_cpus(const struct doctor *d, struct cpuset *present)
{
	char text[SMALL_FILE_MAX];

	memset(present, 0, sizeof(*present));
	if (read_text(d, text, sizeof(text), "/sys/devices/system/cpu/present") <= 0 ||
	    cs_parse(present, text, false) < 0)
		memset(present, 0, sizeof(*present));
}

/*
 * Reads one isolation parameter into the set of dataplane cores it misses; returns -EINVAL when it
 * cannot be parsed. rcu_nocbs without a list (or "all") covers every CPU.
 */
static int isolation_missing(const struct doctor *d, const char *param, bool skip_flags, const struct cpuset *all,
			     struct cpuset *missing)
{
	char val[SMALL_FILE_MAX];
	struct cpuset covered;

	memset(&covered, 0, sizeof(covered));
	if (cmdline_param(d, param, val, sizeof(val))) {
		if (strcmp(param, "rcu_nocbs") == 0 && (val[0] == '\0' || strcmp(val, "all") == 0))
			covered = *all;
		else if (cs_parse(&covered, val, skip_flags) < 0)
			return -EINVAL;
	}
	cs_minus(missing, &d->cores, &covered);
	return 0;
}

#define ISOLATION_FIX "on the kernel command line: isolcpus=managed_irq,domain,%s nohz_full=%s rcu_nocbs=%s"

static void check_cpu_isolation(struct doctor *d)
{
	struct cpuset present, absent, miss_isol, miss_nohz, miss_rcu, all;
	char cores[256], text[256];
	struct result *r;

	if (!d->have_cores) {
		r = add_result(d, "cpu-isolation", NULL, ST_WARN);
		say(r, "no dataplane cores given");
		fix(r, TOOL " --cores <the cores of zerohopd's -l>");
		return;
	}
	cs_format(&d->cores, cores, sizeof(cores));
	present_cpus(d, &present);
	memset(&all, 0xff, sizeof(all));
	cs_minus(&absent, &d->cores, &present);
	if (!cs_empty(&present) && !cs_empty(&absent)) {
		cs_format(&absent, text, sizeof(text));
		r = add_result(d, "cpu-isolation", NULL, ST_FAIL);
		say(r, "dataplane core(s) %s not present on this machine", text);
		fix(r, "pass cores from /sys/devices/system/cpu/present");
		return;
	}
	if (isolation_missing(d, "isolcpus", true, &all, &miss_isol) < 0 ||
	    isolation_missing(d, "nohz_full", false, &all, &miss_nohz) < 0 ||
	    isolation_missing(d, "rcu_nocbs", false, &all, &miss_rcu) < 0) {
		r = add_result(d, "cpu-isolation", NULL, ST_WARN);
		say(r, "cannot parse isolcpus=/nohz_full=/rcu_nocbs= on the command line");
		fix(r, ISOLATION_FIX, cores, cores, cores);
		return;
	}
	if (!cs_empty(&miss_isol)) {
		cs_format(&miss_isol, text, sizeof(text));
		r = add_result(d, "cpu-isolation", NULL, ST_FAIL);
		say(r, "dataplane core(s) %s not in isolcpus=: the scheduler puts other tasks on the poll loops", text);
		fix(r, ISOLATION_FIX, cores, cores, cores);
	} else if (!cs_empty(&miss_nohz) || !cs_empty(&miss_rcu)) {
		struct cpuset both;

		for (unsigned w = 0; w < CPU_WORDS; w++)
			both.bits[w] = miss_nohz.bits[w] | miss_rcu.bits[w];
		cs_format(&both, text, sizeof(text));
		r = add_result(d, "cpu-isolation", NULL, ST_WARN);
		say(r, "cores %s in isolcpus=, but %s missing from nohz_full= or rcu_nocbs=: timer ticks and RCU callbacks "
		    "still interrupt the poll loops", cores, text);
		fix(r, ISOLATION_FIX, cores, cores, cores);
	} else {
		r = add_result(d, "cpu-isolation", NULL, ST_PASS);
		say(r, "cores %s in isolcpus=, nohz_full= and rcu_nocbs=", cores);
	}
}

static void check_cpu_governor(struct doctor *d)
{
	struct cpuset present, other;
	const struct cpuset *which;
	char gov[64], first_other[64] = "", text[256];
	unsigned seen = 0;
	bool others = false;
	struct result *r;

	present_cpus(d, &present);
	which = d->have_cores ? &d->cores : &present;
	memset(&other, 0, sizeof(other));
	for (unsigned c = 0; c < MAX_CPUS; c++) {
		if (!cs_has(which, c) ||
		    read_text(d, gov, sizeof(gov), "/sys/devices/system/cpu/cpu%u/cpufreq/scaling_governor", c) <= 0)
			continue;
		seen++;
		if (strcmp(gov, "performance") != 0) {
			cs_add(&other, c);
			if (!first_other[0])
				snprintf(first_other, sizeof(first_other), "%s", gov);
			else if (strcmp(first_other, gov) != 0)
				others = true;
		}
	}
	cs_format(&other, text, sizeof(text));
	if (seen == 0) {
		r = add_result(d, "cpu-governor", NULL, ST_WARN);
		say(r, "no cpufreq: a VM or firmware-controlled; the frequency cannot be checked from here");
		fix(r, "on bare metal: load the cpufreq driver (intel_pstate/amd-pstate) and set the performance governor");
	} else if (cs_empty(&other)) {
		r = add_result(d, "cpu-governor", NULL, ST_PASS);
		say(r, "performance on %s %u CPU(s)", d->have_cores ? "the dataplane's" : "all", seen);
	} else {
		r = add_result(d, "cpu-governor", NULL, d->have_cores ? ST_FAIL : ST_WARN);
		say(r, "%s %s run %s%s, not performance: the poll loops' latency follows the clock",
		    d->have_cores ? "dataplane core(s)" : "CPU(s)", text, first_other, others ? " (and others)" : "");
		fix(r, "cpupower frequency-set -g performance (or echo performance into "
		    "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)");
	}
}

/* ---- THP and the clock source ----------------------------------------------------------------- */

/* The bracketed word of a sysfs choice ("always [madvise] never"), or "" when there is none. */
static void chosen(const char *text, char *out, size_t size)
{
	const char *open = strchr(text, '['), *close = open ? strchr(open, ']') : NULL;

	out[0] = '\0';
	if (open && close && (size_t)(close - open - 1) < size)
		snprintf(out, size, "%.*s", (int)(close - open - 1), open + 1);
}

static void check_thp(struct doctor *d)
{
	char text[256], enabled[32], defrag[32];
	struct result *r;

	if (read_text(d, text, sizeof(text), "/sys/kernel/mm/transparent_hugepage/enabled") <= 0) {
		r = add_result(d, "thp", NULL, ST_SKIP);
		say(r, "no transparent hugepages in this kernel");
		return;
	}
	chosen(text, enabled, sizeof(enabled));
	if (read_text(d, text, sizeof(text), "/sys/kernel/mm/transparent_hugepage/defrag") > 0)
		chosen(text, defrag, sizeof(defrag));
	else
		defrag[0] = '\0';
	if (strcmp(enabled, "always") == 0) {
		r = add_result(d, "thp", NULL, ST_WARN);
		say(r, "enabled [always]: khugepaged and compaction stall threads that fault memory");
		fix(r, "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (or transparent_hugepage=madvise)");
	} else if (strcmp(defrag, "always") == 0) {
		r = add_result(d, "thp", NULL, ST_WARN);
		say(r, "enabled [%s], but defrag [always]: page faults wait for direct compaction", enabled);
		fix(r, "echo madvise > /sys/kernel/mm/transparent_hugepage/defrag");
	} else if (strcmp(enabled, "madvise") == 0 || strcmp(enabled, "never") == 0) {
		r = add_result(d, "thp", NULL, ST_PASS);
		say(r, "enabled [%s]%s%s%s", enabled, defrag[0] ? ", defrag [" : "", defrag, defrag[0] ? "]" : "");
	} else {
		r = add_result(d, "thp", NULL, ST_WARN);
		say(r, "cannot read the THP mode from \"%s\"", text);
		fix(r, "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled");
	}
}

struct cpuinfo_scan {
	bool have_flags, constant, nonstop;
};

static bool cpuinfo_line(const char *line, void *ctx)
{
	struct cpuinfo_scan *c = ctx;
	const char *colon;

	if (strncmp(line, "flags", 5) != 0 || !(colon = strchr(line, ':')))
		return true;
	c->have_flags = true;
	c->constant = strstr(colon, " constant_tsc") != NULL;
	c->nonstop = strstr(colon, " nonstop_tsc") != NULL;
	/* The first CPU's flags stand for all: they are the same on every core of a machine. */
	return false;
}

static void check_clocksource(struct doctor *d)
{
	struct cpuinfo_scan c = { 0 };
	char current[64], tsc[64];
	struct result *r;

	if (for_each_line(d, "/proc/cpuinfo", cpuinfo_line, &c) < 0)
		c.have_flags = false;
	if (read_text(d, current, sizeof(current),
		      "/sys/devices/system/clocksource/clocksource0/current_clocksource") <= 0) {
		r = add_result(d, "clocksource", NULL, ST_SKIP);
		say(r, "no clocksource in sysfs");
		return;
	}
	if (c.have_flags && (!c.constant || !c.nonstop)) {
		r = add_result(d, "clocksource", NULL, ST_FAIL);
		say(r, "clocksource %s; the TSC is not invariant (no %s): DPDK's TSC timers and latency stamps "
		    "drift with the clock", current, !c.constant ? "constant_tsc" : "nonstop_tsc");
		fix(r, "a CPU with an invariant TSC; in a VM, expose it (KVM: -cpu host,+invtsc)");
	} else if (strcmp(current, "tsc") != 0) {
		r = add_result(d, "clocksource", NULL, ST_WARN);
		cmdline_param(d, "tsc", tsc, sizeof(tsc));
		say(r, "clocksource %s, not tsc%s%s: the kernel does not trust the TSC (rte_rdtsc still reads it)",
		    current, tsc[0] ? ", tsc=" : "", tsc);
		fix(r, "boot with clocksource=tsc tsc=reliable on hardware with an invariant TSC");
	} else {
		r = add_result(d, "clocksource", NULL, ST_PASS);
		say(r, "tsc%s", c.have_flags ? ", invariant (constant_tsc, nonstop_tsc)" : "");
	}
}

/* ---- driver and CUDA versions ----------------------------------------------------------------- */

/* The loaded kernel module's version ("550.54.15"), from /proc/driver/nvidia/version or /sys/module. */
static bool driver_version(const struct doctor *d, char *out, size_t size)
{
	char text[512], *save = NULL, *tok;

	out[0] = '\0';
	if (read_text(d, text, sizeof(text), "/proc/driver/nvidia/version") > 0) {
		char *line_end = strchr(text, '\n');

		if (line_end)
			*line_end = '\0';
		/* "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar ...": the first dotted number. */
		for (tok = strtok_r(text, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
			if (isdigit((unsigned char)tok[0]) && strchr(tok, '.') &&
			    strspn(tok, "0123456789.") == strlen(tok)) {
				snprintf(out, size, "%s", tok);
				return true;
			}
		}
	}
	return read_text(d, out, size, "/sys/module/nvidia/version") > 0;
}

/* The user-space driver library's version, from the libcuda.so.1 link's target (libcuda.so.550.54.15). */
static bool libcuda_version(const struct doctor *d, char *out, size_t size, char *where, size_t where_size)
{
	static const char *const places[] = {
		"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
	};
	char target[LIST_NAME_MAX];

	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		if (read_link_base(d, target, sizeof(target), "%s/libcuda.so.1", places[i]) < 0 ||
		    strncmp(target, "libcuda.so.", 11) != 0)
			continue;
		snprintf(out, size, "%s", target + 11);
		snprintf(where, where_size, "%s/libcuda.so.1", places[i]);
		return true;
	}
	return false;
}

static void check_nvidia_driver(struct doctor *d)
{
	char kernel[64], user[64], where[128];
	bool gpu = any_gpu(d);
	struct result *r;

	if (!driver_version(d, kernel, sizeof(kernel))) {
		r = add_result(d, "nvidia-driver", NULL, gpu ? ST_FAIL : ST_SKIP);
		say(r, "no NVIDIA driver loaded (no /proc/driver/nvidia/version)%s", gpu ? ", yet a GPU is present" : "");
		if (gpu)
			fix(r, "install the NVIDIA driver (open kernel modules) and modprobe nvidia");
		return;
	}
	if (!libcuda_version(d, user, sizeof(user), where, sizeof(where))) {
		r = add_result(d, "nvidia-driver", NULL, ST_WARN);
		say(r, "kernel module %s; no libcuda.so.1 found to compare with", kernel);
		fix(r, "install the driver's user-space part (libcuda) of version %s", kernel);
	} else if (strcmp(kernel, user) != 0) {
		r = add_result(d, "nvidia-driver", NULL, ST_FAIL);
		say(r, "kernel module %s, but %s is %s: CUDA fails with \"driver/library version mismatch\"",
		    kernel, where, user);
		fix(r, "reboot (or unload and reload the nvidia modules) after the driver upgrade");
	} else {
		r = add_result(d, "nvidia-driver", NULL, ST_PASS);
		say(r, "%s (kernel module and libcuda agree)", kernel);
	}
}

struct cuda_h_scan {
	long version;
};

static bool cuda_h_line(const char *line, void *ctx)
{
	struct cuda_h_scan *c = ctx;

	if (sscanf(line, "#define CUDA_VERSION %ld", &c->version) == 1)
		return false;
	return true;
}

/* The toolkit's version as major and minor: version.json's "cuda" entry, else cuda.h's CUDA_VERSION. */
static bool toolkit_version(const struct doctor *d, unsigned *major, unsigned *minor, char *text, size_t size)
{
	char json[SMALL_FILE_MAX];
	struct cuda_h_scan c = { 0 };
	const char *p;

	if (read_text(d, json, sizeof(json), "/usr/local/cuda/version.json") > 0 && (p = strstr(json, "\"cuda\"")) &&
	    (p = strstr(p, "\"version\"")) && (p = strchr(p + 9, '"')) && sscanf(p + 1, "%u.%u", major, minor) == 2) {
		snprintf(text, size, "%.*s", (int)strcspn(p + 1, "\""), p + 1);
		return true;
	}
	if (for_each_line(d, "/usr/local/cuda/include/cuda.h", cuda_h_line, &c) == 0 && c.version > 0) {
		*major = (unsigned)(c.version / 1000);
		*minor = (unsigned)(c.version % 1000 / 10);
		snprintf(text, size, "%u.%u", *major, *minor);
		return true;
	}
	return false;
}

/*
 * The oldest driver branch each CUDA major runs on (minor version compatibility, NVIDIA's CUDA
 * compatibility guide): 11.x from 450, 12.x from 525, 13.x from 580.
 */
static unsigned min_driver(unsigned cuda_major)
{
	switch (cuda_major) {
	case 11:
		return 450;
	case 12:
		return 525;
	case 13:
		return 580;
	default:
		return 0;
	}
}

static void check_cuda_version(struct doctor *d)
{
	char kernel[64], toolkit[32];
	unsigned major = 0, minor = 0, driver_major = 0;
	bool have_toolkit = toolkit_version(d, &major, &minor, toolkit, sizeof(toolkit));
	struct result *r;

	if (!driver_version(d, kernel, sizeof(kernel))) {
		r = add_result(d, "cuda-version", NULL, ST_SKIP);
		say(r, "no NVIDIA driver, so no CUDA version it supports; toolkit %s", have_toolkit ? toolkit : "none");
		if (have_toolkit)
			append(r->finding, sizeof(r->finding), " at /usr/local/cuda");
		return;
	}
	if (sscanf(kernel, "%u", &driver_major) != 1) {
		r = add_result(d, "cuda-version", NULL, ST_WARN);
		say(r, "cannot read the driver's branch from \"%s\"", kernel);
		fix(r, "check by hand: cat /proc/driver/nvidia/version");
	} else if (!have_toolkit) {
		r = add_result(d, "cuda-version", NULL, ST_WARN);
		say(r, "driver %s; no toolkit at /usr/local/cuda to compare (zerohopd links cudart statically: "
		    "what it was built with counts)", kernel);
		fix(r, "install the CUDA toolkit zerohopd was built with at /usr/local/cuda");
	} else if (min_driver(major) == 0) {
		r = add_result(d, "cuda-version", NULL, ST_WARN);
		say(r, "toolkit %s: a CUDA major this doctor does not know; driver %s", toolkit, kernel);
		fix(r, "check NVIDIA's CUDA compatibility table for toolkit %s", toolkit);
	} else if (driver_major < min_driver(major)) {
		r = add_result(d, "cuda-version", NULL, ST_FAIL);
		say(r, "toolkit %s needs a driver >= %u, the driver is %s: CUDA calls fail with "
		    "cudaErrorInsufficientDriver", toolkit, min_driver(major), kernel);
		fix(r, "install a driver of branch %u or newer (or build with an older toolkit)", min_driver(major));
	} else {
		r = add_result(d, "cuda-version", NULL, ST_PASS);
		say(r, "toolkit %s, driver %s (CUDA %u.x runs on >= %u)", toolkit, kernel, major, min_driver(major));
	}
}

/* ---- the report ------------------------------------------------------------------------------- */

static void json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(out, "\\u%04x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

static void json_devs(FILE *out, const char *name, const struct pci_dev *devs, unsigned n)
{
	fprintf(out, "  \"%s\": [", name);
	for (unsigned i = 0; i < n; i++) {
		fputs(i ? ", " : "", out);
		json_string(out, devs[i].bdf);
	}
	fputs("],\n", out);
}

static void report_json(const struct doctor *d, FILE *out, const unsigned counts[ST_COUNT], int code)
{
	char cores[256];

	fprintf(out, "{\n  \"tool\": \"" TOOL "\",\n  \"schema\": %d,\n  \"root\": ", JSON_SCHEMA);
	json_string(out, d->root[0] ? d->root : "/");
	fputs(",\n", out);
	json_devs(out, "nics", d->nics, d->nic_count);
	json_devs(out, "gpus", d->gpus, d->gpu_count);
	cs_format(&d->cores, cores, sizeof(cores));
	fputs("  \"cores\": ", out);
	if (d->have_cores)
		json_string(out, cores);
	else
		fputs("null", out);
	fputs(",\n  \"checks\": [\n", out);
	for (unsigned i = 0; i < d->result_count; i++) {
		const struct result *r = &d->results[i];

		fputs("    {\"id\": ", out);
		json_string(out, r->id);
		fputs(", \"device\": ", out);
		if (r->device[0])
			json_string(out, r->device);
		else
			fputs("null", out);
		fprintf(out, ", \"status\": \"%s\", \"finding\": ", status_names[r->status]);
		json_string(out, r->finding);
		fputs(", \"fix\": ", out);
		if (r->fix[0])
			json_string(out, r->fix);
		else
			fputs("null", out);
		fprintf(out, "}%s\n", i + 1 < d->result_count ? "," : "");
	}
	fprintf(out, "  ],\n  \"summary\": {\"pass\": %u, \"warn\": %u, \"fail\": %u, \"skip\": %u},\n"
		"  \"exit_code\": %d\n}\n", counts[ST_PASS], counts[ST_WARN], counts[ST_FAIL], counts[ST_SKIP], code);
}

static void report_text(const struct doctor *d, FILE *out, const unsigned counts[ST_COUNT], int code)
{
	int width = 5;
	char cores[256];

	for (size_t i = 0; i < sizeof(check_ids) / sizeof(check_ids[0]); i++)
		if ((int)strlen(check_ids[i]) > width)
			width = (int)strlen(check_ids[i]);
	cs_format(&d->cores, cores, sizeof(cores));
	fprintf(out, TOOL ": root %s; %u NIC(s)%s, %u GPU(s)%s; dataplane cores: %s\n", d->root[0] ? d->root : "/",
		d->nic_count, d->nic_dropped ? " (more not checked)" : "", d->gpu_count,
		d->gpu_dropped ? " (more not checked)" : "", d->have_cores ? cores : "not given");
	fprintf(out, "%-6s  %-*s  %s\n", "STATUS", width, "CHECK", "FINDING");
	for (unsigned i = 0; i < d->result_count; i++) {
		const struct result *r = &d->results[i];

		fprintf(out, "%-6s  %-*s  %s%s%s\n", status_names[r->status], width, r->id, r->device,
			r->device[0] ? ": " : "", r->finding);
		if (r->fix[0] && (r->status == ST_WARN || r->status == ST_FAIL))
			fprintf(out, "%-6s  %-*s  fix: %s\n", "", width, "", r->fix);
	}
	fprintf(out, "summary: %u PASS, %u WARN, %u FAIL, %u SKIP; exit %d\n", counts[ST_PASS], counts[ST_WARN],
		counts[ST_FAIL], counts[ST_SKIP], code);
}

/* ---- options and main ------------------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " TOOL " [--json] [--nic PCI_ADDR]... [--gpu PCI_ADDR]... [--cores LIST] [--root DIR]\n"
		"  Check this machine for what zerohop's NIC-to-GPU path needs (docs/DOCTOR.md): hugepages,\n"
		"  IOMMU/vfio, the NICs' drivers and NUMA nodes, the GPUs, PCIe topology, BAR1, GPUDirect RDMA,\n"
		"  RDMA devices, CPU isolation, governor, THP, clock source, driver and CUDA versions. Reads\n"
		"  /sys, /proc and /dev only; changes nothing.\n"
		"  --nic ADDR    the dataplane NIC (repeatable; default: every Ethernet controller, class 0x0200)\n"
		"  --gpu ADDR    the GPU (repeatable; default: every NVIDIA GPU, class 0x0300 or 0x0302)\n"
		"  --cores LIST  the dataplane cores, e.g. 2-5,8 (checked for isolation, governor, NUMA)\n"
		"  --json        one JSON object on stdout (for fleet tooling) instead of the table\n"
		"  --root DIR    read DIR/sys, DIR/proc, DIR/dev, DIR/usr/local/cuda instead (tests)\n"
		"  Each check is PASS, WARN, FAIL or SKIP (absent hardware, or a fact not in sysfs).\n"
		"exit status: 0 no check failed, 1 at least one FAIL, 2 usage error\n");
}

static int add_dev_option(struct pci_dev *devs, unsigned *count, const char *arg, const char *what)
{
	if (*count >= MAX_DEVS) {
		fprintf(stderr, TOOL ": more than %d --%s options\n", MAX_DEVS, what);
		return -1;
	}
	memset(&devs[*count], 0, sizeof(devs[0]));
	if (!parse_bdf(arg, devs[*count].bdf)) {
		fprintf(stderr, TOOL ": --%s %s: not a PCI address (DDDD:BB:DD.F)\n", what, arg);
		return -1;
	}
	(*count)++;
	return 0;
}

static int set_root(struct doctor *d, const char *arg)
{
	size_t n = strlen(arg);
	struct stat st;

	while (n > 1 && arg[n - 1] == '/')
		n--;
	if (n >= sizeof(d->root) || stat(arg, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, TOOL ": --root %s: not a directory\n", arg);
		return -1;
	}
	if (n == 1 && arg[0] == '/')
		n = 0;
	memcpy(d->root, arg, n);
	d->root[n] = '\0';
	return 0;
}

/* Parses the command line; returns 0, 1 for --help (done), or -1 for a usage error. */
static int parse_options(struct doctor *d, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },  { "nic", required_argument, NULL, 'n' },
		{ "gpu", required_argument, NULL, 'g' }, { "cores", required_argument, NULL, 'c' },
		{ "root", required_argument, NULL, 'r' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			d->json = true;
			break;
		case 'n':
			d->nics_given = true;
			if (add_dev_option(d->nics, &d->nic_count, optarg, "nic") < 0)
				return -1;
			break;
		case 'g':
			d->gpus_given = true;
			if (add_dev_option(d->gpus, &d->gpu_count, optarg, "gpu") < 0)
				return -1;
			break;
		case 'c':
			if (cs_parse(&d->cores, optarg, false) < 0 || cs_empty(&d->cores)) {
				fprintf(stderr, TOOL ": --cores %s: not a CPU list (e.g. 2-5,8; below %d)\n", optarg, MAX_CPUS);
				return -1;
			}
			d->have_cores = true;
			break;
		case 'r':
			if (set_root(d, optarg) < 0)
				return -1;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, TOOL ": unexpected argument: %s\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* Loads what several checks share: the devices, the command line, the NUMA node count. */
static void gather(struct doctor *d)
{
	static struct dirlist nodes;
	unsigned node;

	for (unsigned i = 0; d->nics_given && i < d->nic_count; i++)
		pci_load(d, &d->nics[i]);
	for (unsigned i = 0; d->gpus_given && i < d->gpu_count; i++)
		pci_load(d, &d->gpus[i]);
	pci_scan(d);
	if (read_text(d, d->cmdline, sizeof(d->cmdline), "/proc/cmdline") < 0)
		d->cmdline[0] = '\0';
	if (list_dir(d, &nodes, "/sys/devices/system/node") > 0)
		for (unsigned i = 0; i < nodes.count; i++)
			d->numa_nodes += sscanf(nodes.names[i], "node%u", &node) == 1;
}

static void run_checks(struct doctor *d)
{
	struct result *r;

	check_hugepages(d);
	check_iommu(d);
	check_vfio(d);
	for (unsigned i = 0; i < d->nic_count; i++)
		check_nic_driver(d, &d->nics[i]);
	for (unsigned i = 0; i < d->nic_count; i++)
		check_nic_numa(d, &d->nics[i]);
	if (d->nic_count == 0) {
		r = add_result(d, "nic-driver", NULL, ST_SKIP);
		say(r, "no Ethernet controller (PCI class 0x0200) on the bus");
		r = add_result(d, "nic-numa", NULL, ST_SKIP);
		say(r, "no NIC");
	}
	for (unsigned i = 0; i < d->gpu_count; i++)
		check_gpu_present(d, &d->gpus[i]);
	for (unsigned i = 0; i < d->gpu_count; i++)
		check_gpu_numa(d, &d->gpus[i]);
	if (d->gpu_count == 0) {
		r = add_result(d, "gpu-present", NULL, ST_SKIP);
		say(r, "no NVIDIA GPU (vendor 0x10de, class 0x0300/0x0302) on the bus: the CPU-only appliance");
		r = add_result(d, "gpu-numa", NULL, ST_SKIP);
		say(r, "no GPU");
	}
	check_pcie_topology(d);
	for (unsigned i = 0; i < d->gpu_count; i++)
		check_gpu_bar1(d, &d->gpus[i]);
	if (d->gpu_count == 0) {
		r = add_result(d, "gpu-bar1", NULL, ST_SKIP);
		say(r, "no GPU");
	}
	check_gpudirect(d);
	check_rdma_devices(d);
	check_write_ordering(d);
	check_cpu_isolation(d);
	check_cpu_governor(d);
	check_thp(d);
	check_clocksource(d);
	check_nvidia_driver(d);
	check_cuda_version(d);
}

int main(int argc, char **argv)
{
	struct doctor *d = &doc;
	unsigned counts[ST_COUNT] = { 0 };
	int rc, code;

	rc = parse_options(d, argc, argv);
	if (rc != 0) {
		if (rc < 0)
			fprintf(stderr, "try " TOOL " --help\n");
		return rc < 0 ? 2 : 0;
	}
	gather(d);
	run_checks(d);
	for (unsigned i = 0; i < d->result_count; i++)
		counts[d->results[i].status]++;
	code = counts[ST_FAIL] > 0 ? 1 : 0;
	if (d->json)
		report_json(d, stdout, counts, code);
	else
		report_text(d, stdout, counts, code);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, TOOL ": cannot write the report: %s\n", strerror(errno));
		return 1;
	}
	return code;
}
