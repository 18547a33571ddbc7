//! The exploration: depth-first over all paths with pruning, checking every instruction
//! against the abstract state.

use super::cfg::Cfg;
use super::log::{fmt_reg, fmt_state, Log, Snapshot};
use super::progtype::{field_access, FieldKind, PacketPtr};
use super::protos::{ArgKind, HelperProto, LockOp, RetKind};
use super::reg::{
    self, alu32, alu64, branch_taken, endian, movsx, negate, Reg, RegType, View, AT_PKT_END,
    BEYOND_PKT_END, MAX_PACKET_OFF,
};
use super::state::{subsumes, widen, CallbackInfo, Frame, RefState, SlotByte, State};
use super::tnum::Tnum;
use super::{
    LineInfo, MapInfo, VerifiedInfo, VerifierEnv, VerifierError, MAX_BPF_STACK, MAX_CALL_FRAMES,
};
use crate::insn::{
    decode, AluOp, AtomicOp, CallTarget, Endian, Insn, Instruction, JmpCond, LdImmKind, MemSize,
    Operand, Width,
};
use std::collections::BTreeSet;

/// Largest offset a pointer may carry (`BPF_MAX_VAR_OFF`).
const MAX_VAR_OFF: i64 = 1 << 29;
/// Largest helper memory size (`BPF_MAX_VAR_SIZ`).
const MAX_VAR_SIZ: u64 = 1 << 29;
/// `BPF_MAX_LOOPS`.
const MAX_LOOPS: u64 = 1 << 23;
const LD_ABS_UNSUPPORTED: &str = "BPF_LD_[ABS|IND] instructions are not supported by this verifier";
const KFUNC_UNSUPPORTED: &str = "calling kernel functions is not supported";

type VResult<T> = Result<T, String>;

struct Node {
    state: State,
    branches: u32,
    parent: Option<usize>,
    hits: u32,
    misses: u32,
    alive: bool,
}

struct Pending {
    state: State,
    insn: usize,
    from: usize,
    parent: Option<usize>,
    log_pos: usize,
}

enum Step {
    Next(usize),
    /// Explore `(state, insn)` later; continue at the given instruction now.
    Push(State, usize, usize),
    /// The path ended (exit of the main program).
    Done,
}

/// Value being stored.
#[derive(Clone)]
enum StoreVal {
    Reg(u8, Reg),
    Imm(i64),
    /// Result of an atomic read-modify-write.
    Unknown,
}

pub struct Verifier<'a> {
    dec: Vec<Option<Instruction>>,
    insns: &'a [Insn],
    env: &'a VerifierEnv<'a>,
    line_info: Option<LineInfo<'a>>,
    cfg: Cfg,
    nodes: Vec<Node>,
    explored: Vec<Vec<usize>>,
    pending: Vec<Pending>,
    processed: u64,
    jmps: u64,
    last_add_insns: u64,
    last_add_jmps: u64,
    total_states: u64,
    cur_states: u64,
    peak_states: u64,
    id_gen: u32,
    log: Log,
    stack_depth: Vec<u32>,
    max_ctx_off: u32,
    helpers_used: BTreeSet<u32>,
    last_line: Option<String>,
    callback_site: Vec<bool>,
    /// Per instruction, the kind of pointer its memory operand had on the paths so far
    /// (`PTR_UNSEEN`, `PTR_CTX`, `PTR_OTHER`): context accesses are rewritten after
    /// verification, so an instruction must not serve the context on one path and other
    /// memory on another.
    insn_ptr: Vec<u8>,
    /// Fields of kernel structs the program loads: (struct name, field name).
    struct_reads: std::collections::BTreeSet<(String, String)>,
    /// Highest byte + 1 reached through each `FieldKind::Buf` slot.
    max_buf_access: [u32; 2],
}

const PTR_UNSEEN: u8 = 0;
const PTR_CTX: u8 = 1;
const PTR_OTHER: u8 = 2;

fn sized_unknown(size: usize, signed: bool) -> Reg {
    if size >= 8 {
        return Reg::unknown();
    }
    let bits = size * 8;
    if signed {
        let mut r = Reg::unknown();
        r.smin = -(1i64 << (bits - 1));
        r.smax = (1i64 << (bits - 1)) - 1;
        r.sync();
        r
    } else {
        Reg::urange(0, (1u64 << bits) - 1)
    }
}

fn sign_extend(v: u64, size: usize) -> u64 {
    match size {
        1 => v as u8 as i8 as i64 as u64,
        2 => v as u16 as i16 as i64 as u64,
        4 => v as u32 as i32 as i64 as u64,
        _ => v,
    }
}

fn alu_sym(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div | AluOp::SDiv => "/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Mod | AluOp::SMod => "%=",
        AluOp::Xor => "^=",
        AluOp::Mov => "=",
        AluOp::Arsh => "s>>=",
    }
}

fn type_err(regno: u8, r: &Reg, expected: &str) -> String {
    format!("R{regno} type={} expected={expected}", r.ty.name())
}

fn round_up(v: u32, to: u32) -> u32 {
    v.div_ceil(to) * to
}

impl<'a> Verifier<'a> {
    pub fn run(
        insns: &'a [Insn],
        env: &'a VerifierEnv<'a>,
        line_info: Option<LineInfo<'a>>,
    ) -> Result<VerifiedInfo, VerifierError> {
        let fail =
            |insn_idx: usize, message: String, log: String, line: Option<String>| VerifierError {
                insn_idx,
                line,
                message,
                log,
            };
        if insns.len() > u32::MAX as usize / 8 {
            return Err(fail(0, "program too long".into(), String::new(), None));
        }
        let decoded = decode(insns).map_err(|e| {
            let msg = e.kind.to_string();
            fail(e.pc, msg.clone(), format!("{msg}\n"), None)
        })?;
        let mut dec = vec![None; insns.len()];
        for (pc, i) in decoded {
            dec[pc] = Some(i);
        }
        let line_at = |pc: usize| line_info.and_then(|f| f(pc));
        let cfg = Cfg::build(&dec, env.allow_loops).map_err(|(pc, msg)| {
            let mut log = String::new();
            if let Some(l) = line_at(pc) {
                log.push_str(&format!("; {l}\n"));
            }
            log.push_str(&msg);
            log.push('\n');
            fail(pc, msg, log, line_at(pc))
        })?;
        let n = insns.len();
        let mut callback_site = vec![false; n];
        for (pc, i) in dec.iter().enumerate() {
            if let Some(Instruction::Call(CallTarget::Helper(id))) = i {
                if let Some(p) = env.helper_protos.get(*id as u32) {
                    callback_site[pc] = p.args.contains(&ArgKind::Func);
                }
            }
        }
        let nsub = cfg.subprogs.len();
        let mut v = Verifier {
            dec,
            insns,
            env,
            line_info,
            cfg,
            nodes: Vec::new(),
            explored: vec![Vec::new(); n],
            pending: Vec::new(),
            processed: 0,
            jmps: 0,
            last_add_insns: 0,
            last_add_jmps: 0,
            total_states: 0,
            cur_states: 0,
            peak_states: 0,
            id_gen: 0,
            log: Log::new(env.log),
            stack_depth: vec![0; nsub],
            max_ctx_off: 0,
            helpers_used: BTreeSet::new(),
            last_line: None,
            callback_site,
            insn_ptr: vec![PTR_UNSEEN; n],
            struct_reads: Default::default(),
            max_buf_access: [0; 2],
        };
        match v.do_check().and_then(|_| v.check_max_stack_depth()) {
            Ok(max_combined_stack) => {
                let max_per_insn = v.explored.iter().map(|l| l.len() as u64).max().unwrap_or(0);
                let summary = format!(
                    "processed {} insns (limit {}) max_states_per_insn {} total_states {} peak_states {} mark_read 0",
                    v.processed, env.max_insns, max_per_insn, v.total_states, v.peak_states
                );
                v.log.line(&summary);
                Ok(VerifiedInfo {
                    subprog_starts: v.cfg.subprogs.clone(),
                    stack_depth: v.stack_depth.clone(),
                    max_combined_stack,
                    processed_insns: v.processed,
                    total_states: v.total_states,
                    peak_states: v.peak_states,
                    max_states_per_insn: max_per_insn,
                    max_ctx_offset: v.max_ctx_off,
                    ctx_access_insns: (0..n).filter(|&pc| v.insn_ptr[pc] == PTR_CTX).collect(),
                    struct_reads: v.struct_reads.iter().cloned().collect(),
                    helpers_used: v.helpers_used.iter().copied().collect(),
                    max_buf_access: v.max_buf_access,
                    log: v.log.into_string(),
                })
            }
            Err((pc, msg)) => {
                let line = line_at(pc);
                v.log.line(&msg);
                let max_per_insn = v.explored.iter().map(|l| l.len() as u64).max().unwrap_or(0);
                v.log.line(&format!(
                    "processed {} insns (limit {}) max_states_per_insn {} total_states {} peak_states {} mark_read 0",
                    v.processed, env.max_insns, max_per_insn, v.total_states, v.peak_states
                ));
                Err(fail(pc, msg, v.log.into_string(), line))
            }
        }
    }

    fn new_id(&mut self) -> u32 {
        self.id_gen += 1;
        self.id_gen
    }

