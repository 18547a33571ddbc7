// Runs a bpf_map_elem iterator program in the host kernel with libbpf, over an array map
// whose values are given in hex, and prints what reading the iterator shows, for
// tests/seq_printf_btf.rs to compare with bpfvfs's output byte for byte.
//
//   btf_run OBJ PROG MAP HEX0 HEX1 ...    value of key i = the bytes HEXi (value_size bytes;
//                                         missing bytes are zero)
// Exit status 2 when the kernel refuses the object or the link (the test skips with the
// message on stderr).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: btf_run OBJ PROG MAP HEX...\n");
		return 1;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	struct bpf_program *p;
	if (!obj) {
		fprintf(stderr, "cannot open %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	bpf_object__for_each_program(p, obj)
		bpf_program__set_autoload(p, !strcmp(bpf_program__name(p), argv[2]));
	if (bpf_object__load(obj)) {
		fprintf(stderr, "cannot load %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, argv[2]);
	struct bpf_map *map = bpf_object__find_map_by_name(obj, argv[3]);
	if (!prog || !map) {
		fprintf(stderr, "no program %s or map %s\n", argv[2], argv[3]);
		return 1;
	}
	size_t vs = bpf_map__value_size(map);
	unsigned char *v = malloc(vs);
	for (int i = 4; i < argc; i++) {
		const char *h = argv[i];
		size_t n = strlen(h) / 2;
		memset(v, 0, vs);
		if (n > vs) {
			fprintf(stderr, "value %d longer than %zu bytes\n", i - 4, vs);
			return 1;
		}
		for (size_t j = 0; j < n; j++) {
			int hi = hexval(h[2 * j]), lo = hexval(h[2 * j + 1]);
			if (hi < 0 || lo < 0) {
				fprintf(stderr, "bad hex %s\n", h);
				return 1;
			}
			v[j] = hi << 4 | lo;
		}
		__u32 k = i - 4;
		if (bpf_map_update_elem(bpf_map__fd(map), &k, v, 0)) {
			fprintf(stderr, "update %u: %s\n", k, strerror(errno));
			return 1;
		}
	}
	union bpf_iter_link_info linfo;
	memset(&linfo, 0, sizeof(linfo));
	linfo.map.map_fd = bpf_map__fd(map);
	LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &linfo,
		    .link_info_len = sizeof(linfo));
	struct bpf_link *link = bpf_program__attach_iter(prog, &opts);
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
	while ((n = read(it, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, n, stdout);
	if (n < 0)
		printf("read error %d\n", errno);
	return 0;
}
