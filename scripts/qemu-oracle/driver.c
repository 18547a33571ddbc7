// The kernel side of the kernel-parity test (docs/kernel-parity.md): runs in the guest
// (Debian's 6.1 kernel under qemu, scripts/qemu-oracle/oracle.sh), reads the step file
// (crates/bpfvfs/tests/data/kernel_parity_steps.txt, whose header describes the steps) and,
// for each `example NAME`, opens NAME.bpf.o with libbpf, loads it, attaches every program,
// runs the steps in a fresh directory of a tmpfs, and prints one line per step:
//
//   LINENO STEP TEXT => OUTCOME          OUTCOME: ok [value bytes] | errno name | skipped ...
//
// Lines starting with '@' are about the example as a whole: `@example NAME`, `@load ok|ERR`,
// `@core ...` (libbpf's CO-RE relocation messages), `@log ...` (the verifier's log of a
// refused load), `@attach PROG ok|ERR`, `@pin PATH ERR` (a pin that failed), `@end NAME`.
// Maps and links are pinned where bpfvfs's `prog loadall ... autoattach` pins them.
//
// After the examples, each PROBE object (core_probe.bpf.c) is only loaded, to show its CO-RE
// relocations: `@example NAME`, `@core ...`, `@load ok|ERR`, `@end NAME`.
//
// Usage: driver STEPS OBJDIR SCRATCH BPFFS [PROBE.bpf.o..]
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TOK 64
#define MAX_VAL 256

static const struct {
	int no;
	const char *name;
} errnames[] = {
	{EPERM, "EPERM"},   {ENOENT, "ENOENT"},     {ESRCH, "ESRCH"},     {EINTR, "EINTR"},
	{EIO, "EIO"},       {ENXIO, "ENXIO"},       {E2BIG, "E2BIG"},     {EBADF, "EBADF"},
	{EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"},     {EACCES, "EACCES"},   {EFAULT, "EFAULT"},
	{EBUSY, "EBUSY"},   {EEXIST, "EEXIST"},     {EXDEV, "EXDEV"},     {ENODEV, "ENODEV"},
	{ENOTDIR, "ENOTDIR"}, {EISDIR, "EISDIR"},   {EINVAL, "EINVAL"},   {ENFILE, "ENFILE"},
	{EMFILE, "EMFILE"}, {ETXTBSY, "ETXTBSY"},   {EFBIG, "EFBIG"},     {ENOSPC, "ENOSPC"},
	{EROFS, "EROFS"},   {EMLINK, "EMLINK"},     {ERANGE, "ERANGE"},   {ENAMETOOLONG, "ENAMETOOLONG"},
	{ENOSYS, "ENOSYS"}, {ENOTEMPTY, "ENOTEMPTY"}, {ELOOP, "ELOOP"},   {EOPNOTSUPP, "EOPNOTSUPP"},
	{524, "ENOTSUPP"},
};

static const char *errname(int e)
{
	static char buf[32];
	for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
		if (errnames[i].no == e)
			return errnames[i].name;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

// ---- libbpf messages: CO-RE relocations and the verifier's log, kept per example ----

static char *msgs;
static size_t msgs_len, msgs_cap;

static int on_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[8192];
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return 0;
	if (n >= (int)sizeof(line))
		n = sizeof(line) - 1;
	// Debug messages are many (BTF processing): keep only the CO-RE relocation ones.
	// (map relocations, "relo #N: insn #M against 'map'", are not CO-RE: left out too).
	if (level == LIBBPF_DEBUG && !strstr(line, "CO-RE") &&
	    !(strstr(line, "relo #") && !strstr(line, " against '")))
		return 0;
	if (msgs_len + n + 1 > msgs_cap) {
		msgs_cap = (msgs_len + n + 1) * 2;
		msgs = realloc(msgs, msgs_cap);
	}
	memcpy(msgs + msgs_len, line, n);
	msgs_len += n;
	msgs[msgs_len] = 0;
	return 0;
}

// Print the kept messages: relocation lines as `@core`, everything else as `@log`.
static void flush_msgs(void)
{
	char *save, *l;
	if (!msgs_len)
		return;
	for (l = strtok_r(msgs, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (strstr(l, "relo #") || strstr(l, "CO-RE"))
			printf("@core %s\n", l);
		else
			printf("@log %s\n", l);
	}
	msgs_len = 0;
}

// ---- steps ----

struct ctx {
	struct bpf_object *obj;
	const char *scratch; // this example's directory
	const char *bpffs;
	int loaded;
	int pinned; // maps pinned (and the link directory made)
};

static char out[4096]; // the outcome of the current step
static size_t out_len;

static void outf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out + out_len, sizeof(out) - out_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		out_len += (size_t)n < sizeof(out) - out_len ? (size_t)n : sizeof(out) - out_len - 1;
}

static void set_rc(int rc) // 0 or an errno
{
	out_len = 0;
	outf("%s", rc ? errname(rc) : "ok");
}

static void hex_bytes(const unsigned char *b, size_t n, const char *sep)
{
	for (size_t i = 0; i < n; i++)
		outf("%s%02x", i ? sep : "", b[i]);
}

// A path of the step file: relative to the example's directory, or `@bpffs[/...]`.
static const char *path_of(struct ctx *c, const char *p, char *buf, size_t len)
{
	if (strncmp(p, "@bpffs", 6) == 0) {
		snprintf(buf, len, "%s%s", c->bpffs, p + 6);
		return buf;
	}
	snprintf(buf, len, "%s/%s", c->scratch, p);
	return buf;
}

static int parse_hex(char **tok, int ntok, int *i, unsigned char *buf, int max)
{
	int n = 0;
	while (*i < ntok && isxdigit((unsigned char)tok[*i][0]) && strlen(tok[*i]) == 2 && n < max) {
		buf[n++] = (unsigned char)strtoul(tok[*i], NULL, 16);
		(*i)++;
	}
	return n;
}

static int errno_rc(int r)
{
	return r < 0 ? errno : 0;
}

static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	if (fd < 0)
		return errno;
	ssize_t n = write(fd, text, strlen(text));
	int e = n < 0 ? errno : 0;
	close(fd);
	return e;
}

