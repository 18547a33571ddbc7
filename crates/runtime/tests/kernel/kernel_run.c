// Runs a script of test runs against the host kernel with libbpf, printing results in the
// same line format the runtime's side of tests/kernel_examples.rs prints, so the two can be
// compared line for line.
//
//   kernel_run OBJ < SCRIPT
//   SCRIPT lines:  run PROG CTXHEX      -> "run PROG retval R ctx HEX"
//                  pkt PROG DATAHEX REPEAT -> "pkt PROG retval R data HEX" (data_out)
//                  dump MAP             -> "dump MAP KEYHEX VALUEHEX" per element, sorted
//                  ring MAP             -> "ring MAP HEX" per record, in order
// Exit status 2 when the object cannot be loaded (the test then skips with the message).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static size_t unhex(const char *s, unsigned char *out, size_t max)
{
	size_t n = 0;
	while (s[0] && s[1] && n < max) {
		out[n++] = (unsigned char)(hexval(s[0]) << 4 | hexval(s[1]));
		s += 2;
	}
	return n;
}

static void puthex(const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
}

struct line {
	char *text;
};

static int cmp_lines(const void *a, const void *b)
{
	return strcmp(((const struct line *)a)->text, ((const struct line *)b)->text);
}

static const char *ring_name;
static int on_record(void *ctx, void *data, size_t size)
{
	(void)ctx;
	printf("ring %s ", ring_name);
	puthex(data, size);
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s OBJ < SCRIPT\n", argv[0]);
		return 1;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "load %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	char cmd[16], name[128], hex[8192];
	static unsigned char buf[4096];
	while (scanf("%15s %127s", cmd, name) == 2) {
		if (!strcmp(cmd, "run")) {
			if (scanf("%8191s", hex) != 1)
				return 1;
			size_t n = unhex(hex, buf, sizeof(buf));
			struct bpf_program *p = bpf_object__find_program_by_name(obj, name);
			if (!p)
				return 1;
			LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = buf, .ctx_size_in = n);
			int err = bpf_prog_test_run_opts(bpf_program__fd(p), &o);
			if (err) {
				printf("run %s error %d\n", name, -errno);
				continue;
			}
			printf("run %s retval %d ctx ", name, (int)o.retval);
			puthex(buf, n);
			printf("\n");
		} else if (!strcmp(cmd, "pkt")) {
			unsigned int repeat;
			if (scanf("%8191s %u", hex, &repeat) != 2)
				return 1;
			size_t n = unhex(hex, buf, sizeof(buf));
			static unsigned char out[8192];
			struct bpf_program *p = bpf_object__find_program_by_name(obj, name);
			if (!p)
				return 1;
			LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = buf, .data_size_in = n,
				    .data_out = out, .data_size_out = sizeof(out), .repeat = repeat);
			int err = bpf_prog_test_run_opts(bpf_program__fd(p), &o);
			if (err) {
				printf("pkt %s error %d\n", name, -errno);
				continue;
			}
			printf("pkt %s retval %d data ", name, (int)o.retval);
			puthex(out, o.data_size_out);
			printf("\n");
		} else if (!strcmp(cmd, "dump")) {
			struct bpf_map *m = bpf_object__find_map_by_name(obj, name);
			if (!m)
				return 1;
			int fd = bpf_map__fd(m);
			size_t ks = bpf_map__key_size(m), vs = bpf_map__value_size(m);
			unsigned char key[512], next[512], val[4096];
			struct line lines[4096];
			size_t nl = 0;
			void *prev = NULL;
			while (nl < 4096 && !bpf_map_get_next_key(fd, prev, next)) {
				memcpy(key, next, ks);
				prev = key;
				if (bpf_map_lookup_elem(fd, key, val))
					continue;
				char *t = malloc(2 * (ks + vs) + 2);
				char *q = t;
				for (size_t i = 0; i < ks; i++)
					q += sprintf(q, "%02x", key[i]);
				*q++ = ' ';
				for (size_t i = 0; i < vs; i++)
					q += sprintf(q, "%02x", val[i]);
				lines[nl++].text = t;
			}
			qsort(lines, nl, sizeof(lines[0]), cmp_lines);
			for (size_t i = 0; i < nl; i++)
				printf("dump %s %s\n", name, lines[i].text);
		} else if (!strcmp(cmd, "ring")) {
			struct bpf_map *m = bpf_object__find_map_by_name(obj, name);
			if (!m)
				return 1;
			ring_name = name;
			struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(m), on_record, NULL, NULL);
			if (!rb)
				return 1;
			ring_buffer__consume(rb);
			ring_buffer__free(rb);
		} else {
			return 1;
		}
		fflush(stdout);
	}
	bpf_object__close(obj);
	return 0;
}
