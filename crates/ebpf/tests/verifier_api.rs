//! API-level tests of the verifier: the result's fields, the log's shape, line info, the
//! program-type and helper tables' extension points.

mod verifier_common;

use bpfvfs_ebpf::verifier::{
    verify, ArgKind, CtxField, CtxLayout, HelperProto, HelperProtos, MapInfo, MapType,
    ProgTypeSpec, RetKind, VerifierEnv,
};
use verifier_common::parse_program;

fn prog(text: &str) -> verifier_common::CorpusProgram {
    parse_program("t", text).unwrap()
}

#[test]
fn success_info_and_log() {
    let p = prog(
        "# type: socket_filter\n# expect: accept\nstdw [%r10-24], 1\nmov %r1, 1\ncall local f\nexit\nf:\nstdw [%r10-8], 2\nmov %r0, %r1\nexit\n",
    );
    let ty = ProgTypeSpec::socket_filter();
    let protos = HelperProtos::standard();
    let env = VerifierEnv::new(&ty, &[], &protos);
    let info = verify(&p.insns, &env, None).unwrap();
    assert_eq!(info.subprog_starts, vec![0, 4]);
    assert_eq!(info.stack_depth, vec![24, 8]);
    assert_eq!(info.max_combined_stack, 64);
    assert!(info.processed_insns >= 7);
    assert!(info.log.contains("processed "), "{}", info.log);
    assert!(
        info.log
            .contains("insns (limit 1000000) max_states_per_insn"),
        "{}",
        info.log
    );
    assert!(
        info.log.contains("0: (7a) *(u64 *)(r10 -24) = 1"),
        "{}",
        info.log
    );
}

#[test]
fn rejection_log_is_kernel_shaped_with_line_info() {
    let p = prog("# type: socket_filter\n# expect: reject\nmov %r0, 1\nmov %r1, %r10\nldxdw %r0, [%r1-8]\nexit\n");
    let ty = ProgTypeSpec::socket_filter();
    let protos = HelperProtos::standard();
    let env = VerifierEnv::new(&ty, &[], &protos);
    let lines = |i: usize| Some(format!("x = y{i}; @ prog.c:{}", 10 + i));
    let e = verify(&p.insns, &env, Some(&lines)).unwrap_err();
    assert_eq!(e.insn_idx, 2);
    assert_eq!(e.line.as_deref(), Some("x = y2; @ prog.c:12"));
    assert_eq!(e.message, "invalid read from stack off -8+0 size 8");
    assert!(e.log.starts_with("0: R1=ctx() R10=fp0\n"), "{}", e.log);
    assert!(
        e.log.contains("; x = y0; @ prog.c:10\n0: (b7) r0 = 1"),
        "{}",
        e.log
    );
    assert!(e.log.contains("1: (bf) r1 = r10"), "{}", e.log);
    assert!(e.log.contains("; R1_w=fp0"), "{}", e.log);
    assert!(
        e.log
            .contains("2: (79) r0 = *(u64 *)(r1 -8)\ninvalid read from stack off -8+0 size 8\n"),
        "{}",
        e.log
    );
    assert!(e.to_string().contains("insn 2 (x = y2; @ prog.c:12)"));
}

#[test]
fn failing_path_only_in_log() {
    // The error is on the taken branch; the fall-through path's instructions are not in the log.
    let p = prog(
        "# type: socket_filter\n# expect: reject\nldxw %r1, [%r1+0]\njgt %r1, 5, bad\nmov %r0, 0\nexit\nbad:\nmov %r0, %r3\nexit\n",
    );
    let ty = ProgTypeSpec::socket_filter();
    let protos = HelperProtos::standard();
    let env = VerifierEnv::new(&ty, &[], &protos);
    let e = verify(&p.insns, &env, None).unwrap_err();
    assert_eq!(e.message, "R3 !read_ok");
    assert!(e.log.contains("from 1 to 4: "), "{}", e.log);
    assert!(!e.log.contains("3: (95) exit"), "{}", e.log);
}