static int step_file(struct ctx *c, char **t, int n)
{
	char p1[512], p2[512];
	const char *op = t[0];
	int fd;

	if (!strcmp(op, "create") && n == 2) {
		fd = open(path_of(c, t[1], p1, sizeof(p1)), O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (fd < 0)
			return errno;
		close(fd);
		return 0;
	}
	if (!strcmp(op, "write") && n == 3)
		return write_text(path_of(c, t[1], p1, sizeof(p1)), t[2]);
	if (!strcmp(op, "write_as") && n == 4) {
		uid_t uid = (uid_t)strtoul(t[1], NULL, 10);
		path_of(c, t[2], p1, sizeof(p1));
		pid_t pid = fork();
		if (pid < 0)
			return errno;
		if (pid == 0) {
			if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
				_exit(200);
			_exit(write_text(p1, t[3]));
		}
		int st;
		if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) == 200)
			return ECHILD;
		return WEXITSTATUS(st);
	}
	if (!strcmp(op, "read") && n == 2) {
		char buf[4096];
		ssize_t r;
		fd = open(path_of(c, t[1], p1, sizeof(p1)), O_RDONLY);
		if (fd < 0)
			return errno;
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			;
		int e = r < 0 ? errno : 0;
		close(fd);
		return e;
	}
	if ((!strcmp(op, "open") || !strcmp(op, "opendir")) && n == 2) {
		int flags = O_RDONLY | (op[4] == 'd' ? O_DIRECTORY : 0);
		fd = open(path_of(c, t[1], p1, sizeof(p1)), flags);
		if (fd < 0)
			return errno;
		close(fd);
		return 0;
	}
	if (!strcmp(op, "stat") && n == 2) {
		struct stat st;
		return errno_rc(stat(path_of(c, t[1], p1, sizeof(p1)), &st));
	}
	if (!strcmp(op, "mkdir") && n == 3)
		return errno_rc(mkdir(path_of(c, t[1], p1, sizeof(p1)), strtoul(t[2], NULL, 8)));
	if (!strcmp(op, "chmod") && n == 3)
		return errno_rc(chmod(path_of(c, t[1], p1, sizeof(p1)), strtoul(t[2], NULL, 8)));
	if (!strcmp(op, "rename") && n == 3)
		return errno_rc(rename(path_of(c, t[1], p1, sizeof(p1)), path_of(c, t[2], p2, sizeof(p2))));
	if (!strcmp(op, "link") && n == 3)
		return errno_rc(link(path_of(c, t[1], p1, sizeof(p1)), path_of(c, t[2], p2, sizeof(p2))));
	if (!strcmp(op, "unlink") && n == 2)
		return errno_rc(unlink(path_of(c, t[1], p1, sizeof(p1))));
	return -1;
}

