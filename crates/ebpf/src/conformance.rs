//! The eBPF conformance suite: its test-file format, a runner, and its plugin protocol.
//!
//! A test file is a list of sections opened by `-- NAME` lines (`#` lines are comments):
//! `asm` (program text, see [`crate::asm`]), `raw` (the program as 64-bit words), `mem`
//! (hex bytes; r1 = their address, r2 = their length), `result` (expected r0 in hex, or an
//! expected error), `error` (an expected error), `c` (informational), `no register offset`
//! (informational). [`run_file`] assembles (cross-checking against `raw` when both exist),
//! runs the program on an [`Engine`] and compares.
//!
//! The CLI entry points ([`cli_files`], [`cli_plugin`]) print exactly what
//! `bpfvfs conformance [--engine interp|jit] FILE...` and `bpfvfs conformance-plugin [MEM]`
//! print, so the binary only parses arguments.

use crate::asm::assemble;
use crate::helpers::{Env, Helpers};
use crate::insn::Insn;
use crate::interp::{Interpreter, Program};
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

/// One parsed test file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFile {
    pub name: String,
    /// The `asm` section and the line (1-based, in the file) where its text starts.
    pub asm: Option<(String, usize)>,
    pub raw: Option<Vec<u64>>,
    pub mem: Vec<u8>,
    pub result: Option<u64>,
    pub error: Option<String>,
    pub no_register_offset: Option<String>,
}

/// Parses a test file's text.
pub fn parse(name: &str, text: &str) -> Result<TestFile, String> {
    let mut t = TestFile {
        name: name.to_string(),
        ..Default::default()
    };
    let mut sections: Vec<(String, usize, Vec<&str>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(sec) = line.strip_prefix("--") {
            sections.push((sec.trim().to_ascii_lowercase(), i + 2, Vec::new()));
            continue;
        }
        if line.trim_start().starts_with('#') {
            // Keep asm line numbers right: comments inside asm are still lines.
            if let Some((n, _, body)) = sections.last_mut() {
                if n == "asm" {
                    body.push("");
                }
            }
            continue;
        }
        if let Some((_, _, body)) = sections.last_mut() {
            body.push(line);
        }
    }
    let first_line = |body: &[&str]| {
        body.iter()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    for (sec, start, body) in sections {
        match sec.as_str() {
            "asm" => t.asm = Some((body.join("\n"), start)),
            "raw" => {
                let mut words = Vec::new();
                for w in body.iter().flat_map(|l| l.split_whitespace()) {
                    let h = w.trim_start_matches("0x").trim_start_matches("0X");
                    words.push(
                        u64::from_str_radix(h, 16).map_err(|_| format!("bad raw word `{w}`"))?,
                    );
                }
                t.raw = Some(words);
            }
            "mem" => t.mem = parse_hex_bytes(&body.join(" "))?,
            "result" => {
                if let Some(l) = first_line(&body) {
                    let h = l.trim_start_matches("0x").trim_start_matches("0X");
                    match u64::from_str_radix(h, 16) {
                        Ok(v) => t.result = Some(v),
                        Err(_) => t.error = Some(l),
                    }
                }
            }
            "error" => t.error = Some(first_line(&body).unwrap_or_default()),
            "no register offset" => {
                t.no_register_offset = Some(first_line(&body).unwrap_or_default())
            }
            _ => {}
        }
    }
    if t.asm.is_none() && t.raw.is_none() {
        return Err("no asm or raw section".into());
    }
    if t.result.is_none() && t.error.is_none() {
        return Err("no result or error section".into());
    }
    Ok(t)
}

/// Hex bytes: pairs, optionally separated by whitespace, optionally `0x`-prefixed.
pub fn parse_hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    let mut digits = String::with_capacity(s.len());
    for tok in s.split_whitespace() {
        digits.push_str(
            tok.strip_prefix("0x")
                .or_else(|| tok.strip_prefix("0X"))
                .unwrap_or(tok),
        );
    }
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("bad hex `{}`", &digits[i..i + 2]))
        })
        .collect()
}

