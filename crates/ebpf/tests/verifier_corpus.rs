//! Runs every program of tests/verifier-corpus through the verifier and checks its verdict
//! and, for rejections, that the message contains the expected text.

mod verifier_common;

use bpfvfs_ebpf::verifier::{verify, HelperProtos, ProgTypeSpec, VerifierEnv};
use verifier_common::{load_corpus, Expect};

#[test]
fn verifier_corpus() {
    let corpus = load_corpus();
    assert!(
        corpus.len() >= 80,
        "corpus has only {} programs",
        corpus.len()
    );
    let protos = HelperProtos::standard();
    let mut failures = Vec::new();
    let (mut acc, mut rej) = (0, 0);
    for p in &corpus {
        let ty = ProgTypeSpec::by_name(&p.prog_type)
            .unwrap_or_else(|| panic!("{}: unknown type {}", p.name, p.prog_type));
        let maps = p.map_infos();
        let mut env = VerifierEnv::new(&ty, &maps, &protos);
        env.allow_loops = !p.no_loops;
        let res = verify(&p.insns, &env, None);
        let verdict = match &res {
            Ok(info) => format!("accept ({} insns processed)", info.processed_insns),
            Err(e) => format!("reject at insn {}: {}", e.insn_idx, e.message),
        };
        println!("{:<40} {:<14} {verdict}", p.name, p.prog_type);
        match (&p.expect, &res) {
            (Expect::Accept, Ok(_)) => acc += 1,
            (Expect::Reject(m), Err(e)) if e.message.contains(m.as_str()) => {
                rej += 1;
                assert!(
                    e.log.contains(&e.message),
                    "{}: log does not end in the message:\n{}",
                    p.name,
                    e.log
                );
            }
            (Expect::Accept, Err(e)) => {
                failures.push(format!("{}: expected accept, got: {e}\n{}", p.name, e.log))
            }
            (Expect::Reject(m), Ok(_)) => {
                failures.push(format!("{}: expected reject ({m}), got accept", p.name))
            }
            (Expect::Reject(m), Err(e)) => failures.push(format!(
                "{}: expected message containing `{m}`, got `{}`",
                p.name, e.message
            )),
        }
    }
    println!(
        "verifier corpus: {} programs, {acc} accepted and {rej} rejected as expected, {} wrong",
        corpus.len(),
        failures.len()
    );
    if !failures.is_empty() {
        panic!("{}", failures.join("\n\n"));
    }
}
