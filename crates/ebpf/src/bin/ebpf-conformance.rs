//! `ebpf-conformance [--engine interp|jit] FILE...`: runs conformance test files and prints one
//! line per file and a closing `N passed, M failed`.
//!
//! `ebpf-conformance plugin [MEM] [OPTIONS...]`: the suite's plugin protocol — the program as
//! base16 text on stdin, MEM as base16 text, r0 in hex on stdout.

use bpfvfs_ebpf::conformance::{cli_files, cli_plugin, engine_by_name};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: ebpf-conformance [--engine interp|jit] FILE...\n       ebpf-conformance plugin [--engine interp|jit] [MEM]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let plugin_mode = args
        .first()
        .is_some_and(|a| a == "plugin" || a == "conformance-plugin");
    if plugin_mode {
        args.remove(0);
    }
    let mut engine_name = "interp".to_string();
    if let Some(i) = args
        .iter()
        .position(|a| a == "--engine" || a.starts_with("--engine="))
    {
        if let Some(v) = args[i].strip_prefix("--engine=") {
            engine_name = v.to_string();
            args.remove(i);
        } else if i + 1 < args.len() {
            engine_name = args.remove(i + 1);
            args.remove(i);
        } else {
            return usage();
        }
    }
    let engine = match engine_by_name(&engine_name) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ebpf-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    if plugin_mode {
        let code = cli_plugin(
            engine.as_ref(),
            &args,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        );
        return ExitCode::from(code as u8);
    }
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        return usage();
    }
    match cli_files(engine.as_ref(), &args, &mut std::io::stdout().lock()) {
        Ok(s) if s.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ebpf-conformance: {e}");
            ExitCode::FAILURE
        }
    }
}