// The key of a map step: `file F` (an fd of F, opened O_RDONLY, in *fd) or `key HEX..`.
static int map_key(struct ctx *c, char **t, int n, int *i, unsigned char *key, int *klen, int *fd)
{
	char p[512];
	*fd = -1;
	if (*i + 1 < n && !strcmp(t[*i], "file")) {
		*fd = open(path_of(c, t[*i + 1], p, sizeof(p)), O_RDONLY);
		if (*fd < 0)
			return errno;
		memcpy(key, fd, sizeof(int));
		*klen = sizeof(int);
		*i += 2;
		return 0;
	}
	if (*i < n && !strcmp(t[*i], "key")) {
		(*i)++;
		*klen = parse_hex(t, n, i, key, MAX_VAL);
		return 0;
	}
	return -1;
}

static int map_fd(struct ctx *c, const char *name, struct bpf_map **m)
{
	*m = bpf_object__find_map_by_name(c->obj, name);
	return *m ? bpf_map__fd(*m) : -1;
}

static int cmp_keys(const void *a, const void *b, void *len)
{
	return memcmp(a, b, *(size_t *)len);
}

// contents MAP [F..]
static void contents(struct ctx *c, struct bpf_map *m, int mfd, char **t, int n)
{
	unsigned char val[MAX_VAL];
	size_t vs = bpf_map__value_size(m), ks = bpf_map__key_size(m);

	set_rc(0);
	if (bpf_map__type(m) == BPF_MAP_TYPE_INODE_STORAGE) {
		for (int i = 2; i < n; i++) {
			char p[512];
			int fd = open(path_of(c, t[i], p, sizeof(p)), O_RDONLY);
			outf(" %s=", t[i]);
			if (fd < 0) {
				outf("%s", errname(errno));
				continue;
			}
			if (bpf_map_lookup_elem(mfd, &fd, val))
				outf("%s", errname(errno));
			else
				hex_bytes(val, vs, "");
			close(fd);
		}
		return;
	}
	size_t cap = 64, cnt = 0;
	unsigned char *keys = malloc(cap * ks), *prev = NULL;
	while (!bpf_map_get_next_key(mfd, prev, keys + cnt * ks)) {
		prev = keys + cnt * ks;
		if (++cnt == cap) {
			size_t off = prev - keys;
			keys = realloc(keys, (cap *= 2) * ks);
			prev = keys + off;
		}
	}
	if (errno != ENOENT) {
		set_rc(errno);
		free(keys);
		return;
	}
	qsort_r(keys, cnt, ks, cmp_keys, &ks);
	for (size_t i = 0; i < cnt; i++) {
		outf(" ");
		hex_bytes(keys + i * ks, ks, "");
		outf("=");
		if (bpf_map_lookup_elem(mfd, keys + i * ks, val))
			outf("%s", errname(errno));
		else
			hex_bytes(val, vs, "");
	}
	free(keys);
}

