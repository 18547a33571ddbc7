// Puts a BPF object through libbpf's own open and relocation preparation, to show it is a
// valid kernel object (crates/runtime/tests/libbpf_valid.rs builds and runs this).
//
//   libbpf_check gen OBJ          open, then bpf_object__gen_loader + bpf_object__load:
//                                 libbpf does all its user-space preparation (ELF, BTF,
//                                 maps, data/subprogram relocations, program types,
//                                 CO-RE records) and writes a loader program instead of
//                                 loading anything into the kernel.
//   libbpf_check gen-strict OBJ   the same without the "view/" handler below: libbpf
//                                 refuses a program whose section it cannot type.
//   libbpf_check core OBJ [BTF]   open (BTF: CO-RE target instead of the running kernel's),
//                                 then bpf_object__load in the ordinary mode, which
//                                 resolves every CO-RE relocation in user space before the
//                                 kernel sees a program; the relocation outcomes are read
//                                 from libbpf's debug log. The kernel's verdict on the
//                                 programs afterwards is printed, not judged.
//
// Output, one fact a line:
//   prog NAME SECTION TYPE        TYPE "unknown" when libbpf has no program type for SECTION
//   gen ok|fail ERRNO             (gen)
//   relo PROG #N ok|poisoned: SPEC  (core) per CO-RE relocation libbpf processed (a
//                                 relocation may patch more than one thing: one line each;
//                                 poisoned: no target field, the instruction replaced by
//                                 an invalid call the verifier refuses if reached)
//   load ok|fail ERRNO            (core)
//   pin MAP PATH                  a map pinned by name; the check does not pin it
//   warn TEXT                     libbpf's warnings, one line each
// Programs of sections libbpf does not know (bpfvfs's SEC("view/...")) are loaded as what
// they are to a kernel, iterator-shaped tracing programs, through a handler registered for
// "view/" (what a user-space loader targeting bpfvfs with libbpf would do).
// Exit status: 0 when the step succeeded, 1 when it failed, 2 on bad usage or open failure.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int core_mode;

// libbpf's messages: warnings are reported; in core mode the CO-RE lines of the debug log
// are turned into "relo" facts.
static int on_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	static char spec[1024];
	char buf[1024], prog[256];
	char *line = buf;
	int relo, insn, at = -1;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = 0;
	if (!strncmp(line, "libbpf: ", 8))
		line += 8;
	if (core_mode && sscanf(line, "prog '%255[^']': relo #%d: patched insn #%d", prog, &relo,
				&insn) == 3)
		printf("relo %s #%d ok\n", prog, relo);
	else if (core_mode && (sscanf(line, "prog '%255[^']': relo #%d: substituting insn #%d", prog,
				      &relo, &insn) == 3 ||
			       sscanf(line, "prog '%255[^']': relo #%d: poisoning insn #%d", prog,
				      &relo, &insn) == 3))
		printf("relo %s #%d poisoned: %s\n", prog, relo, spec);
	else if (core_mode && sscanf(line, "prog '%255[^']': relo #%d: %n", prog, &relo, &at) == 2 &&
		 at > 0 && line[at] == '<')
		// The relocation's local spec ("<byte_off> [16] struct task_struct.cgroups ..."),
		// named when the relocation is poisoned.
		snprintf(spec, sizeof(spec), "%s", line + at);
	else if (level == LIBBPF_WARN)
		printf("warn %s\n", line);
	return 0;
}

int main(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	LIBBPF_OPTS(libbpf_prog_handler_opts, ho);
	struct bpf_program *p;
	struct bpf_map *m;
	struct bpf_object *obj;
	int err;

	int strict;

	if (argc < 3 ||
	    (strcmp(argv[1], "gen") && strcmp(argv[1], "gen-strict") && strcmp(argv[1], "core"))) {
		fprintf(stderr, "usage: %s gen|gen-strict|core OBJ [BTF]\n", argv[0]);
		return 2;
	}
	core_mode = !strcmp(argv[1], "core");
	strict = !strcmp(argv[1], "gen-strict");
	setvbuf(stdout, NULL, _IOLBF, 0);
	libbpf_set_print(on_print);
	if (!strict &&
	    libbpf_register_prog_handler("view/", BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, &ho) < 0)
		fprintf(stderr, "cannot register the view/ handler\n");
	if (core_mode && argc > 3)
		oo.btf_custom_path = argv[3];
	obj = bpf_object__open_file(argv[2], &oo);
	if (!obj) {
		printf("open fail %d\n", -errno);
		return 2;
	}
	bpf_object__for_each_program(p, obj) {
		const char *t = libbpf_bpf_prog_type_str(bpf_program__type(p));
		if (bpf_program__type(p) == BPF_PROG_TYPE_UNSPEC || !t)
			t = "unknown";
		printf("prog %s %s %s\n", bpf_program__name(p), bpf_program__section_name(p), t);
	}
	// Pinned maps (LIBBPF_PIN_BY_NAME): gen_loader mode cannot pin (maps have no
	// descriptors there; light skeletons do not pin) and an ordinary load would leave pins
	// in the host's bpffs, so the check unpins them; reported, not judged.
	bpf_object__for_each_map(m, obj) {
		if (bpf_map__pin_path(m)) {
			printf("pin %s %s\n", bpf_map__name(m), bpf_map__pin_path(m));
			bpf_map__set_pin_path(m, NULL);
		}
	}
	if (!core_mode) {
		LIBBPF_OPTS(gen_loader_opts, go);
		err = bpf_object__gen_loader(obj, &go);
		if (!err)
			err = bpf_object__load(obj);
		if (err)
			printf("gen fail %d\n", err);
		else
			printf("gen ok\n");
	} else {
		err = bpf_object__load(obj);
		if (err)
			printf("load fail %d\n", err);
		else
			printf("load ok\n");
		err = 0;
	}
	bpf_object__close(obj);
	return err ? 1 : 0;
}