    fn maps(&self) -> &'a [MapInfo] {
        self.env.maps
    }

    fn initial_state(&self) -> State {
        let mut f = Frame::new(0, usize::MAX, 0);
        f.regs[1] = Reg::ptr(RegType::Ctx);
        State {
            frames: vec![f],
            refs: Vec::new(),
            lock: None,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Exploration
    // -----------------------------------------------------------------------------------------

    /// Rejects, wherever they are, the instructions that are wrong whether or not a path
    /// reaches them. Linux resolves every map `lddw` (and kfunc) before exploring; and the
    /// engine loads and lowers dead code too, so an instruction it cannot lower (legacy
    /// packet access, kfunc calls, a write to r10) must not pass behind a branch the verifier
    /// proved never taken. Found by the `verifier` fuzz target: `if r1 <= 0 goto` over a
    /// `BPF_LD_IND`, with r1 known positive, and a dead `w10 = 1` were accepted and then
    /// refused by `Program::load`.
    fn check_all_insns(&mut self) -> Result<(), (usize, String)> {
        for pc in 0..self.dec.len() {
            if let Some(insn) = &self.dec[pc] {
                if super::cfg::uses_defs(insn).1 & (1 << crate::insn::FRAME_POINTER) != 0 {
                    return Err((pc, "frame pointer is read only".into()));
                }
            }
            match self.dec[pc] {
                Some(Instruction::LdAbs { .. } | Instruction::LdInd { .. }) => {
                    return Err((pc, LD_ABS_UNSUPPORTED.into()));
                }
                Some(Instruction::Call(CallTarget::Kfunc { .. })) => {
                    return Err((pc, KFUNC_UNSUPPORTED.into()));
                }
                Some(Instruction::LdImm64 {
                    kind,
                    imm,
                    next_imm,
                    ..
                }) if !matches!(kind, LdImmKind::Imm64 | LdImmKind::Func) => {
                    self.ld_imm64(kind, imm, next_imm, pc)
                        .map_err(|m| (pc, m))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn do_check(&mut self) -> Result<(), (usize, String)> {
        self.check_all_insns()?;
        let mut st = self.initial_state();
        let mut pc = 0usize;
        let mut parent: Option<usize> = None;
        let maps = self.maps();
        self.log.line(&format!("0: {}", fmt_state(&st, maps)));
        loop {
            let ended = loop {
                if self.cfg.prune_point[pc] {
                    match self.is_state_visited(pc, &mut st, &mut parent) {
                        Ok(true) => {
                            if self.log.enabled {
                                self.log.line(&format!("{pc}: safe"));
                            }
                            break true;
                        }
                        Ok(false) => {}
                        Err(m) => return Err((pc, m)),
                    }
                }
                self.processed += 1;
                if self.processed > self.env.max_insns {
                    return Err((
                        pc,
                        format!(
                            "BPF program is too large. Processed {} insn",
                            self.processed
                        ),
                    ));
                }
                let insn = self.dec[pc].expect("reachable instruction start");
                let before = if self.log.enabled {
                    self.log_insn(pc, &insn);
                    let stores = matches!(
                        insn,
                        Instruction::St { .. }
                            | Instruction::Stx { .. }
                            | Instruction::Atomic { .. }
                            | Instruction::Call(_)
                    );
                    Some(Snapshot {
                        depth: st.frames.len(),
                        regs: st.regs().clone(),
                        stack: if stores {
                            Some(st.cur().stack.clone())
                        } else {
                            None
                        },
                    })
                } else {
                    None
                };
                let step = self.step(&mut st, pc, &insn).map_err(|m| (pc, m))?;
                if let Some(b) = before {
                    let ch = b.changes(&st, maps);
                    if !ch.is_empty() {
                        self.log.append_to_last(&ch);
                    }
                }
                match step {
                    Step::Next(n) => pc = n,
                    Step::Push(other, at, next) => {
                        if let Some(p) = parent {
                            self.nodes[p].branches += 1;
                        }
                        self.pending.push(Pending {
                            state: other,
                            insn: at,
                            from: pc,
                            parent,
                            log_pos: self.log.pos(),
                        });
                        pc = next;
                    }
                    Step::Done => break false,
                }
            };
            let _ = ended;
            self.finish_path(parent);
            match self.pending.pop() {
                None => return Ok(()),
                Some(p) => {
                    self.log.rewind(p.log_pos);
                    st = p.state;
                    pc = p.insn;
                    parent = p.parent;
                    self.last_line = None;
                    if self.log.enabled {
                        let s = fmt_state(&st, maps);
                        self.log.line(&format!("from {} to {}: {}", p.from, pc, s));
                    }
                }
            }
        }
    }

    fn log_insn(&mut self, pc: usize, insn: &Instruction) {
        if let Some(f) = self.line_info {
            if let Some(l) = f(pc) {
                if self.last_line.as_deref() != Some(&l) {
                    self.log.line(&format!("; {l}"));
                    self.last_line = Some(l);
                }
            }
        }
        let text = match insn {
            Instruction::Call(CallTarget::Helper(id)) => {
                match self.env.helper_protos.get(*id as u32) {
                    Some(p) => format!("call {}#{id}", p.name),
                    None => format!("call unknown#{id}"),
                }
            }
            i => i.to_string(),
        };
        self.log
            .line(&format!("{pc}: ({:02x}) {text}", self.insns[pc].code));
    }

    /// A path ended: the checkpoints it went through have one branch fewer.
    fn finish_path(&mut self, mut parent: Option<usize>) {
        while let Some(p) = parent {
            let n = &mut self.nodes[p];
            n.branches -= 1;
            if n.branches > 0 {
                break;
            }
            parent = n.parent;
        }
    }

    /// Pruning: `Ok(true)` if `st` at `pc` is covered by an explored state.
    fn is_state_visited(
        &mut self,
        pc: usize,
        st: &mut State,
        parent: &mut Option<usize>,
    ) -> VResult<bool> {
        let mut in_loop = false;
        let list = std::mem::take(&mut self.explored[pc]);
        let mut keep = Vec::with_capacity(list.len() + 1);
        let mut result = Ok(false);
        let is_cb_site = self.callback_site[pc];
        for (k, &id) in list.iter().enumerate() {
            if result != Ok(false) {
                keep.extend_from_slice(&list[k..]);
                break;
            }
            let node = &self.nodes[id];
            if node.branches > 0 {
                in_loop = true;
                if is_cb_site {
                    if subsumes(&node.state, st, &self.cfg, pc) {
                        result = Ok(true);
                    } else {
                        widen(&node.state, st);
                    }
                } else if node.state.frames.len() == st.frames.len()
                    && node
                        .state
                        .frames
                        .iter()
                        .zip(&st.frames)
                        .all(|(a, b)| a.cb_unroll == b.cb_unroll)
                    && node.state.regs() == st.regs()
                    && subsumes(&node.state, st, &self.cfg, pc)
                    && subsumes(st, &node.state, &self.cfg, pc)
                {
                    result = Err(format!("infinite loop detected at insn {pc}"));
                }
            } else if subsumes(&node.state, st, &self.cfg, pc) {
                self.nodes[id].hits += 1;
                result = Ok(true);
                keep.push(id);
                continue;
            }
            if result.is_ok() && result != Ok(false) {
                keep.push(id);
                continue;
            }
            let node = &mut self.nodes[id];
            node.misses += 1;
            if node.misses > node.hits * 3 + 3 {
                // Rarely useful: take it off the list (an in-progress state stays in the
                // tree for branch counting).
                if node.branches == 0 {
                    node.alive = false;
                    node.state = State {
                        frames: Vec::new(),
                        refs: Vec::new(),
                        lock: None,
                    };
                }
                self.cur_states -= 1;
                continue;
            }
            keep.push(id);
        }
        self.explored[pc] = keep;
        if result != Ok(false) {
            return result;
        }
        if in_loop
            && !is_cb_site
            && self.jmps - self.last_add_jmps < 20
            && self.processed - self.last_add_insns < 100
        {
            return Ok(false);
        }
        self.last_add_jmps = self.jmps;
        self.last_add_insns = self.processed;
        let id = self.nodes.len();
        self.nodes.push(Node {
            state: st.clone(),
            branches: 1,
            parent: *parent,
            hits: 0,
            misses: 0,
            alive: true,
        });
        self.explored[pc].push(id);
        *parent = Some(id);
        self.total_states += 1;
        self.cur_states += 1;
        self.peak_states = self.peak_states.max(self.cur_states);
        Ok(false)
    }

    fn check_max_stack_depth(&self) -> Result<u32, (usize, String)> {
        let n = self.cfg.subprogs.len();
        let mut callees: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        for &(insn, callee) in &self.cfg.calls {
            callees[self.cfg.subprog_of[insn]].push((insn, callee));
        }
        let frame_size = |sp: usize| round_up(self.stack_depth[sp].max(1), 32);
        // Depth-first over call chains from the main program.
        fn walk(
            sp: usize,
            chain: &mut Vec<usize>,
            callees: &[Vec<(usize, usize)>],
            frame_size: &dyn Fn(usize) -> u32,
            best: &mut u32,
        ) -> Result<(), (usize, String)> {
            chain.push(sp);
            let total: u32 = chain.iter().map(|&s| frame_size(s)).sum();
            *best = (*best).max(total);
            if total > MAX_BPF_STACK as u32 {
                return Err((
                    0,
                    format!(
                        "combined stack size of {} calls is {}. Too large",
                        chain.len(),
                        total
                    ),
                ));
            }
            for &(insn, c) in &callees[sp] {
                if chain.contains(&c) {
                    return Err((
                        insn,
                        format!("recursive call from subprog {sp} to subprog {c}"),
                    ));
                }
                if chain.len() >= MAX_CALL_FRAMES {
                    return Err((
                        insn,
                        format!("the call stack of {} frames is too deep !", chain.len() + 1),
                    ));
                }
                walk(c, chain, callees, frame_size, best)?;
            }
            chain.pop();
            Ok(())
        }
        let mut best = 0;
        walk(0, &mut Vec::new(), &callees, &frame_size, &mut best)?;
        Ok(best)
    }

    // -----------------------------------------------------------------------------------------
    // Instructions
    // -----------------------------------------------------------------------------------------

    fn read_reg<'s>(&self, st: &'s State, r: u8) -> VResult<&'s Reg> {
        let reg = &st.regs()[r as usize];
        if reg.ty == RegType::NotInit {
            return Err(format!("R{r} !read_ok"));
        }
        Ok(reg)
    }

    fn step(&mut self, st: &mut State, pc: usize, insn: &Instruction) -> VResult<Step> {
        let next = pc + insn.slots();
        match *insn {
            Instruction::Alu {
                width,
                op,
                dst,
                src,
            } => {
                self.alu(st, width, op, dst, src)?;
                Ok(Step::Next(next))
            }
            Instruction::Neg { width, dst } => {
                self.check_dst_writable(dst)?;
                let a = self.read_reg(st, dst)?.clone();
                if a.ty.is_ptr() {
                    return Err(format!("R{dst} pointer arithmetic prohibited"));
                }
                let r = if width == Width::W64 {
                    alu64(AluOp::Sub, &Reg::konst(0), &a)
                } else {
                    alu32(AluOp::Sub, &Reg::konst(0), &a)
                };
                st.regs_mut()[dst as usize] = r;
                Ok(Step::Next(next))
            }
            Instruction::MovSx {
                width,
                dst,
                src,
                bits,
            } => {
                self.check_dst_writable(dst)?;
                let a = self.read_reg(st, src)?.clone();
                if a.ty.is_ptr() {
                    return Err(format!("R{src} sign-extension part of pointer"));
                }
                st.regs_mut()[dst as usize] = movsx(&a, bits, width == Width::W32);
                Ok(Step::Next(next))
            }
            Instruction::End { kind, bits, dst } => {
                self.check_dst_writable(dst)?;
                let a = self.read_reg(st, dst)?.clone();
                if a.ty.is_ptr() {
                    return Err(format!("R{dst} pointer arithmetic prohibited"));
                }
                st.regs_mut()[dst as usize] = endian(&a, kind != Endian::ToLe, bits);
                Ok(Step::Next(next))
            }
            Instruction::LdImm64 {
                dst,
                kind,
                imm,
                next_imm,
            } => {
                self.check_dst_writable(dst)?;
                let r = self.ld_imm64(kind, imm, next_imm, pc)?;
                st.regs_mut()[dst as usize] = r;
                Ok(Step::Next(next))
            }
            Instruction::LdAbs { .. } | Instruction::LdInd { .. } => Err(LD_ABS_UNSUPPORTED.into()),
            Instruction::Ldx {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                self.check_dst_writable(dst)?;
                let base = self.read_reg(st, src)?.clone();
                self.note_ptr_use(pc, &base)?;
                let v = self.mem_access(
                    st,
                    src,
                    &base,
                    off as i64,
                    size.bytes(),
                    None,
                    signed,
                    false,
                )?;
                st.regs_mut()[dst as usize] = v.expect("load yields a value");
                Ok(Step::Next(next))
            }
            Instruction::St {
                size,
                dst,
                off,
                imm,
            } => {
                let base = self.read_reg(st, dst)?.clone();
                if base.ty == RegType::Ctx {
                    return Err(format!("BPF_ST stores into R{dst} ctx is not allowed"));
                }
                self.note_ptr_use(pc, &base)?;
                self.mem_access(
                    st,
                    dst,
                    &base,
                    off as i64,
                    size.bytes(),
                    Some(StoreVal::Imm(imm as i64)),
                    false,
                    false,
                )?;
                Ok(Step::Next(next))
            }
            Instruction::Stx {
                size,
                dst,
                src,
                off,
            } => {
                let v = self.read_reg(st, src)?.clone();
                let base = self.read_reg(st, dst)?.clone();
                self.note_ptr_use(pc, &base)?;
                self.mem_access(
                    st,
                    dst,
                    &base,
                    off as i64,
                    size.bytes(),
                    Some(StoreVal::Reg(src, v)),
                    false,
                    false,
                )?;
                Ok(Step::Next(next))
            }
            Instruction::Atomic {
                size,
                op,
                fetch,
                dst,
                src,
                off,
            } => {
                self.atomic(st, size, op, fetch, dst, src, off)?;
                Ok(Step::Next(next))
            }
            Instruction::Ja { off, .. } => {
                self.jmps += 1;
                Ok(Step::Next((pc as i64 + 1 + off as i64) as usize))
            }
            Instruction::Jmp {
                width,
                cond,
                dst,
                src,
                off,
            } => {
                self.jmps += 1;
                self.cond_jmp(st, pc, width, cond, dst, src, off)
            }
            Instruction::Call(CallTarget::Helper(id)) => self.helper_call(st, pc, id),
            Instruction::Call(CallTarget::Local(off)) => {
                let target = (pc as i64 + 1 + off as i64) as usize;
                self.local_call(st, pc, target)
            }
            Instruction::Call(CallTarget::Kfunc { .. }) => Err(KFUNC_UNSUPPORTED.into()),
            Instruction::Call(CallTarget::Reg(_)) => Err("callx is not supported".into()),
            Instruction::Exit => self.exit(st),
        }
    }

    /// Records whether the memory operand of the load/store at `pc` is the context.
    fn note_ptr_use(&mut self, pc: usize, base: &Reg) -> VResult<()> {
        if !base.ty.is_ptr() {
            return Ok(());
        }
        let k = if base.ty == RegType::Ctx {
            PTR_CTX
        } else {
            PTR_OTHER
        };
        match self.insn_ptr[pc] {
            PTR_UNSEEN => self.insn_ptr[pc] = k,
            prev if prev != k => {
                return Err("same insn cannot be used with different pointers".into())
            }
            _ => {}
        }
        Ok(())
    }

    fn check_dst_writable(&self, dst: u8) -> VResult<()> {
        if dst == 10 {
            return Err("frame pointer is read only".into());
        }
        Ok(())
    }

    fn find_map(&self, kind: LdImmKind, imm: i32) -> VResult<u32> {
        match kind {
            LdImmKind::MapIdx | LdImmKind::MapIdxValue => {
                if imm >= 0 && (imm as usize) < self.maps().len() {
                    Ok(imm as u32)
                } else {
                    Err(format!("map index {imm} is out of range"))
                }
            }
            _ => self
                .maps()
                .iter()
                .position(|m| m.fd == imm)
                .map(|i| i as u32)
                .ok_or_else(|| format!("fd {imm} is not pointing to valid bpf_map")),
        }
    }

    fn ld_imm64(&mut self, kind: LdImmKind, imm: i32, next_imm: i32, pc: usize) -> VResult<Reg> {
        match kind {
            LdImmKind::Imm64 => Ok(Reg::konst(Instruction::imm64(imm, next_imm))),
            LdImmKind::MapFd | LdImmKind::MapIdx => {
                let m = self.find_map(kind, imm)?;
                let mut r = Reg::ptr(RegType::MapPtr);
                r.aux = m;
                Ok(r)
            }
            LdImmKind::MapValue | LdImmKind::MapIdxValue => {
                let m = self.find_map(kind, imm)?;
                let map = &self.maps()[m as usize];
                if !map.map_type.direct_value_access() || map.max_entries != 1 {
                    return Err("direct value access on this map type is not supported".into());
                }
                if next_imm as u32 >= map.value_size {
                    return Err(format!(
                        "invalid access to map value pointer, value_size={} off={}",
                        map.value_size, next_imm as u32
                    ));
                }
                let mut r = Reg::ptr(RegType::MapValue);
                r.aux = m;
                r.off = next_imm;
                Ok(r)
            }
            LdImmKind::Func => {
                let mut r = Reg::ptr(RegType::Func);
                r.aux = (pc as i64 + 1 + imm as i64) as u32;
                Ok(r)
            }
            LdImmKind::BtfId => {
                Err("ldimm64 of kernel variables (BTF ids) is not supported".into())
            }
        }
    }

    // ---- ALU -------------------------------------------------------------------------------

    fn alu(
        &mut self,
        st: &mut State,
        width: Width,
        op: AluOp,
        dst: u8,
        src: Operand,
    ) -> VResult<()> {
        self.check_dst_writable(dst)?;
        let w32 = width == Width::W32;
        let b = match src {
            Operand::Reg(r) => self.read_reg(st, r)?.clone(),
            Operand::Imm(i) => {
                if matches!(op, AluOp::Div | AluOp::Mod | AluOp::SDiv | AluOp::SMod) && i == 0 {
                    return Err("div by zero".into());
                }
                if matches!(op, AluOp::Lsh | AluOp::Rsh | AluOp::Arsh)
                    && (i < 0 || i >= if w32 { 32 } else { 64 })
                {
                    return Err(format!("invalid shift {i}"));
                }
                Reg::konst(if w32 {
                    i as u32 as u64
                } else {
                    i as i64 as u64
                })
            }
        };
        if op == AluOp::Mov {
            if w32 {
                if b.ty.is_ptr() {
                    let Operand::Reg(r) = src else { unreachable!() };
                    return Err(format!("R{r} partial copy of pointer"));
                }
                st.regs_mut()[dst as usize] = alu32(AluOp::Mov, &Reg::konst(0), &b);
            } else {
                let mut v = b;
                if let Operand::Reg(r) = src {
                    if v.ty == RegType::Scalar && !v.is_const() {
                        if v.id == 0 {
                            v.id = self.new_id();
                            st.regs_mut()[r as usize].id = v.id;
                        }
                    } else if v.ty == RegType::Scalar {
                        v.id = 0;
                    }
                }
                st.regs_mut()[dst as usize] = v;
            }
            return Ok(());
        }
        let a = self.read_reg(st, dst)?.clone();
        if a.ty.is_ptr() || b.ty.is_ptr() {
            let r = self.ptr_alu(w32, op, dst, &a, src, &b)?;
            st.regs_mut()[dst as usize] = r;
            return Ok(());
        }
        let r = if w32 {
            alu32(op, &a, &b)
        } else {
            alu64(op, &a, &b)
        };
        st.regs_mut()[dst as usize] = r;
        Ok(())
    }

    fn ptr_alu(
        &mut self,
        w32: bool,
        op: AluOp,
        dst: u8,
        a: &Reg,
        src: Operand,
        b: &Reg,
    ) -> VResult<Reg> {
        if w32 {
            return Err(format!("R{dst} 32-bit pointer arithmetic prohibited"));
        }
        if a.ty.is_ptr() && b.ty.is_ptr() {
            // The distance between two packet pointers (`data_end - data`) is a number Linux
            // gives a privileged loader; other pointer pairs stay refused here.
            if op == AluOp::Sub && a.ty.is_pkt_any() && b.ty.is_pkt_any() {
                return Ok(Reg::unknown());
            }
            return Err(format!("R{dst} pointer {} pointer prohibited", alu_sym(op)));
        }
        let (ptr, off) = if a.ty.is_ptr() { (a, b) } else { (b, a) };
        if !a.ty.is_ptr() {
            // scalar op= pointer
            if op == AluOp::Sub {
                return Err(format!("R{dst} tried to subtract pointer from scalar"));
            }
            if op != AluOp::Add {
                let Operand::Reg(s) = src else { unreachable!() };
                return Err(format!(
                    "R{s} pointer arithmetic with {} operator prohibited",
                    alu_sym(op)
                ));
            }
        }
        match op {
            AluOp::Add | AluOp::Sub => {}
            AluOp::And | AluOp::Or | AluOp::Xor => {
                return Err(format!(
                    "R{dst} bitwise operator {} on pointer prohibited",
                    alu_sym(op)
                ));
            }
            _ => {
                return Err(format!(
                    "R{dst} pointer arithmetic with {} operator prohibited",
                    alu_sym(op)
                ))
            }
        }
        if ptr.ty.maybe_null() {
            return Err(format!(
                "R{dst} pointer arithmetic on {} prohibited, null-check it first",
                ptr.ty.name()
            ));
        }
        let known = off.const_value();
        match ptr.ty {
            RegType::Ctx
            | RegType::MapValue
            | RegType::Stack
            | RegType::Mem
            | RegType::BtfId
            | RegType::Packet
            | RegType::PacketMeta => {}
            RegType::MapPtr if known == Some(0) && op == AluOp::Add => return Ok(ptr.clone()),
            _ => {
                return Err(format!(
                    "R{dst} pointer arithmetic on {} prohibited",
                    ptr.ty.name()
                ))
            }
        }
        if op == AluOp::Sub && ptr.ty == RegType::Stack {
            return Err(format!("R{dst} subtraction from stack pointer prohibited"));
        }
        let _ = src;
        let tname = ptr.ty.name();
        if let Some(v) = known {
            let v = v as i64;
            if !(-MAX_VAR_OFF < v && v < MAX_VAR_OFF) {
                return Err(format!(
                    "math between {tname} pointer and {v} is not allowed"
                ));
            }
            let mut r = ptr.clone();
            let new_off = if op == AluOp::Add {
                r.off as i64 + v
            } else {
                r.off as i64 - v
            };
            if !(-MAX_VAR_OFF < new_off && new_off < MAX_VAR_OFF) {
                return Err(format!("{tname} pointer offset {new_off} is not allowed"));
            }
            r.off = new_off as i32;
            return Ok(r);
        }
        if off.smin == i64::MIN {
            return Err(format!(
                "math between {tname} pointer and register with unbounded min value is not allowed"
            ));
        }
        if off.smin <= -MAX_VAR_OFF || off.smin >= MAX_VAR_OFF {
            return Err(format!(
                "value {} makes {tname} pointer be out of bounds",
                off.smin
            ));
        }
        if ptr.ty == RegType::Ctx {
            // Kernel allows it, but every later access is rejected; keep it simple.
        }
        let mut varpart = Reg::unknown();
        varpart.var = ptr.var;
        varpart.umin = ptr.umin;
        varpart.umax = ptr.umax;
        varpart.smin = ptr.smin;
        varpart.smax = ptr.smax;
        let nv = alu64(op, &varpart, off);
        let mut r = ptr.clone();
        r.var = nv.var;
        r.umin = nv.umin;
        r.umax = nv.umax;
        r.smin = nv.smin;
        r.smax = nv.smax;
        if ptr.ty.is_pkt() {
            // A new variable part makes a new family of pointers: its range must be proven
            // anew — except after subtracting a non-negative amount, which stays inside
            // what was proven (the access check refuses a negative variable part).
            r.id = self.new_id();
            if op == AluOp::Add || off.smin < 0 {
                r.range = 0;
            }
        }
        Ok(r)
    }

    // ---- memory ----------------------------------------------------------------------------

    /// The byte range `[lo, hi)` an access of `size` at `base + insn_off` may touch, relative
    /// to the object's start, and whether it is a single fixed offset.
    fn access_range(base: &Reg, insn_off: i64, size: usize) -> Option<(i64, i64, bool)> {
        let fixed = base.off as i64 + insn_off;
        if base.var.is_const() {
            let o = fixed + base.var.value as i64;
            return Some((o, o + size as i64, true));
        }
        if base.smin <= -MAX_VAR_OFF || base.smax >= MAX_VAR_OFF {
            return None;
        }
        Some((fixed + base.smin, fixed + base.smax + size as i64, false))
    }

    #[allow(clippy::too_many_arguments)]
    fn mem_access(
        &mut self,
        st: &mut State,
        regno: u8,
        base: &Reg,
        insn_off: i64,
        size: usize,
        store: Option<StoreVal>,
        signed: bool,
        atomic: bool,
    ) -> VResult<Option<Reg>> {
        let write = store.is_some();
        let leak = |what: &str| -> VResult<()> {
            if let Some(StoreVal::Reg(r, v)) = &store {
                if v.ty.is_ptr() {
                    return Err(format!("R{r} leaks addr into {what}"));
                }
            }
            Ok(())
        };
        let loaded = |v: Reg| -> Reg {
            if signed {
                sized_unknown(size, true)
            } else {
                v
            }
        };
        match base.ty {
            RegType::NotInit => Err(format!("R{regno} !read_ok")),
            RegType::Stack => {
                self.stack_access(st, regno, base, insn_off, size, store, signed, atomic)
            }
            RegType::Ctx => {
                if atomic {
                    return Err(format!(
                        "BPF_ATOMIC stores into R{regno} ctx is not allowed"
                    ));
                }
                if base.off != 0 || (base.var.is_const() && base.var.value != 0) {
                    let o = base.off as i64 + base.var.value as i64;
                    return Err(format!(
                        "dereference of modified ctx ptr R{regno} off={o} disallowed"
                    ));
                }
                if !base.var.is_const() {
                    return Err(format!(
                        "variable ctx access var_off={} disallowed",
                        base.var
                    ));
                }
                let acc = self
                    .env
                    .prog_type
                    .ctx_access(insn_off, size as u32, write)
                    .map_err(|extra| {
                        format!("invalid bpf_context access off={insn_off} size={size}{extra}")
                    })?;
                if signed && matches!(acc.kind, FieldKind::Packet(_)) {
                    return Err(format!(
                        "invalid bpf_context access off={insn_off} size={size}"
                    ));
                }
                leak("ctx")?;
                self.max_ctx_off = self.max_ctx_off.max((insn_off + size as i64) as u32);
                if write {
                    return Ok(None);
                }
                Ok(Some(self.field_value(acc.kind, size, signed)?))
            }
            RegType::MapValue => {
                let map = &self.maps()[base.aux as usize];
                let (lo, hi) = self.bounded_range(regno, base, insn_off, size, "map value")?;
                if lo < 0 || hi > map.value_size as i64 {
                    let off = if lo < 0 { lo } else { hi - size as i64 };
                    return Err(format!(
                        "invalid access to map value, value_size={} off={} size={}",
                        map.value_size, off, size
                    ));
                }
                if let Some(l) = map.spin_lock_off {
                    if lo < l as i64 + 4 && hi > l as i64 {
                        return Err(
                            "bpf_spin_lock cannot be accessed directly by load/store".into()
                        );
                    }
                }
                if write && map.read_only() {
                    return Err(format!(
                        "write into map forbidden, value_size={} off={} size={}",
                        map.value_size, lo, size
                    ));
                }
                leak("map")?;
                if write {
                    return Ok(None);
                }
                Ok(Some(sized_unknown(size, signed)))
            }
            RegType::Mem => {
                let (lo, hi) = self.bounded_range(regno, base, insn_off, size, "memory")?;
                if lo < 0 || hi > base.mem_size as i64 {
                    let off = if lo < 0 { lo } else { hi - size as i64 };
                    return Err(format!(
                        "invalid access to memory, mem_size={} off={} size={}",
                        base.mem_size, off, size
                    ));
                }
                if write && base.rdonly {
                    return Err(format!("R{regno} cannot write into rdonly mem"));
                }
                self.note_buf_access(base, hi);
                leak("mem")?;
                if write {
                    return Ok(None);
                }
                Ok(Some(loaded(sized_unknown(size, false))))
            }
            RegType::Packet | RegType::PacketMeta => {
                if write && !self.env.prog_type.packet_write {
                    return Err("cannot write into packet".into());
                }
                leak("packet")?;
                Self::check_packet_access(regno, base, insn_off, size as u64)?;
                if write {
                    return Ok(None);
                }
                Ok(Some(sized_unknown(size, signed)))
            }
            RegType::BtfId => {
                if write {
                    return Err(format!("R{regno} is a read-only pointer to a kernel struct: only read is supported"));
                }
                if !base.var.is_const() {
                    return Err(format!(
                        "R{regno} variable offset access to a kernel struct is not allowed"
                    ));
                }
                let s = &self.env.prog_type.structs[base.aux as usize];
                let off = base.off as i64 + base.var.value as i64 + insn_off;
                let acc = field_access(&s.fields, off, size as u32, false).map_err(|why| {
                    format!(
                        "access beyond struct {} at off {off} size {size}{why}",
                        s.name
                    )
                })?;
                if let Some(f) = s
                    .fields
                    .iter()
                    .find(|f| off >= f.off as i64 && off < (f.off + f.size) as i64)
                {
                    self.struct_reads.insert((s.name.clone(), f.name.clone()));
                }
                Ok(Some(self.field_value(acc.kind, size, signed)?))
            }
            t => Err(format!("R{regno} invalid mem access '{}'", t.name())),
        }
    }

    /// A `Buf` pointer reached byte `hi - 1`: remember the highest per slot.
    fn note_buf_access(&mut self, reg: &Reg, hi: i64) {
        if reg.aux & !1 == super::progtype::BUF_AUX_TAG {
            let slot = (reg.aux & 1) as usize;
            self.max_buf_access[slot] = self.max_buf_access[slot].max(hi.max(0) as u32);
        }
    }

    fn field_value(&mut self, kind: FieldKind, size: usize, signed: bool) -> VResult<Reg> {
        match kind {
            FieldKind::Scalar => Ok(sized_unknown(size, signed)),
            FieldKind::Ptr { target, nullable } => {
                let idx =
                    self.env.prog_type.find_struct(&target).ok_or_else(|| {
                        format!("context field points to unknown struct {target}")
                    })?;
                if size != 8 {
                    return Err("invalid size of pointer load".into());
                }
                let mut r = Reg::ptr(if nullable {
                    RegType::BtfIdOrNull
                } else {
                    RegType::BtfId
                });
                r.aux = idx as u32;
                if nullable {
                    r.id = self.new_id();
                }
                Ok(r)
            }
            FieldKind::Packet(which) => Ok(Reg::ptr(match which {
                PacketPtr::Data => RegType::Packet,
                PacketPtr::Meta => RegType::PacketMeta,
                PacketPtr::End => RegType::PacketEnd,
            })),
            FieldKind::Buf { slot, rdonly } => {
                if size != 8 {
                    return Err("invalid size of pointer load".into());
                }
                let mut r = Reg::ptr(RegType::MemOrNull);
                r.mem_size = super::progtype::BUF_MAX_SIZE;
                r.rdonly = rdonly;
                r.aux = super::progtype::BUF_AUX_TAG | slot as u32;
                r.id = self.new_id();
                Ok(r)
            }
            FieldKind::Unsupported(why) => Err(why.to_string()),
        }
    }

    /// An access of `size` bytes at `reg + insn_off` through a packet pointer: inside the
    /// range proven for the pointer's family (Linux's `check_packet_access`). Only the fixed
    /// offset counts: the variable part was there when the range was proven.
    fn check_packet_access(regno: u8, reg: &Reg, insn_off: i64, size: u64) -> VResult<()> {
        if reg.smin < 0 {
            return Err(format!(
                "R{regno} min value is negative, either use unsigned index or do a if (index >=0) check."
            ));
        }
        let outside = format!("R{regno} offset is outside of the packet");
        if reg.range < 0 {
            return Err(outside);
        }
        let off = reg.off as i64 + insn_off;
        if off < 0 || off + size as i64 > reg.range as i64 {
            return Err(format!(
                "invalid access to packet, off={off} size={size}, R{regno}(id={},off={off},r={})\n{outside}",
                reg.id, reg.range
            ));
        }
        Ok(())
    }

    /// Range of a map-value or memory access, with the kernel's checks on the variable part.
    fn bounded_range(
        &self,
        regno: u8,
        base: &Reg,
        insn_off: i64,
        size: usize,
        _what: &str,
    ) -> VResult<(i64, i64)> {
        if !base.var.is_const() {
            if base.smin < 0 {
                return Err(format!(
                    "R{regno} min value is negative, either use unsigned index or do a if (index >=0) check."
                ));
            }
            if base.umax >= MAX_VAR_OFF as u64 {
                return Err(format!(
                    "R{regno} unbounded memory access, make sure to bounds check any such access"
                ));
            }
        }
        let (lo, hi, _) = Self::access_range(base, insn_off, size).ok_or_else(|| {
            format!("R{regno} unbounded memory access, make sure to bounds check any such access")
        })?;
        Ok((lo, hi))
    }

    fn update_stack_depth(&mut self, st: &State, frame: usize, lo: i64) {
        let sp = st.frames[frame].subprog;
        let d = (-lo).max(0) as u32;
        if d > self.stack_depth[sp] {
            self.stack_depth[sp] = d;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn stack_access(
        &mut self,
        st: &mut State,
        regno: u8,
        base: &Reg,
        insn_off: i64,
        size: usize,
        store: Option<StoreVal>,
        signed: bool,
        atomic: bool,
    ) -> VResult<Option<Reg>> {
        let what = if store.is_some() {
            " write to"
        } else {
            " read from"
        };
        // Strict alignment for the stack (spill tracking relies on it).
        let fixed = base.off as i64 + insn_off;
        let t = base.var.add(Tnum::konst(fixed as u64));
        if t.value & (size as u64 - 1) != 0 || t.mask & (size as u64 - 1) != 0 {
            let v = if base.var.is_const() {
                format!("{}", base.var.value as i64)
            } else {
                base.var.to_string()
            };
            return Err(format!(
                "misaligned stack access off {v}+{}+{insn_off} size {size}",
                base.off
            ));
        }
        let Some((lo, hi, is_const)) = Self::access_range(base, insn_off, size) else {
            return Err(format!(
                "invalid unbounded variable-offset{what} stack R{regno}"
            ));
        };
        if lo < -MAX_BPF_STACK || hi > 0 {
            if is_const {
                return Err(format!("invalid{what} stack R{regno} off={lo} size={size}"));
            }
            return Err(format!(
                "invalid variable-offset{what} stack R{regno} var_off={} off={fixed} size={size}",
                base.var
            ));
        }
        let fno = base.frame as usize;
        if fno >= st.frames.len() {
            return Err(format!("R{regno} points to a frame that no longer exists"));
        }
        let cur_frame = st.frames.len() - 1;
        self.update_stack_depth(st, fno, lo);
        match store {
            Some(val) => {
                if let StoreVal::Reg(r, v) = &val {
                    if v.ty.is_ptr() {
                        if size != 8 {
                            return Err("invalid size of register spill".into());
                        }
                        if v.ty == RegType::Stack && fno != cur_frame && (v.frame as usize) > fno {
                            return Err(
                                "cannot spill pointers to stack into stack frame of the caller"
                                    .into(),
                            );
                        }
                        if !is_const {
                            return Err(format!(
                                "R{r} pointer spill at a variable stack offset is not allowed"
                            ));
                        }
                    }
                }
                if atomic {
                    // Read-modify-write: the bytes must be initialized data.
                    self.stack_read_check(st, fno, regno, base, lo, hi, size, is_const)?;
                }
                let frame = &mut st.frames[fno];
                if is_const {
                    let spill = match &val {
                        StoreVal::Reg(_, v) if size == 8 && lo % 8 == 0 => Some(v.clone()),
                        StoreVal::Imm(i) if size == 8 && lo % 8 == 0 => Some(Reg::konst(*i as u64)),
                        _ => None,
                    };
                    if let Some(mut r) = spill {
                        if r.ty == RegType::Scalar && r.is_const() {
                            r.id = 0;
                        }
                        let s = frame.slot_mut(lo);
                        s.bytes = [SlotByte::Spill; 8];
                        s.spill = r;
                    } else {
                        let zero = match &val {
                            StoreVal::Reg(_, v) => v.is_null(),
                            StoreVal::Imm(i) => *i == 0,
                            StoreVal::Unknown => false,
                        };
                        for o in lo..hi {
                            let s = frame.slot_mut(o);
                            s.scrub_spill();
                            let idx = o.rem_euclid(8) as usize;
                            s.bytes[idx] = if zero { SlotByte::Zero } else { SlotByte::Misc };
                        }
                    }
                } else {
                    let zero = matches!(&val, StoreVal::Imm(0))
                        || matches!(&val, StoreVal::Reg(_, v) if v.is_null());
                    for o in lo..hi {
                        let s = frame.slot_mut(o);
                        s.scrub_spill();
                        let idx = o.rem_euclid(8) as usize;
                        let b = &mut s.bytes[idx];
                        if *b != SlotByte::Invalid && !(zero && *b == SlotByte::Zero) {
                            *b = SlotByte::Misc;
                        }
                    }
                }
                Ok(None)
            }
            None => {
                let frame = &st.frames[fno];
                if is_const {
                    if let Some(s) = frame.slot(lo) {
                        if s.is_spill() && s.spill.ty != RegType::NotInit {
                            if size == 8 {
                                let mut r = s.spill.clone();
                                if signed {
                                    r = sized_unknown(8, true);
                                }
                                return Ok(Some(r));
                            }
                            if s.spill.ty != RegType::Scalar {
                                return Err("invalid size of register fill".into());
                            }
                            if let Some(c) = s.spill.const_value() {
                                let shift = lo.rem_euclid(8) * 8;
                                let mask = (1u64 << (size * 8)) - 1;
                                let v = (c >> shift) & mask;
                                return Ok(Some(Reg::konst(if signed {
                                    sign_extend(v, size)
                                } else {
                                    v
                                })));
                            }
                            return Ok(Some(sized_unknown(size, signed)));
                        }
                    }
                }
                self.stack_read_check(st, fno, regno, base, lo, hi, size, is_const)?;
                let frame = &st.frames[fno];
                if (lo..hi).all(|o| frame.byte(o) == SlotByte::Zero) {
                    return Ok(Some(Reg::konst(0)));
                }
                Ok(Some(sized_unknown(size, signed)))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn stack_read_check(
        &self,
        st: &State,
        fno: usize,
        regno: u8,
        base: &Reg,
        lo: i64,
        hi: i64,
        size: usize,
        is_const: bool,
    ) -> VResult<()> {
        let frame = &st.frames[fno];
        for o in lo..hi {
            let b = frame.byte(o);
            let bad = match b {
                SlotByte::Invalid => true,
                SlotByte::Spill => frame.slot(o).is_none_or(|s| s.spill.ty != RegType::Scalar),
                _ => false,
            };
            if bad {
                if is_const {
                    return Err(format!(
                        "invalid read from stack off {lo}+{} size {size}",
                        o - lo
                    ));
                }
                return Err(format!(
                    "invalid read from stack R{regno} var_off {}+{} size {size}",
                    base.var, lo
                ));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn atomic(
        &mut self,
        st: &mut State,
        size: MemSize,
        op: AtomicOp,
        fetch: bool,
        dst: u8,
        src: u8,
        off: i16,
    ) -> VResult<()> {
        let v = self.read_reg(st, src)?.clone();
        let base = self.read_reg(st, dst)?.clone();
        if op == AtomicOp::CmpXchg {
            let r0 = self.read_reg(st, 0)?;
            if r0.ty.is_ptr() {
                return Err("R0 leaks addr into mem".into());
            }
        }
        if v.ty.is_ptr() {
            return Err(format!("R{src} leaks addr into mem"));
        }
        let sz = size.bytes();
        if !matches!(base.ty, RegType::Stack | RegType::MapValue | RegType::Mem) {
            if base.ty == RegType::Ctx || base.ty == RegType::BtfId || base.ty.is_pkt() {
                return Err(format!(
                    "BPF_ATOMIC stores into R{dst} {} is not allowed",
                    base.ty.name()
                ));
            }
            return self
                .mem_access(st, dst, &base, off as i64, sz, None, false, true)
                .map(|_| ());
        }
        // Natural alignment for atomics.
        let t = base
            .var
            .add(Tnum::konst((base.off as i64 + off as i64) as u64));
        if t.value & (sz as u64 - 1) != 0 || t.mask & (sz as u64 - 1) != 0 {
            return Err(format!(
                "misaligned access off {}+{}+{off} size {sz}",
                base.var, base.off
            ));
        }
        // Read check, then write.
        if base.ty != RegType::Stack {
            self.mem_access(st, dst, &base, off as i64, sz, None, false, false)?;
        }
        self.mem_access(
            st,
            dst,
            &base,
            off as i64,
            sz,
            Some(StoreVal::Unknown),
            false,
            true,
        )?;
        let res = sized_unknown(sz, false);
        if op == AtomicOp::CmpXchg {
            st.regs_mut()[0] = res;
        } else if fetch {
            self.check_dst_writable(src)?;
            st.regs_mut()[src as usize] = res;
        }
        Ok(())
    }

    // ---- jumps -----------------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn cond_jmp(
        &mut self,
        st: &mut State,
        pc: usize,
        width: Width,
        cond: JmpCond,
        dst: u8,
        src: Operand,
        off: i16,
    ) -> VResult<Step> {
        let target = (pc as i64 + 1 + off as i64) as usize;
        let next = pc + 1;
        let w32 = width == Width::W32;
        let a = self.read_reg(st, dst)?.clone();
        let (b, src_reg) = match src {
            Operand::Reg(r) => (self.read_reg(st, r)?.clone(), Some(r)),
            Operand::Imm(i) => (
                Reg::konst(if w32 {
                    i as u32 as u64
                } else {
                    i as i64 as u64
                }),
                None,
            ),
        };
        if a.ty.is_ptr() || b.ty.is_ptr() {
            let (p, preg, other) = if a.ty.is_ptr() {
                (&a, dst, &b)
            } else {
                (&b, src_reg.unwrap(), &a)
            };
            if !w32 && a.ty.is_pkt_any() && b.ty.is_pkt_any() {
                let s = src_reg.expect("two pointers: a register operand");
                return Ok(self.pkt_cmp(st, cond, dst, s, &a, &b, target, next));
            }
            if !w32 && p.ty.is_pkt_any() && other.is_null() {
                // Linux does not assume a packet pointer is non-NULL: both ways, unrefined.
                return Ok(Step::Push(st.clone(), target, next));
            }
            if !w32 && matches!(cond, JmpCond::Eq | JmpCond::Ne) && other.is_null() {
                if p.ty.maybe_null() {
                    let id = p.id;
                    let mut null_st = st.clone();
                    self.mark_ptr_or_null(&mut null_st, id, true);
                    self.mark_ptr_or_null(st, id, false);
                    // `st` is now the non-null side.
                    return Ok(if cond == JmpCond::Eq {
                        Step::Push(null_st, target, next)
                    } else {
                        let nonnull = std::mem::replace(st, null_st);
                        Step::Push(nonnull, target, next)
                    });
                }
                // A valid pointer is never NULL.
                return Ok(Step::Next(if cond == JmpCond::Eq { next } else { target }));
            }
            return Err(format!("R{preg} pointer comparison prohibited"));
        }
        let (va, vb) = if w32 {
            (a.view32(), b.view32())
        } else {
            (a.view64(), b.view64())
        };
        match branch_taken(cond, &va, &vb) {
            Some(true) => return Ok(Step::Next(target)),
            Some(false) => return Ok(Step::Next(next)),
            None => {}
        }
        let mut taken = st.clone();
        let ok_taken = self.refine_regs(&mut taken, cond, w32, dst, &a, src_reg, &b, false);
        let ok_fall = self.refine_regs(st, cond, w32, dst, &a, src_reg, &b, true);
        match (ok_taken, ok_fall) {
            (true, true) => Ok(Step::Push(taken, target, next)),
            (true, false) => {
                *st = taken;
                Ok(Step::Next(target))
            }
            (false, true) => Ok(Step::Next(next)),
            (false, false) => Ok(Step::Next(next)),
        }
    }

    /// A comparison of two packet pointers (Linux's `try_match_pkt_pointers` and
    /// `is_pkt_ptr_branch_taken`). Written as `p OP bound`, where `p` is a data pointer and
    /// `bound` the packet's end, or `p` a metadata pointer and `bound` the unmoved data
    /// pointer: the branch where `p <= bound` proves `[base, p.off)` of `p`'s family (one
    /// byte more where `p < bound`), and the branch where `p >= bound` (or `>`) marks `p` as
    /// at (or beyond) the end, which decides later comparisons of `p` with the end.
    #[allow(clippy::too_many_arguments)]
    fn pkt_cmp(
        &mut self,
        st: &mut State,
        cond: JmpCond,
        dst: u8,
        src: u8,
        a: &Reg,
        b: &Reg,
        target: usize,
        next: usize,
    ) -> Step {
        use JmpCond::*;
        let init_data = |r: &Reg| r.ty == RegType::Packet && r.off == 0 && r.var.equals_const(0);
        let (preg, p, op) = if (a.ty == RegType::Packet && b.ty == RegType::PacketEnd)
            || (a.ty == RegType::PacketMeta && init_data(b))
        {
            (dst, a, cond)
        } else if (a.ty == RegType::PacketEnd && b.ty == RegType::Packet)
            || (init_data(a) && b.ty == RegType::PacketMeta)
        {
            let flipped = match cond {
                Gt => Lt,
                Ge => Le,
                Lt => Gt,
                Le => Ge,
                c => c,
            };
            (src, b, flipped)
        } else {
            // Any other pair: both ways, nothing learnt.
            return Step::Push(st.clone(), target, next);
        };
        if !matches!(op, Gt | Ge | Lt | Le) {
            return Step::Push(st.clone(), target, next);
        }
        // A pointer already known to be at or past the end decides the branch.
        if p.ty == RegType::Packet && p.range < 0 {
            let beyond = p.range == BEYOND_PKT_END;
            let decided = match op {
                Gt if beyond => Some(true),
                Le if beyond => Some(false),
                Ge => Some(true),
                Lt => Some(false),
                _ => None,
            };
            if let Some(t) = decided {
                return Step::Next(if t { target } else { next });
            }
        }
        let mut taken = st.clone();
        match op {
            Gt => {
                mark_pkt_end(&mut taken, preg, BEYOND_PKT_END);
                find_good_pkt_pointers(st, p, false);
            }
            Ge => {
                mark_pkt_end(&mut taken, preg, AT_PKT_END);
                find_good_pkt_pointers(st, p, true);
            }
            Lt => {
                find_good_pkt_pointers(&mut taken, p, true);
                mark_pkt_end(st, preg, AT_PKT_END);
            }
            _ => {
                find_good_pkt_pointers(&mut taken, p, false);
                mark_pkt_end(st, preg, BEYOND_PKT_END);
            }
        }
        Step::Push(taken, target, next)
    }

    /// Applies `cond` (or its negation) to the operands in `st`; `false` if infeasible.
    #[allow(clippy::too_many_arguments)]
    fn refine_regs(
        &self,
        st: &mut State,
        cond: JmpCond,
        w32: bool,
        dst: u8,
        a: &Reg,
        src: Option<u8>,
        b: &Reg,
        negated: bool,
    ) -> bool {
        let signed = matches!(
            cond,
            JmpCond::Sgt | JmpCond::Sge | JmpCond::Slt | JmpCond::Sle
        );
        let (mut a2, mut b2) = (a.clone(), b.clone());
        if w32 {
            // Only when both operands' 64-bit values equal their 32-bit views.
            let lim = if signed {
                i32::MAX as u64
            } else {
                u32::MAX as u64
            };
            let b_ok = match src {
                Some(_) => b.umax <= lim,
                None => {
                    let v = b.var.value;
                    if signed {
                        b2 = Reg::konst(v as u32 as i32 as i64 as u64);
                    }
                    true
                }
            };
            if a.umax > lim || !b_ok {
                return true;
            }
        }
        let ok = if negated {
            match negate(cond) {
                Some(nc) => reg::refine(nc, &mut a2, &mut b2),
                None => reg::refine_not_set(&mut a2, &b2),
            }
        } else {
            reg::refine(cond, &mut a2, &mut b2)
        };
        if !ok {
            return false;
        }
        let keep_id = |r: &mut Reg, old: &Reg| r.id = old.id;
        keep_id(&mut a2, a);
        st.regs_mut()[dst as usize] = a2.clone();
        propagate_scalar(st, &a2);
        if let Some(s) = src {
            if s != dst {
                keep_id(&mut b2, b);
                st.regs_mut()[s as usize] = b2.clone();
                propagate_scalar(st, &b2);
            }
        }
        true
    }

    /// After a null check: every copy of the pointer with `id` becomes NULL (a scalar 0) or
    /// the non-null type.
    fn mark_ptr_or_null(&self, st: &mut State, id: u32, is_null: bool) {
        let mut released_ref = 0;
        st.for_each_reg(|r| {
            if r.id == id && r.ty.maybe_null() {
                if is_null {
                    if r.ref_id != 0 {
                        released_ref = r.ref_id;
                    }
                    *r = Reg::konst(0);
                } else {
                    r.ty = r.ty.non_null();
                }
            }
        });
        if is_null && released_ref != 0 {
            st.refs.retain(|x| x.id != released_ref);
        }
    }

    // ---- calls -----------------------------------------------------------------------------

    fn local_call(&mut self, st: &mut State, pc: usize, target: usize) -> VResult<Step> {
        if st.lock.is_some() {
            return Err("function calls are not allowed while holding a lock".into());
        }
        check_call_depth(st)?;
        let frameno = st.frames.len() as u8;
        let mut f = Frame::new(frameno, pc, self.cfg.subprog_of[target]);
        for r in 1..=5 {
            f.regs[r] = st.regs()[r].clone();
        }
        for r in 0..=5 {
            st.regs_mut()[r] = Reg::not_init();
        }
        st.frames.push(f);
        Ok(Step::Next(target))
    }

    fn exit(&mut self, st: &mut State) -> VResult<Step> {
        if st.lock.is_some() {
            return Err("bpf_spin_unlock is missing".into());
        }
        let depth = st.frames.len();
        if depth > 1 {
            let r0 = self.read_reg(st, 0)?.clone();
            let callee = st.frames.pop().expect("callee frame");
            if let Some(cb) = callee.callback {
                if r0.ty != RegType::Scalar {
                    return Err(format!(
                        "At callback return the register R0 is not a known value ({})",
                        r0.ty.name()
                    ));
                }
                if r0.smin < cb.ret_min || r0.smax > cb.ret_max {
                    return Err(invalid_scalar(
                        "At callback return",
                        &r0,
                        cb.ret_min,
                        cb.ret_max,
                    ));
                }
                if let Some(r) = st.refs.iter().find(|r| r.frame >= depth - 1) {
                    return Err(format!(
                        "Unreleased reference id={} alloc_insn={}",
                        r.id, r.insn
                    ));
                }
                // The helper may call the callback again: resume at the call, one unroll
                // deeper.
                let f = st.cur_mut();
                f.cb_unroll = f.cb_unroll.saturating_add(1);
                return Ok(Step::Next(callee.callsite));
            }
            if r0.ty == RegType::Stack && r0.frame as usize >= depth - 1 {
                return Err("cannot return stack pointer to the caller frame".into());
            }
            st.regs_mut()[0] = r0;
            return Ok(Step::Next(callee.callsite + 1));
        }
        if let Some(r) = st.refs.first() {
            return Err(format!(
                "Unreleased reference id={} alloc_insn={}",
                r.id, r.insn
            ));
        }
        let r0 = self.read_reg(st, 0)?;
        if r0.ty.is_ptr() {
            return Err("R0 leaks addr as return value".into());
        }
        if let Some((lo, hi)) = self.env.prog_type.ret_range {
            let inside = if self.env.prog_type.ret_32bit {
                s32_bounds(r0).is_some_and(|(a, b)| a >= lo && b <= hi)
            } else {
                r0.smin >= lo && r0.smax <= hi
            };
            if !inside {
                return Err(invalid_scalar("At program exit", r0, lo, hi));
            }
        }
        Ok(Step::Done)
    }

    fn helper_call(&mut self, st: &mut State, pc: usize, id: i32) -> VResult<Step> {
        let Some(proto) = (id >= 0)
            .then(|| self.env.helper_protos.get(id as u32))
            .flatten()
        else {
            return Err(format!("invalid func unknown#{id}"));
        };
        let proto: HelperProto = proto.clone();
        let name = proto.name;
        if !self.env.prog_type.helper_allowed(id as u32) {
            return Err(format!(
                "unknown func {name}#{id}: program of this type cannot use helper {name}#{id}"
            ));
        }
        if st.lock.is_some() && proto.lock != LockOp::Unlock {
            return Err("function calls are not allowed while holding a lock".into());
        }
        self.helpers_used.insert(id as u32);
        let mut meta = Meta::default();
        for i in 0..5 {
            self.check_arg(st, (i + 1) as u8, proto.args[i], &mut meta, &proto, id)?;
        }
        // Effects on memory written by the helper.
        for (regno, size) in std::mem::take(&mut meta.writes) {
            let r = st.regs()[regno as usize].clone();
            if r.ty == RegType::Stack && size > 0 {
                if let Some((lo, hi, is_const)) = Self::access_range(&r, 0, size as usize) {
                    let frame = &mut st.frames[r.frame as usize];
                    for o in lo..hi {
                        let s = frame.slot_mut(o);
                        s.scrub_spill();
                        let idx = o.rem_euclid(8) as usize;
                        if is_const || s.bytes[idx] != SlotByte::Invalid {
                            s.bytes[idx] = SlotByte::Misc;
                        }
                    }
                }
            }
        }
        if let Some(rid) = meta.release {
            st.refs.retain(|r| r.id != rid);
            st.for_each_reg(|r| {
                if r.ref_id == rid {
                    *r = Reg::unknown();
                }
            });
        }
        match proto.lock {
            LockOp::Lock => st.lock = meta.lock,
            LockOp::Unlock => st.lock = None,
            LockOp::None => {}
        }
        // The callback path, from the state before the call clobbers anything.
        let mut cb_state = None;
        if let Some(func) = meta.func {
            check_call_depth(st)?;
            let mut s = st.clone();
            let frameno = s.frames.len() as u8;
            let mut f = Frame::new(frameno, pc, self.cfg.subprog_of[func as usize]);
            f.regs[1] = Reg::urange(0, MAX_LOOPS - 1);
            f.regs[2] = s.regs()[3].clone();
            f.callback = Some(CallbackInfo {
                ret_min: 0,
                ret_max: 1,
            });
            s.frames.push(f);
            cb_state = Some((s, func as usize));
        }
        for r in 1..=5 {
            st.regs_mut()[r] = Reg::not_init();
        }
        if proto.changes_pkt_data {
            // The packet may have moved: every packet pointer, in every frame and spill, is a
            // number now (Linux's `clear_all_pkt_pointers` for a privileged loader).
            st.for_each_reg(|r| {
                if r.ty.is_pkt_any() {
                    *r = Reg::unknown();
                }
            });
        }
        let r0 = match proto.ret {
            RetKind::Integer(None) => Reg::unknown(),
            RetKind::Integer(Some((lo, hi))) => Reg::urange(lo, hi),
            RetKind::Void => Reg::not_init(),
            RetKind::MapValueOrNull => {
                let m = meta.map.ok_or(
                    "kernel subsystem misconfigured verifier: map value return without a map",
                )?;
                let mut r = Reg::ptr(RegType::MapValueOrNull);
                r.aux = m;
                r.id = self.new_id();
                r
            }
            RetKind::BtfId(name) => {
                let idx = self.env.prog_type.find_struct(name).ok_or_else(|| {
                    format!(
                        "helper {} returns struct {name}, which this program type does not model",
                        proto.name
                    )
                })?;
                let mut r = Reg::ptr(RegType::BtfId);
                r.aux = idx as u32;
                r
            }
            RetKind::AllocMemOrNull => {
                let size = meta
                    .alloc_size
                    .ok_or("kernel subsystem misconfigured verifier: no allocation size")?;
                let mut r = Reg::ptr(RegType::MemOrNull);
                r.mem_size = size as u32;
                r.id = self.new_id();
                r.ref_id = r.id;
                st.refs.push(RefState {
                    id: r.id,
                    insn: pc,
                    frame: st.frames.len() - 1,
                });
                r
            }
        };
        st.regs_mut()[0] = r0;
        match cb_state {
            Some((s, at)) => Ok(Step::Push(s, at, pc + 1)),
            None => Ok(Step::Next(pc + 1)),
        }
    }

    fn check_arg(
        &mut self,
        st: &mut State,
        regno: u8,
        kind: ArgKind,
        meta: &mut Meta,
        proto: &HelperProto,
        id: i32,
    ) -> VResult<()> {
        if kind == ArgKind::DontCare {
            return Ok(());
        }
        let reg = self.read_reg(st, regno)?.clone();
        let name = proto.name;
        if reg.ty.is_pkt()
            && matches!(
                kind,
                ArgKind::MapKey | ArgKind::MapValue | ArgKind::MapValueOrNull | ArgKind::Mem { .. }
            )
            && !proto.pkt_access
        {
            return Err("helper access to the packet is not allowed".into());
        }
        match kind {
            ArgKind::DontCare => Ok(()),
            ArgKind::Anything => {
                if reg.ty.is_ptr() && !self.env.prog_type.ptr_leaks {
                    return Err(format!("R{regno} leaks addr into helper function"));
                }
                Ok(())
            }
            ArgKind::ConstMapPtr => {
                if reg.ty != RegType::MapPtr {
                    return Err(type_err(regno, &reg, "map_ptr"));
                }
                let map = &self.maps()[reg.aux as usize];
                let ok_proto = proto.map_types.is_none_or(|l| l.contains(&map.map_type));
                let ok_map = map
                    .map_type
                    .only_helpers()
                    .is_none_or(|l| l.contains(&(id as u32)));
                if !ok_proto || !ok_map {
                    return Err(format!(
                        "cannot pass map_type {} into func {name}#{id}",
                        map.map_type.0
                    ));
                }
                meta.map = Some(reg.aux);
                Ok(())
            }
            ArgKind::MapKey | ArgKind::MapValue | ArgKind::MapValueOrNull => {
                let Some(m) = meta.map else {
                    return Err("invalid map_ptr to access map->key".into());
                };
                if kind == ArgKind::MapValueOrNull && reg.is_null() {
                    return Ok(());
                }
                let map = &self.maps()[m as usize];
                let size = if kind == ArgKind::MapKey {
                    map.key_size
                } else {
                    map.value_size
                };
                self.helper_mem(st, regno, &reg, size as u64, true, false)
            }
            ArgKind::Mem {
                read,
                write,
                nullable,
            } => {
                if nullable && reg.is_null() {
                    meta.mem = Some((regno, true, read, write));
                    return Ok(());
                }
                if !matches!(
                    reg.ty,
                    RegType::Stack
                        | RegType::MapValue
                        | RegType::Mem
                        | RegType::Packet
                        | RegType::PacketMeta
                ) {
                    return Err(type_err(regno, &reg, "fp, pkt, pkt_meta, map_value, mem"));
                }
                meta.mem = Some((regno, false, read, write));
                Ok(())
            }
            ArgKind::ConstSize | ArgKind::ConstSizeOrZero => {
                if reg.ty != RegType::Scalar {
                    return Err(type_err(regno, &reg, "scalar"));
                }
                let zero_ok = kind == ArgKind::ConstSizeOrZero;
                if reg.smin < 0 {
                    return Err(format!(
                        "R{regno} min value is negative, either use unsigned or 'var &= const'"
                    ));
                }
                if reg.umin == 0 && !zero_ok {
                    return Err(format!(
                        "R{regno} invalid zero-sized read: u64=[{},{}]",
                        reg.umin, reg.umax
                    ));
                }
                if reg.umax >= MAX_VAR_SIZ {
                    return Err(format!("R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'"));
                }
                let Some((mreg, null, read, write)) = meta.mem.take() else {
                    return Err(
                        "kernel subsystem misconfigured verifier: size without memory".into(),
                    );
                };
                if null {
                    if reg.umax != 0 {
                        return Err(format!("R{mreg} type=scalar expected=fp"));
                    }
                    return Ok(());
                }
                if reg.umax == 0 {
                    return Ok(());
                }
                let m = st.regs()[mreg as usize].clone();
                if read {
                    self.helper_mem(st, mreg, &m, reg.umax, true, write)?;
                } else {
                    self.helper_mem(st, mreg, &m, reg.umax, false, true)?;
                }
                if write {
                    meta.writes.push((mreg, reg.umax));
                }
                Ok(())
            }
            ArgKind::ConstAllocSize => {
                if reg.ty != RegType::Scalar {
                    return Err(type_err(regno, &reg, "scalar"));
                }
                let Some(v) = reg.const_value() else {
                    return Err(format!("R{regno} is not a known constant'"));
                };
                if v >= MAX_VAR_SIZ {
                    return Err(format!("R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'"));
                }
                meta.alloc_size = Some(v);
                Ok(())
            }
            ArgKind::Ctx => {
                if reg.ty != RegType::Ctx {
                    return Err(type_err(regno, &reg, "ctx"));
                }
                if reg.off != 0 || !reg.var.equals_const(0) {
                    return Err(format!(
                        "dereference of modified ctx ptr R{regno} off={} disallowed",
                        reg.off
                    ));
                }
                Ok(())
            }
            ArgKind::Func => {
                if reg.ty != RegType::Func {
                    return Err(type_err(regno, &reg, "func"));
                }
                meta.func = Some(reg.aux);
                Ok(())
            }
            ArgKind::StackOrNull => {
                if reg.is_null() {
                    return Ok(());
                }
                if reg.ty != RegType::Stack {
                    return Err(type_err(regno, &reg, "fp"));
                }
                Ok(())
            }
            ArgKind::ReleaseAllocMem => {
                if reg.ty != RegType::Mem {
                    return Err(type_err(regno, &reg, "ringbuf_mem"));
                }
                if reg.ref_id == 0 || !st.refs.iter().any(|r| r.id == reg.ref_id) {
                    return Err(format!(
                        "R{regno} must be referenced when passed to release function"
                    ));
                }
                if reg.off != 0 || !reg.var.equals_const(0) {
                    return Err(format!(
                        "R{regno} must have zero fixed offset when passed to release func"
                    ));
                }
                meta.release = Some(reg.ref_id);
                Ok(())
            }
            ArgKind::SpinLock => {
                if reg.ty != RegType::MapValue {
                    return Err(type_err(regno, &reg, "map_value"));
                }
                if !reg.var.is_const() {
                    return Err(format!(
                        "R{regno} doesn't have constant offset. bpf_spin_lock has to be at the constant offset"
                    ));
                }
                let map = &self.maps()[reg.aux as usize];
                let Some(lock_off) = map.spin_lock_off else {
                    return Err(format!(
                        "map '{}' has to have BTF in order to use bpf_spin_lock",
                        map.name
                    ));
                };
                let off = reg.off as i64 + reg.var.value as i64;
                if off != lock_off as i64 {
                    return Err(format!(
                        "off {off} doesn't point to 'struct bpf_spin_lock' that is at {lock_off}"
                    ));
                }
                match proto.lock {
                    LockOp::Lock => {
                        if st.lock.is_some() {
                            return Err("Locking two bpf_spin_locks are not allowed".into());
                        }
                        meta.lock = Some((reg.aux, reg.id));
                    }
                    LockOp::Unlock => match st.lock {
                        None => return Err("bpf_spin_unlock without taking a lock".into()),
                        Some((m, i)) if m != reg.aux || i != reg.id => {
                            return Err("bpf_spin_unlock of different lock".into());
                        }
                        _ => {}
                    },
                    LockOp::None => {}
                }
                Ok(())
            }
            ArgKind::BtfId {
                name: sname,
                nullable,
            } => {
                if nullable && reg.is_null() {
                    return Ok(());
                }
                let ok = matches!(reg.ty, RegType::BtfId | RegType::BtfIdOrNull)
                    && (reg.ty == RegType::BtfId || nullable)
                    && self
                        .env
                        .prog_type
                        .structs
                        .get(reg.aux as usize)
                        .is_some_and(|s| s.name == sname);
                if !ok {
                    return Err(type_err(regno, &reg, &format!("ptr_{sname}")));
                }
                if reg.off != 0 || !reg.var.equals_const(0) {
                    return Err(format!(
                        "R{regno} must have zero offset when passed to helper"
                    ));
                }
                Ok(())
            }
            ArgKind::ConstStr => {
                if reg.ty != RegType::MapValue {
                    return Err(type_err(regno, &reg, "map_value"));
                }
                let map = &self.maps()[reg.aux as usize];
                if !map.read_only() {
                    return Err(format!("R{regno} does not point to a readonly map'"));
                }
                if !reg.var.is_const() {
                    return Err(format!("R{regno} is not a constant address'"));
                }
                let off = reg.off as i64 + reg.var.value as i64;
                if off < 0 || off >= map.value_size as i64 {
                    return Err(format!(
                        "invalid access to map value, value_size={} off={off} size=1",
                        map.value_size
                    ));
                }
                Ok(())
            }
        }
    }

    /// Memory passed to a helper: `size` bytes at the pointer in `regno`.
    fn helper_mem(
        &mut self,
        st: &mut State,
        regno: u8,
        reg: &Reg,
        size: u64,
        read: bool,
        write: bool,
    ) -> VResult<()> {
        let size_us = size as usize;
        match reg.ty {
            RegType::Stack => {
                let Some((lo, hi, is_const)) = Self::access_range(reg, 0, size_us) else {
                    return Err(format!(
                        "invalid unbounded variable-offset indirect access to stack R{regno}"
                    ));
                };
                if lo < -MAX_BPF_STACK || hi > 0 {
                    if is_const {
                        return Err(format!(
                            "invalid indirect access to stack R{regno} off={lo} size={size}"
                        ));
                    }
                    return Err(format!(
                        "invalid variable-offset indirect access to stack R{regno} var_off={} off={} size={size}",
                        reg.var, reg.off
                    ));
                }
                let fno = reg.frame as usize;
                if fno >= st.frames.len() {
                    return Err(format!("R{regno} points to a frame that no longer exists"));
                }
                self.update_stack_depth(st, fno, lo);
                if read {
                    let frame = &st.frames[fno];
                    // A spilled pointer may be read by a helper when pointers may leak (a
                    // CAP_PERFMON loader: bpf_seq_printf's argument array holds pointers).
                    let leaks = self.env.prog_type.ptr_leaks;
                    for o in lo..hi {
                        let bad = match frame.byte(o) {
                            SlotByte::Invalid => true,
                            SlotByte::Spill => frame
                                .slot(o)
                                .is_none_or(|s| s.spill.ty != RegType::Scalar && !leaks),
                            _ => false,
                        };
                        if bad {
                            if is_const {
                                return Err(format!("invalid indirect read from stack R{regno} off {lo}+{} size {size}", o - lo));
                            }
                            return Err(format!(
                                "invalid indirect read from stack R{regno} var_off {}+{} size {size}",
                                reg.var, reg.off
                            ));
                        }
                    }
                }
                Ok(())
            }
            RegType::MapValue => {
                let map = &self.maps()[reg.aux as usize];
                let (lo, hi) = self.bounded_range(regno, reg, 0, size_us, "map value")?;
                if lo < 0 || hi > map.value_size as i64 {
                    let off = if lo < 0 { lo } else { hi - size as i64 };
                    return Err(format!(
                        "invalid access to map value, value_size={} off={off} size={size}",
                        map.value_size
                    ));
                }
                if write && map.read_only() {
                    return Err(format!(
                        "write into map forbidden, value_size={} off={lo} size={size}",
                        map.value_size
                    ));
                }
                Ok(())
            }
            RegType::Mem => {
                let (lo, hi) = self.bounded_range(regno, reg, 0, size_us, "memory")?;
                if lo < 0 || hi > reg.mem_size as i64 {
                    let off = if lo < 0 { lo } else { hi - size as i64 };
                    return Err(format!(
                        "invalid access to memory, mem_size={} off={off} size={size}",
                        reg.mem_size
                    ));
                }
                if write && reg.rdonly {
                    return Err(format!("R{regno} cannot write into rdonly mem"));
                }
                self.note_buf_access(reg, hi);
                Ok(())
            }
            RegType::Packet | RegType::PacketMeta => {
                if write && !self.env.prog_type.packet_write {
                    return Err("cannot write into packet".into());
                }
                Self::check_packet_access(regno, reg, 0, size)
            }
            _ => Err(type_err(regno, reg, "fp, map_value, mem")),
        }
    }
}

#[derive(Default)]
struct Meta {
    map: Option<u32>,
    /// Pending memory argument: (regno, is NULL, helper reads, helper writes).
    mem: Option<(u8, bool, bool, bool)>,
    /// Memory the helper writes: (regno, size).
    writes: Vec<(u8, u64)>,
    alloc_size: Option<u64>,
    func: Option<u32>,
    release: Option<u32>,
    lock: Option<(u32, u32)>,
}

/// After `p <= bound` (`p < bound` if `open`) is known: every pointer of `p`'s type and family
/// has `[0, p.off)` (`[0, p.off]`) proven. Nothing is learnt from a negative offset, from
/// `p < bound` at offset 0, or when the variable part could overflow past the packet.
fn find_good_pkt_pointers(st: &mut State, p: &Reg, open: bool) {
    if p.off < 0 || (p.off == 0 && open) {
        return;
    }
    if p.umax > MAX_PACKET_OFF || p.umax + p.off as u64 > MAX_PACKET_OFF {
        return;
    }
    let new_range = p.off + open as i32;
    let (ty, id) = (p.ty, p.id);
    st.for_each_reg(|r| {
        if r.ty == ty && r.id == id {
            r.range = r.range.max(new_range);
        }
    });
}

/// After `p >= end` (`AT_PKT_END`) or `p > end` (`BEYOND_PKT_END`): only that register of a
/// data pointer is marked (as Linux does).
fn mark_pkt_end(st: &mut State, regno: u8, mark: i32) {
    let r = &mut st.regs_mut()[regno as usize];
    if r.ty == RegType::Packet {
        r.range = mark;
    }
}

/// Copies refined bounds to every scalar linked to `r` by id.
fn propagate_scalar(st: &mut State, r: &Reg) {
    if r.ty != RegType::Scalar || r.id == 0 {
        return;
    }
    let src = r.clone();
    st.for_each_reg(|x| {
        if x.ty == RegType::Scalar && x.id == src.id {
            *x = src.clone();
        }
    });
}

/// Signed bounds of the low 32 bits of a scalar, where the 64-bit facts determine them: a
/// constant, a value whose 64-bit signed range fits an int, or one whose upper half is
/// known zero and whose unsigned range does not cross the sign boundary.
fn s32_bounds(r: &Reg) -> Option<(i64, i64)> {
    if r.var.mask == 0 {
        let v = r.var.value as u32 as i32 as i64;
        return Some((v, v));
    }
    if r.smin >= i32::MIN as i64 && r.smax <= i32::MAX as i64 {
        return Some((r.smin, r.smax));
    }
    if r.umax <= u32::MAX as u64 {
        let (a, b) = (r.umin as u32, r.umax as u32);
        if b <= i32::MAX as u32 || a > i32::MAX as u32 {
            return Some((a as i32 as i64, b as i32 as i64));
        }
    }
    None
}

fn invalid_scalar(ctx: &str, r: &Reg, lo: i64, hi: i64) -> String {
    let mut s = format!("{ctx} the register R0 has");
    let mut unknown = true;
    if r.smin > i64::MIN {
        s.push_str(&format!(" smin={}", r.smin));
        unknown = false;
    }
    if r.smax < i64::MAX {
        s.push_str(&format!(" smax={}", r.smax));
        unknown = false;
    }
    if unknown {
        s.push_str(" unknown scalar value");
    }
    s.push_str(&format!(" should have been in [{lo}, {hi}]"));
    s
}

#[allow(dead_code)]
fn describe(r: &Reg, maps: &[MapInfo]) -> String {
    fmt_reg(r, maps)
}

#[allow(dead_code)]
fn view_of(r: &Reg) -> View {
    r.view64()
}

/// A call from `st` would need one frame more: rejected past [`MAX_CALL_FRAMES`].
fn check_call_depth(st: &State) -> VResult<()> {
    if st.frames.len() >= MAX_CALL_FRAMES {
        return Err(format!(
            "the call stack of {} frames is too deep",
            st.frames.len() + 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::insn::Insn;
    use crate::verifier::{verify, HelperProtos, MapInfo, MapType, ProgTypeSpec, VerifierEnv};

    fn check(insns: &[Insn], maps: &[MapInfo]) -> Result<(), (usize, String)> {
        let spec = ProgTypeSpec::socket_filter();
        let protos = HelperProtos::standard();
        let env = VerifierEnv::new(&spec, maps, &protos);
        verify(insns, &env, None)
            .map(|_| ())
            .map_err(|e| (e.insn_idx, e.message))
    }

    /// r1 = 1 << 30; if r1 <= 0 goto +2; r0 = 0; exit; <dead: `dead`>; exit
    fn behind_dead_branch(dead: &[Insn]) -> Vec<Insn> {
        let mut p = vec![
            Insn::new(0xb7, 1, 0, 0, 1 << 30),
            Insn::new(0xb5, 1, 0, 2, 0),
            Insn::new(0xb7, 0, 0, 0, 0),
            Insn::new(0x95, 0, 0, 0, 0),
        ];
        p.extend_from_slice(dead);
        p.push(Insn::new(0x95, 0, 0, 0, 0));
        p
    }

    /// Regression (verifier fuzz target): dead instructions the engine cannot load, or that
    /// name a map that does not exist, are rejected even though no path reaches them.
    #[test]
    fn dead_code_is_checked_for_what_never_loads() {
        // ld_ind w: r0 = *(u32 *)skb[r5 + 0]
        let e = check(&behind_dead_branch(&[Insn::new(0x40, 0, 5, 0, 0)]), &[]).unwrap_err();
        assert_eq!(e.0, 4);
        assert!(e.1.contains("BPF_LD_[ABS|IND]"), "{}", e.1);
        // call kfunc#7
        let e = check(&behind_dead_branch(&[Insn::new(0x85, 0, 2, 0, 7)]), &[]).unwrap_err();
        assert_eq!(e, (4, "calling kernel functions is not supported".into()));
        // r1 = map[fd:3] with no such map, then r0 = 0
        let lddw = [
            Insn::new(0x18, 1, 1, 0, 3),
            Insn::new(0, 0, 0, 0, 0),
            Insn::new(0xb7, 0, 0, 0, 0),
        ];
        let maps = [MapInfo::new(0, MapType::ARRAY, 4, 8, 1)];
        let e = check(&behind_dead_branch(&lddw), &maps).unwrap_err();
        assert_eq!(e.0, 4);
        assert!(e.1.contains("fd 3"), "{}", e.1);
        // w10 = 1
        let e = check(&behind_dead_branch(&[Insn::new(0xb4, 10, 0, 0, 1)]), &[]).unwrap_err();
        assert_eq!(e, (4, "frame pointer is read only".into()));
        // The same with an existing map loads and verifies.
        let mut ok = lddw;
        ok[0] = Insn::new(0x18, 1, 1, 0, 0);
        assert_eq!(check(&behind_dead_branch(&ok), &maps), Ok(()));
    }
}