static int step_map(struct ctx *c, char **t, int n)
{
	const char *op = t[0];
	struct bpf_map *m;
	unsigned char key[MAX_VAL], val[MAX_VAL];
	int klen = 0, vlen = 0, kfd = -1, i = 2, rc;

	if (strcmp(op, "update") && strcmp(op, "lookup") && strcmp(op, "delete") &&
	    strcmp(op, "contents"))
		return -1;
	if (n < 2)
		return -1;
	int mfd = map_fd(c, t[1], &m);
	if (mfd < 0) {
		set_rc(ENOENT);
		return 0;
	}
	if (!strcmp(op, "contents")) {
		contents(c, m, mfd, t, n);
		return 0;
	}
	rc = map_key(c, t, n, &i, key, &klen, &kfd);
	if (rc) {
		if (rc < 0)
			return -1;
		set_rc(rc);
		return 0;
	}
	if (!strcmp(op, "update")) {
		__u64 flags = BPF_ANY;
		if (i >= n || strcmp(t[i], "value"))
			return -1;
		i++;
		vlen = parse_hex(t, n, &i, val, MAX_VAL);
		(void)vlen;
		if (i < n) {
			if (!strcmp(t[i], "noexist"))
				flags = BPF_NOEXIST;
			else if (!strcmp(t[i], "exist"))
				flags = BPF_EXIST;
			else if (strcmp(t[i], "any"))
				return -1;
			i++;
		}
		rc = bpf_map_update_elem(mfd, key, val, flags) ? errno : 0;
		set_rc(rc);
	} else if (!strcmp(op, "lookup")) {
		rc = bpf_map_lookup_elem(mfd, key, val) ? errno : 0;
		set_rc(rc);
		if (!rc) {
			outf(" ");
			hex_bytes(val, bpf_map__value_size(m), " ");
		}
	} else {
		rc = bpf_map_delete_elem(mfd, key) ? errno : 0;
		set_rc(rc);
	}
	if (kfd >= 0)
		close(kfd);
	return i == n ? 0 : -1;
}

// ---- examples ----

static struct bpf_link *links[32];
static int nlinks;

static void end_example(struct ctx *c, const char *name)
{
	char path[512];

	// Unpinned, so that the programs detach here and do not act on the next examples.
	while (nlinks) {
		struct bpf_link *l = links[--nlinks];
		if (bpf_link__pin_path(l))
			bpf_link__unpin(l);
		bpf_link__destroy(l);
	}
	if (c->obj && c->pinned) {
		snprintf(path, sizeof(path), "%s/%s_maps", c->bpffs, name);
		bpf_object__unpin_maps(c->obj, path);
		rmdir(path);
		snprintf(path, sizeof(path), "%s/%s", c->bpffs, name);
		rmdir(path);
	}
	bpf_object__close(c->obj);
	c->obj = NULL;
	c->pinned = 0;
	flush_msgs();
	printf("@end %s\n", name);
	fflush(stdout);
}

static void start_example(struct ctx *c, const char *name, const char *objdir,
			  const char *scratch_root, char *dir, size_t dirlen)
{
	char path[512];
	struct bpf_program *p;
	int err;

	printf("@example %s\n", name);
	snprintf(dir, dirlen, "%s/%s", scratch_root, name);
	if (mkdir(dir, 0755) && errno != EEXIST)
		printf("@log mkdir %s: %s\n", dir, strerror(errno));
	c->scratch = dir;
	c->loaded = 0;
	snprintf(path, sizeof(path), "%s/%s.bpf.o", objdir, name);
	c->obj = bpf_object__open_file(path, NULL);
	if (!c->obj) {
		err = errno;
		flush_msgs();
		printf("@open %s\n", errname(err));
		return;
	}
	err = bpf_object__load(c->obj);
	flush_msgs();
	if (err) {
		printf("@load %s\n", errname(-err));
		return;
	}
	printf("@load ok\n");
	// Pinned where `bpfvfs prog loadall OBJ /sys/fs/bpf/NAME pinmaps /sys/fs/bpf/NAME_maps
	// autoattach` pins them: maps by name under NAME_maps, links by program name under NAME.
	snprintf(path, sizeof(path), "%s/%s_maps", c->bpffs, name);
	err = bpf_object__pin_maps(c->obj, path);
	if (err)
		printf("@pin %s %s\n", path, errname(-err));
	c->pinned = 1;
	snprintf(path, sizeof(path), "%s/%s", c->bpffs, name);
	if (mkdir(path, 0700))
		printf("@pin %s %s\n", path, errname(errno));
	bpf_object__for_each_program(p, c->obj) {
		struct bpf_link *l = bpf_program__attach(p);
		err = l ? 0 : errno;
		flush_msgs();
		printf("@attach %s %s\n", bpf_program__name(p), err ? errname(err) : "ok");
		if (err)
			return;
		links[nlinks++] = l;
		snprintf(path, sizeof(path), "%s/%s/%s", c->bpffs, name, bpf_program__name(p));
		err = bpf_link__pin(l, path);
		if (err)
			printf("@pin %s %s\n", path, errname(-err));
	}
	c->loaded = 1;
	fflush(stdout);
}

