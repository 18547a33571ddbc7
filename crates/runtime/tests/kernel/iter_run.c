// Runs an iterator program in the host kernel with libbpf and prints what reading its link
// shows, for tests/iter_kernel.rs to compare with bpfvfs's output byte for byte.
//
//   iter_run OBJ PROG map MAP V0 V1 ...    fill array MAP (__u32 -> __u64) with V0.. at keys
//                                          0.., then iterate its elements
//   iter_run OBJ PROG plain DATA_U32       set the first 4 bytes of the object's .data to
//                                          DATA_U32, iterate (no link parameters), and
//                                          print "bytes N" and the read's errno, not the
//                                          output
//   iter_run OBJ PROG cgroup DIR ORDER [DATA_U64]
//                                          iterate cgroups from directory DIR in ORDER
//                                          (the first 8 bytes of .data set if given)
//                                          (enum bpf_cgroup_iter_order: 1 self_only,
//                                          2 descendants_pre, 3 descendants_post,
//                                          4 ancestors_up)
// Exit status 2 when the kernel refuses the object or the link (the test skips with the
// message on stderr).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set the first `n` bytes of the object's .data map to `src`. */
static int set_data(struct bpf_object *obj, const void *src, size_t n)
{
	struct bpf_map *data = NULL, *m;
	bpf_object__for_each_map(m, obj) {
		const char *name = bpf_map__name(m);
		size_t l = strlen(name);
		if (l >= 5 && !strcmp(name + l - 5, ".data"))
			data = m;
	}
	if (!data) {
		fprintf(stderr, "no .data map\n");
		return -1;
	}
	size_t vs = bpf_map__value_size(data);
	char *v = calloc(1, vs < n ? n : vs);
	__u32 k = 0;
	if (!v || bpf_map_lookup_elem(bpf_map__fd(data), &k, v)) {
		fprintf(stderr, "lookup .data: %s\n", strerror(errno));
		return -1;
	}
	memcpy(v, src, n);
	if (bpf_map_update_elem(bpf_map__fd(data), &k, v, 0)) {
		fprintf(stderr, "update .data: %s\n", strerror(errno));
		return -1;
	}
	free(v);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr,
			"usage: iter_run OBJ PROG map MAP V... | plain DATA_U32 | cgroup DIR ORDER\n");
		return 1;
	}
	int summary = 0;
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	struct bpf_program *p;
	if (!obj) {
		fprintf(stderr, "cannot open %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	/* Only PROG is loaded (others may be bpfvfs-only view programs). */
	bpf_object__for_each_program(p, obj)
		bpf_program__set_autoload(p, !strcmp(bpf_program__name(p), argv[2]));
	if (bpf_object__load(obj)) {
		fprintf(stderr, "cannot load %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, argv[2]);
	if (!prog) {
		fprintf(stderr, "no program %s\n", argv[2]);
		return 1;
	}
	union bpf_iter_link_info linfo;
	memset(&linfo, 0, sizeof(linfo));
	if (!strcmp(argv[3], "map")) {
		struct bpf_map *map = bpf_object__find_map_by_name(obj, argv[4]);
		if (!map) {
			fprintf(stderr, "no map %s\n", argv[4]);
			return 1;
		}
		int fd = bpf_map__fd(map);
		for (int i = 5; i < argc; i++) {
			__u32 k = i - 5;
			__u64 v = strtoull(argv[i], NULL, 0);
			if (bpf_map_update_elem(fd, &k, &v, 0)) {
				fprintf(stderr, "update %u: %s\n", k, strerror(errno));
				return 1;
			}
		}
		linfo.map.map_fd = fd;
	} else if (!strcmp(argv[3], "plain")) {
		__u32 x = strtoul(argv[4], NULL, 0);
		if (set_data(obj, &x, sizeof(x)))
			return 1;
		summary = 1;
	} else if (!strcmp(argv[3], "cgroup") && (argc == 6 || argc == 7)) {
		if (argc == 7) {
			__u64 x = strtoull(argv[6], NULL, 0);
			if (set_data(obj, &x, sizeof(x)))
				return 1;
		}
		int fd = open(argv[4], O_RDONLY | O_DIRECTORY);
		if (fd < 0) {
			fprintf(stderr, "open %s: %s\n", argv[4], strerror(errno));
			return 1;
		}
		linfo.cgroup.cgroup_fd = fd;
		linfo.cgroup.order = atoi(argv[5]);
	} else {
		fprintf(stderr, "unknown target %s\n", argv[3]);
		return 1;
	}
	LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &linfo,
		    .link_info_len = sizeof(linfo));
	struct bpf_link *link = bpf_program__attach_iter(prog, summary ? NULL : &opts);
	if (!link) {
		fprintf(stderr, "cannot create the iterator link: %s\n", strerror(errno));
		return 2;
	}
	int it = bpf_iter_create(bpf_link__fd(link));
	if (it < 0) {
		fprintf(stderr, "bpf_iter_create: %s\n", strerror(errno));
		return 2;
	}
	/* cat's read size. */
	static char buf[128 * 1024];
	ssize_t n;
	size_t total = 0;
	while ((n = read(it, buf, sizeof(buf))) > 0) {
		total += n;
		if (!summary)
			fwrite(buf, 1, n, stdout);
	}
	if (summary)
		printf("bytes %zu\n", total);
	if (n < 0)
		printf("read error %d\n", errno);
	return 0;
}