/// The program bytes of a test: its `raw` words, or its assembled `asm`. When both exist they
/// must agree.
pub fn program_bytes(t: &TestFile) -> Result<Vec<u8>, String> {
    let assembled = match &t.asm {
        Some((text, start)) => Some(
            assemble(text)
                .map_err(|e| format!("assembler: line {}: {}", e.line + start - 1, e.msg))?,
        ),
        None => None,
    };
    let raw: Option<Vec<Insn>> = t
        .raw
        .as_ref()
        .map(|w| w.iter().map(|&x| Insn::from_u64(x)).collect());
    match (assembled, raw) {
        (Some(a), Some(r)) => {
            if let Some(i) = (0..a.len().max(r.len())).find(|&i| a.get(i) != r.get(i)) {
                return Err(format!(
                    "assembled asm differs from raw at slot {i}: {:?} vs {:?}",
                    a.get(i),
                    r.get(i)
                ));
            }
            Ok(Insn::slots_to_bytes(&r))
        }
        (Some(a), None) => Ok(Insn::slots_to_bytes(&a)),
        (None, Some(r)) => Ok(Insn::slots_to_bytes(&r)),
        (None, None) => Err("no program".into()),
    }
}

/// Something that runs programs for the suite: the interpreter now, the JIT later.
pub trait Engine {
    fn name(&self) -> &str;
    /// Loads and runs `program` with `mem` (r1 = its address, r2 = its length, or both 0 if
    /// empty). `Err` is a load or run error, as text.
    fn run(&self, program: &[u8], mem: &mut [u8]) -> Result<u64, String>;
}

/// The interpreter, checked mode, with [`Helpers::standard`] and a back-edge budget so a
/// runaway test cannot hang the runner.
pub struct InterpEngine {
    pub helpers: Helpers,
    pub budget: Option<u64>,
}

impl Default for InterpEngine {
    fn default() -> Self {
        InterpEngine {
            helpers: Helpers::standard(),
            budget: Some(100_000_000),
        }
    }
}

impl Engine for InterpEngine {
    fn name(&self) -> &str {
        "interp"
    }

    fn run(&self, program: &[u8], mem: &mut [u8]) -> Result<u64, String> {
        let prog = Program::from_bytes(program).map_err(|e| format!("load: {e}"))?;
        let mut vm = Interpreter::new(&prog, &self.helpers).map_err(|e| format!("load: {e}"))?;
        vm.set_budget(self.budget);
        // 8-byte alignment for the memory, as the suite's atomics expect.
        let mut aligned = vec![0u64; mem.len().div_ceil(8)];
        let buf = &mut bytemuck_u8(&mut aligned)[..mem.len()];
        buf.copy_from_slice(mem);
        let mut env = Env::new();
        let r = vm.run_mem(buf, &mut env).map_err(|e| format!("run: {e}"));
        mem.copy_from_slice(buf);
        r
    }
}

fn bytemuck_u8(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements; the length covers the same bytes.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 8) }
}

/// The engine called `name`: `interp`, or `jit` (x86-64).
pub fn engine_by_name(name: &str) -> Result<Box<dyn Engine>, String> {
    match name {
        "interp" => Ok(Box::new(InterpEngine::default())),
        #[cfg(target_arch = "x86_64")]
        "jit" => Ok(Box::new(crate::jit::JitEngine::default())),
        #[cfg(not(target_arch = "x86_64"))]
        "jit" => Err("the jit engine needs x86-64".into()),
        other => Err(format!("unknown engine `{other}` (interp, jit)")),
    }
}

/// The verdict on one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub passed: bool,
    /// Why it failed, or what an expected-error test got.
    pub reason: String,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.passed, self.reason.is_empty()) {
            (true, true) => write!(f, "PASS {}", self.name),
            (true, false) => write!(f, "PASS {} ({})", self.name, self.reason),
            (false, _) => write!(f, "FAIL {}: {}", self.name, self.reason),
        }
    }
}

/// Runs a parsed test.
pub fn run_test(t: &TestFile, engine: &dyn Engine) -> Outcome {
    let fail = |reason: String| Outcome {
        name: t.name.clone(),
        passed: false,
        reason,
    };
    let bytes = match program_bytes(t) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let mut mem = t.mem.clone();
    let got = engine.run(&bytes, &mut mem);
    match (&t.error, got) {
        (None, Ok(v)) if Some(v) == t.result => Outcome {
            name: t.name.clone(),
            passed: true,
            reason: String::new(),
        },
        (None, Ok(v)) => fail(format!(
            "r0 = {v:#x}, expected {:#x}",
            t.result.unwrap_or(0)
        )),
        (None, Err(e)) => fail(format!("{e} (expected r0 = {:#x})", t.result.unwrap_or(0))),
        // Error texts are runtime-specific: any error satisfies an expected error.
        (Some(exp), Err(e)) => Outcome {
            name: t.name.clone(),
            passed: true,
            reason: format!("error `{e}`, expected `{exp}`"),
        },
        (Some(exp), Ok(v)) => fail(format!("r0 = {v:#x}, expected error `{exp}`")),
    }
}