static int tokenize(char *line, char **tok)
{
	int n = 0;
	char *save, *s;
	for (s = strtok_r(line, " \t\r\n", &save); s && n < MAX_TOK; s = strtok_r(NULL, " \t\r\n", &save)) {
		if (s[0] == '#')
			break;
		tok[n++] = s;
	}
	return n;
}

int main(int argc, char **argv)
{
	char line[1024], text[1024], dir[512], *tok[MAX_TOK], name[128] = "";
	struct ctx c = {0};
	int lineno = 0, n;

	if (argc < 5) {
		fprintf(stderr, "usage: %s STEPS OBJDIR SCRATCH BPFFS [PROBE.bpf.o..]\n", argv[0]);
		return 2;
	}
	FILE *f = fopen(argv[1], "r");
	if (!f) {
		perror(argv[1]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	umask(022);
	libbpf_set_print(on_libbpf_print);
	c.bpffs = argv[4];

	while (fgets(line, sizeof(line), f)) {
		lineno++;
		snprintf(text, sizeof(text), "%s", line);
		text[strcspn(text, "#\r\n")] = 0;
		for (n = (int)strlen(text); n > 0 && isspace((unsigned char)text[n - 1]); n--)
			text[n - 1] = 0;
		n = tokenize(line, tok);
		if (!n)
			continue;
		if (!strcmp(tok[0], "example") && n == 2) {
			if (name[0])
				end_example(&c, name);
			snprintf(name, sizeof(name), "%s", tok[1]);
			start_example(&c, name, argv[2], argv[3], dir, sizeof(dir));
			continue;
		}
		if (!strcmp(tok[0], "mask"))
			continue;
		if (!name[0]) {
			printf("%d %s => bad step: before any example\n", lineno, text);
			continue;
		}
		if (!c.loaded) {
			printf("%d %s => skipped (not loaded)\n", lineno, text);
			continue;
		}
		int rc = step_file(&c, tok, n);
		if (rc >= 0)
			set_rc(rc);
		else if (step_map(&c, tok, n) < 0) {
			printf("%d %s => bad step\n", lineno, text);
			continue;
		}
		flush_msgs();
		printf("%d %s => %s\n", lineno, text, out);
	}
	if (name[0])
		end_example(&c, name);
	// CO-RE probes: loaded (relocated and verified), not attached, no steps.
	for (int i = 5; i < argc; i++) {
		const char *b = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(b, "."), b);
		printf("@example %s\n", name);
		c.obj = bpf_object__open_file(argv[i], NULL);
		if (!c.obj) {
			int err = errno;
			flush_msgs();
			printf("@open %s\n", errname(err));
		} else {
			int err = bpf_object__load(c.obj);
			flush_msgs();
			printf("@load %s\n", err ? errname(-err) : "ok");
			bpf_object__close(c.obj);
			c.obj = NULL;
		}
		printf("@end %s\n", name);
	}
	printf("@done\n");
	return 0;
}