#[test]
fn custom_helper_and_program_type() {
    // A caller-defined helper 300 taking (ctx, mem, size) and a type whose context is a
    // 16-byte struct with one writable field.
    let mut protos = HelperProtos::standard();
    protos.register(
        300,
        HelperProto::new(
            "bpf_custom",
            RetKind::Integer(Some((0, 1))),
            &[
                ArgKind::Ctx,
                ArgKind::Mem {
                    read: true,
                    write: false,
                    nullable: false,
                },
                ArgKind::ConstSize,
            ],
        ),
    );
    let mut ty = ProgTypeSpec::syscall();
    ty.name = "custom".into();
    ty.ctx = CtxLayout::Fields {
        size: 16,
        fields: vec![
            CtxField::scalar("a", 0, 8),
            CtxField::scalar("b", 8, 8).writable(),
        ],
    };
    ty.helpers.add(&[300]);
    ty.ret_range = Some((0, 1));
    let p = prog(
        "# type: syscall\n# expect: accept\nmov %r6, %r1\nldxdw %r2, [%r1+0]\nstxdw [%r6+8], %r2\nstdw [%r10-8], 0\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\ncall 300\nexit\n",
    );
    let env = VerifierEnv::new(&ty, &[], &protos);
    verify(&p.insns, &env, None).unwrap();
    // Writing the read-only field is rejected.
    let p = prog(
        "# type: syscall\n# expect: reject\nmov %r2, 1\nstxdw [%r1+0], %r2\nmov %r0, 0\nexit\n",
    );
    let e = verify(&p.insns, &env, None).unwrap_err();
    assert_eq!(e.message, "invalid bpf_context access off=0 size=8");
    // Removing the helper from the type rejects the call.
    ty.helpers = bpfvfs_ebpf::verifier::HelperSet::only(&[1]);
    let env = VerifierEnv::new(&ty, &[], &protos);
    let p = prog("# type: syscall\n# expect: reject\nmov %r2, 0\nmov %r3, 0\ncall 300\nexit\n");
    let e = verify(&p.insns, &env, None).unwrap_err();
    assert!(
        e.message
            .contains("program of this type cannot use helper bpf_custom#300"),
        "{}",
        e.message
    );
}

#[test]
fn syscall_reports_ctx_size_and_budget_is_configurable() {
    let p = prog("# type: syscall\n# expect: accept\nldxw %r0, [%r1+100]\nexit\n");
    let ty = ProgTypeSpec::syscall();
    let protos = HelperProtos::standard();
    let maps = [MapInfo::new(3, MapType::ARRAY, 4, 8, 1)];
    let mut env = VerifierEnv::new(&ty, &maps, &protos);
    assert_eq!(verify(&p.insns, &env, None).unwrap().max_ctx_offset, 104);
    let p = prog("# type: syscall\n# expect: reject\nmov %r1, 0\nl:\nadd %r1, 1\njlt %r1, 100, l\nmov %r0, 0\nexit\n");
    env.max_insns = 50;
    let e = verify(&p.insns, &env, None).unwrap_err();
    assert_eq!(e.message, "BPF program is too large. Processed 51 insn");
    env.max_insns = 1_000_000;
    env.log = false;
    let info = verify(&p.insns, &env, None).unwrap();
    assert!(info.log.is_empty() && info.processed_insns > 200);
}

#[test]
fn random_input_never_panics() {
    // Random slots biased towards valid opcodes: the verifier must answer, never panic.
    let codes: [u8; 40] = [
        0x07, 0x0f, 0x17, 0x1f, 0x27, 0x37, 0x3f, 0x47, 0x57, 0x67, 0x77, 0x87, 0x97, 0xa7, 0xb7,
        0xbf, 0xc7, 0x04, 0xb4, 0xbc, 0x05, 0x15, 0x1d, 0x25, 0x2d, 0x55, 0x65, 0xa5, 0x16, 0x85,
        0x95, 0x61, 0x79, 0x71, 0x62, 0x7a, 0x7b, 0x63, 0xdb, 0x18,
    ];
    let ty = ProgTypeSpec::socket_filter();
    let protos = HelperProtos::standard();
    let maps = [MapInfo::new(0, MapType::ARRAY, 4, 8, 4)];
    let mut env = VerifierEnv::new(&ty, &maps, &protos);
    env.max_insns = 20_000;
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut ok, mut rej) = (0, 0);
    for _ in 0..3000 {
        let n = 1 + next() % 24;
        let mut v = Vec::new();
        for _ in 0..n {
            let r = next();
            let code = codes[(r % codes.len() as u64) as usize];
            let dst = ((r >> 8) % 11) as u8;
            let src = ((r >> 16) % 11) as u8;
            let off = ((r >> 24) % 40) as i16 - 20;
            let imm = ((r >> 32) % 64) as i32 - 8;
            v.push(bpfvfs_ebpf::insn::Insn::new(
                code,
                dst,
                if code == 0x85 {
                    (r >> 40) as u8 % 2
                } else {
                    src
                },
                off,
                imm,
            ));
        }
        v.push(bpfvfs_ebpf::insn::Insn::new(0x95, 0, 0, 0, 0));
        match verify(&v, &env, None) {
            Ok(_) => ok += 1,
            Err(_) => rej += 1,
        }
    }
    println!("random programs: {ok} accepted, {rej} rejected");
    assert!(rej > 0);
}