/// Reads, parses and runs one file; the outcome's name is the file name.
pub fn run_file(path: &Path, engine: &dyn Engine) -> Outcome {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Outcome {
                name,
                passed: false,
                reason: format!("read: {e}"),
            }
        }
    };
    match parse(&name, &text) {
        Ok(t) => run_test(&t, engine),
        Err(e) => Outcome {
            name,
            passed: false,
            reason: format!("parse: {e}"),
        },
    }
}

/// Pass/fail counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// `conformance FILE...`: one line per file, then `N passed, M failed`.
pub fn cli_files(
    engine: &dyn Engine,
    files: &[impl AsRef<Path>],
    out: &mut dyn Write,
) -> std::io::Result<Summary> {
    let mut s = Summary::default();
    for f in files {
        let o = run_file(f.as_ref(), engine);
        if o.passed {
            s.passed += 1;
        } else {
            s.failed += 1;
        }
        writeln!(out, "{o}")?;
    }
    writeln!(out, "{s}")?;
    Ok(s)
}

/// The plugin protocol: program bytes as base16 text in `program_hex`, the memory as the
/// MEM argument's base16 text. Returns r0.
pub fn plugin(
    engine: &dyn Engine,
    program_hex: &str,
    mem_hex: Option<&str>,
) -> Result<u64, String> {
    let prog = parse_hex_bytes(program_hex).map_err(|e| format!("program: {e}"))?;
    let mut mem = match mem_hex {
        Some(m) => parse_hex_bytes(m).map_err(|e| format!("memory: {e}"))?,
        None => Vec::new(),
    };
    engine.run(&prog, &mut mem)
}

/// `conformance-plugin [MEM] [OPTIONS...]`: reads the program from `stdin`, prints r0 in hex
/// on `stdout` and returns 0, or prints the error on `stderr` and returns 1. Arguments
/// starting with `--` are options (ignored); the first other argument is MEM.
pub fn cli_plugin(
    engine: &dyn Engine,
    args: &[String],
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let mem = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str);
    let mut program = String::new();
    if let Err(e) = stdin.read_to_string(&mut program) {
        let _ = writeln!(stderr, "reading the program: {e}");
        return 1;
    }
    match plugin(engine, &program, mem) {
        Ok(v) => {
            let _ = writeln!(stdout, "{v:x}");
            0
        }
        Err(e) => {
            let _ = writeln!(stderr, "{e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections() {
        let t = parse(
            "x",
            "# c\n-- asm\nmov %r0, %r2\n# hi\nexit\n-- mem\n00 01\n02 03\n-- no register offset\n-- result\n0x4\n",
        )
        .unwrap();
        assert_eq!(t.asm.as_ref().unwrap().1, 3);
        assert_eq!(t.mem, [0, 1, 2, 3]);
        assert_eq!(t.result, Some(4));
        assert!(run_test(&t, &InterpEngine::default()).passed);
    }

    #[test]
    fn plugin_protocol() {
        let e = InterpEngine::default();
        // mov r0, r2 ; exit
        let prog = "bf 20 00 00 00 00 00 00 95 00 00 00 00 00 00 00";
        assert_eq!(
            plugin(&e, prog, Some("00 00 00 01 00 00 00 02")).unwrap(),
            8
        );
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = cli_plugin(
            &e,
            &["aabb".into()],
            &mut prog.replace(' ', "").as_bytes(),
            &mut out,
            &mut err,
        );
        assert_eq!(code, 0);
        assert_eq!(String::from_utf8(out).unwrap(), "2\n");
        let code = cli_plugin(
            &e,
            &[],
            &mut "ff00000000000000".as_bytes(),
            &mut Vec::new(),
            &mut err,
        );
        assert_eq!(code, 1);
    }

    #[test]
    fn expected_error() {
        let t = parse("e", "-- asm\ncall 9999\nexit\n-- error\nunknown helper\n").unwrap();
        let o = run_test(&t, &InterpEngine::default());
        assert!(o.passed, "{o}");
    }
}
