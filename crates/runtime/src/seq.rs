//! seq_file output for iterator and view programs: the buffer `bpf_seq_printf`,
//! `bpf_seq_write` and `bpf_seq_printf_btf` append to, and the read loop that decides which objects are shown in
//! which buffer (kernel/bpf/bpf_iter.c's `bpf_seq_read`; fs/seq_file.c's retry with a
//! doubled buffer for single-record views).
//!
//! The buffer of the run in progress is found through a thread-local slot set for the
//! duration of one program run ([`with_seq`]): the helpers check that the `seq_file`
//! pointer the program passes is the run's own view, then write into the buffer. Nested runs
//! on one thread save and restore the slot.

use crate::btf_show::{self, ShowMem, BTF_PTR_SIZE};
use bpfvfs_ebpf::helpers::{bprintf, HelperCtx};
use bpfvfs_ebpf::verifier::{ArgKind, HelperProto, HelperProtos, RetKind};
use bpfvfs_ebpf::{HelperError, Helpers};
use bpfvfs_vfs::Errno;
use std::cell::Cell;

/// bpf_iter's buffer: eight pages (`PAGE_SIZE << 3`).
pub const ITER_BUF_SIZE: usize = 8 * 4096;
/// A view's first buffer: one page, as seq_read_iter starts.
pub const VIEW_FIRST_BUF: usize = 4096;
/// Largest buffer a view's retries go up to before giving up with ENOMEM.
pub const VIEW_MAX_BUF: usize = 64 << 20;
/// `MAX_BPRINTF_VARARGS`.
const MAX_ARGS: usize = 12;

const EINVAL: i64 = 22;
const EOVERFLOW: i64 = 75;

/// A seq_file's buffer: `size` bytes, `buf.len()` of them used (`count`), and the overflow
/// mark (`count == size` in the kernel).
#[derive(Debug)]
pub struct SeqBuf {
    pub buf: Vec<u8>,
    pub size: usize,
    pub overflow: bool,
}

impl SeqBuf {
    pub fn new(size: usize) -> SeqBuf {
        SeqBuf {
            buf: Vec::new(),
            size,
            overflow: false,
        }
    }

    /// seq_write / the tail of seq_vprintf: the bytes fit only if a byte is left after
    /// them; otherwise the buffer is marked overflowed and nothing is added.
    pub fn append(&mut self, b: &[u8]) -> bool {
        if !self.overflow && self.buf.len() + b.len() < self.size {
            self.buf.extend_from_slice(b);
            true
        } else {
            self.overflow = true;
            false
        }
    }

    /// Back to `count` bytes, overflow cleared (what `seq->count = offs` does).
    pub fn truncate(&mut self, count: usize) {
        self.buf.truncate(count);
        self.overflow = false;
    }
}

thread_local! {
    /// (seq_file view address, buffer) of the run in progress on this thread.
    static CURRENT: Cell<(u64, *mut SeqBuf)> = const { Cell::new((0, std::ptr::null_mut())) };
}

/// Run `f` with `buf` as the output of the seq_file view at `seq_addr`.
pub fn with_seq<R>(seq_addr: u64, buf: &mut SeqBuf, f: impl FnOnce() -> R) -> R {
    struct Restore((u64, *mut SeqBuf));
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let prev = CURRENT.with(|c| c.replace((seq_addr, buf as *mut SeqBuf)));
    let _restore = Restore(prev);
    f()
}

/// The buffer of the run in progress, if `seq` is its seq_file.
fn current(seq: u64) -> Result<&'static mut SeqBuf, HelperError> {
    let (addr, p) = CURRENT.with(|c| c.get());
    if p.is_null() || addr != seq {
        return Err(HelperError::Other(format!(
            "{seq:#x} is not the seq_file of this run"
        )));
    }
    // SAFETY: `with_seq` holds the &mut SeqBuf for the whole run and restores the slot
    // before the borrow ends; helpers run on the run's thread, one at a time.
    Ok(unsafe { &mut *p })
}

fn neg(e: i64) -> u64 {
    (-e) as u64
}

/// bpf_seq_printf(seq, fmt, fmt_size, data, data_len): `data` is an array of u64 (one per
/// conversion), `data_len` a multiple of 8, at most 12 of them; the format must hold a NUL
/// within `fmt_size`. 0, -EINVAL (bad format or arguments) or -EOVERFLOW (the buffer is
/// full: this object will be shown again in the next buffer, or the read fails E2BIG).
fn seq_printf(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let (seq, fmt_addr, fmt_size, data, data_len) =
        (a[0], a[1], a[2] as usize, a[3], a[4] as usize);
    let buf = current(seq)?;
    if data_len % 8 != 0 || data_len / 8 > MAX_ARGS || (data_len > 0 && data == 0) {
        return Ok(neg(EINVAL));
    }
    let mut fmt = vec![0u8; fmt_size];
    ctx.read(fmt_addr, &mut fmt)?;
    let Some(end) = fmt.iter().position(|&b| b == 0) else {
        return Ok(neg(EINVAL));
    };
    let mut args = [0u64; MAX_ARGS];
    for (i, arg) in args.iter_mut().take(data_len / 8).enumerate() {
        *arg = ctx.read_u64(data.wrapping_add(8 * i as u64))?;
    }
    let out = match bprintf(ctx, &fmt[..end], &args[..data_len / 8]) {
        Ok(o) => o,
        Err(e) => return Ok(neg(e)),
    };
    buf.append(&out);
    Ok(if buf.overflow { neg(EOVERFLOW) } else { 0 })
}

/// bpf_seq_write(seq, data, len): 0 or -EOVERFLOW.
fn seq_write(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let buf = current(a[0])?;
    let mut data = vec![0u8; a[2] as usize];
    ctx.read(a[1], &mut data)?;
    Ok(if buf.append(&data) { 0 } else { neg(EOVERFLOW) })
}

/// Register the seq helpers (prototypes: the engine's standard table has 126/127 with the
/// kernel's argument kinds; the format is read-only memory, not a constant string).
pub(crate) fn register(helpers: &mut Helpers, protos: &mut HelperProtos) {
    helpers.register(126, "bpf_seq_printf", seq_printf);
    helpers.register(127, "bpf_seq_write", seq_write);
    let seq = ArgKind::BtfId {
        name: "seq_file",
        nullable: false,
    };
    let rd = ArgKind::Mem {
        read: true,
        write: false,
        nullable: false,
    };
    let rd_null = ArgKind::Mem {
        read: true,
        write: false,
        nullable: true,
    };
    protos.register(
        126,
        HelperProto::new(
            "bpf_seq_printf",
            RetKind::Integer(None),
            &[
                seq,
                rd,
                ArgKind::ConstSize,
                rd_null,
                ArgKind::ConstSizeOrZero,
            ],
        ),
    );
    protos.register(
        127,
        HelperProto::new(
            "bpf_seq_write",
            RetKind::Integer(None),
            &[seq, rd, ArgKind::ConstSizeOrZero],
        ),
    );
    // 150's prototype is the engine's standard one.
    helpers.register(150, "bpf_seq_printf_btf", seq_printf_btf);
}

/// The run's memory as `btf_show` reads it: a chunk is readable when a registered region
/// holds all of it — checked in both modes, since nobody verified `btf_ptr.ptr`.
struct RunMem<'c, 'r, 'a, 'e>(&'c HelperCtx<'r, 'a, 'e>);

impl ShowMem for RunMem<'_, '_, '_, '_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.0.probe(addr, buf.len() as u64, false) && self.0.read(addr, buf).is_ok()
    }
}

/// bpf_seq_printf_btf(seq, ptr, ptr_size, flags): the object `ptr->ptr` shown as type
/// `ptr->type_id` of the kernel's BTF ([`crate::kernel_btf`]; `crate::btf_show` has the
/// format). -EINVAL for flags outside BTF_F_ALL, a `ptr_size` other than 16 or type id 0;
/// -ENOENT for an id the BTF does not have; -EFAULT (-ERANGE in the NULL page) when part
/// of the object cannot be read (what could be read is shown). A full buffer is not an
/// error here, as in the kernel (0; the object is shown again in the next buffer).
fn seq_printf_btf(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let (seq, ptr, ptr_size, flags) = (a[0], a[1], a[2] as u32, a[3]);
    let buf = current(seq)?;
    let btf = crate::kernel_btf();
    // The size is checked before the btf_ptr is read: the verifier vouched for
    // `ptr_size` bytes only.
    if let Err(e) = btf_show::check_call(ptr_size, flags) {
        return Ok(neg(i64::from(e.errno().0)));
    }
    let mut p = [0u8; BTF_PTR_SIZE as usize];
    ctx.read(ptr, &mut p)?;
    let obj = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
    let type_id = u32::from_le_bytes(p[8..12].try_into().expect("4 bytes"));
    if let Err(e) = btf_show::check_type(btf, type_id) {
        return Ok(neg(i64::from(e.errno().0)));
    }
    let r = btf_show::show(btf, type_id, obj, flags, &RunMem(ctx), &mut |b| {
        buf.append(b);
    });
    Ok(match r {
        Ok(()) => 0,
        Err(e) => neg(i64::from(e.errno().0)),
    })
}

/// What one program call on one object did.
pub enum Shown {
    /// The program returned 0.
    Ok,
    /// The program returned non-zero: the kernel's -EAGAIN ("show this object again").
    Again,
    /// The program returned non-zero where that means "stop after this object" (the
    /// cgroup iterator): its output is kept and the walk ends (the final call follows).
    Stop,
}

/// Target-specific rules of a session.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionRules {
    /// The walk cannot resume in a later read (the cgroup iterator drops its lock between
    /// reads): a read that would continue an unfinished walk fails with EOPNOTSUPP.
    pub single_read: bool,
}

/// One iterator session: `show(Some(i), seq_num, buf)` runs the program on object `i`,
/// `show(None, seq_num, buf)` is the final call. Successive `read()`s of the kernel's
/// bpf_seq_read, each with a fresh [`ITER_BUF_SIZE`] buffer, concatenated until the end:
/// an object whose output does not fit in what is left of a buffer is shown again at the
/// start of the next one (same seq_num); one that does not fit an empty buffer fails the
/// read with E2BIG; a program asking for a retry (non-zero return) ends the buffer, or fails
/// the read with EAGAIN if it is the buffer's first object. The final call runs once, after
/// the last object, with seq_num = the last object's (0 with no objects).
pub fn run_session(
    n: usize,
    rules: SessionRules,
    mut show: impl FnMut(Option<usize>, u64, &mut SeqBuf) -> Result<Shown, Errno>,
) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    // `n` shrinks to the next index when the program stops the walk.
    let mut n = n;
    let mut index = 0usize;
    let mut seq_num = 0u64;
    let mut done_stop = false;
    let mut reads = 0;
    loop {
        reads += 1;
        let mut buf = SeqBuf::new(ITER_BUF_SIZE);
        let mut at_end = index >= n;
        if !at_end && rules.single_read && reads > 1 {
            return Err(Errno::EOPNOTSUPP);
        }
        if !at_end {
            match show(Some(index), seq_num, &mut buf)? {
                Shown::Again => return Err(Errno::EAGAIN),
                _ if buf.overflow => return Err(Errno::E2BIG),
                Shown::Stop => n = index + 1,
                Shown::Ok => {}
            }
            loop {
                let offs = buf.buf.len();
                index += 1;
                if index >= n {
                    at_end = true;
                    break;
                }
                seq_num += 1;
                let r = show(Some(index), seq_num, &mut buf)?;
                if matches!(r, Shown::Stop) && !buf.overflow {
                    n = index + 1;
                }
                if matches!(r, Shown::Again) || buf.overflow {
                    buf.truncate(offs);
                    if offs == 0 {
                        return Err(if matches!(r, Shown::Again) {
                            Errno::EAGAIN
                        } else {
                            Errno::E2BIG
                        });
                    }
                    break;
                }
            }
        }
        if at_end && !done_stop {
            let offs = buf.buf.len();
            show(None, seq_num, &mut buf)?;
            if buf.overflow {
                buf.truncate(offs);
                if offs == 0 {
                    return Err(Errno::E2BIG);
                }
            } else {
                done_stop = true;
            }
        }
        if buf.buf.is_empty() && at_end && done_stop {
            return Ok(out);
        }
        out.extend_from_slice(&buf.buf);
    }
}

/// One record shown whole (a view): run `show` with a one-page buffer, and again with a
/// buffer twice as large while it overflows (seq_read_iter's retry), up to
/// [`VIEW_MAX_BUF`] (then ENOMEM).
pub fn run_single(
    mut show: impl FnMut(&mut SeqBuf) -> Result<Shown, Errno>,
) -> Result<Vec<u8>, Errno> {
    let mut size = VIEW_FIRST_BUF;
    loop {
        let mut buf = SeqBuf::new(size);
        match show(&mut buf)? {
            Shown::Again => return Err(Errno::EAGAIN),
            _ if !buf.overflow => return Ok(buf.buf),
            _ => {}
        }
        size *= 2;
        if size > VIEW_MAX_BUF {
            return Err(Errno::ENOMEM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Objects printing `len` bytes each; the final call prints "end N".
    fn session(lens: &[usize]) -> Result<Vec<u8>, Errno> {
        run_session(lens.len(), SessionRules::default(), |i, seq_num, buf| {
            match i {
                Some(i) => {
                    buf.append(&vec![b'a' + (i % 26) as u8; lens[i]]);
                }
                None => {
                    buf.append(format!("end {seq_num}\n").as_bytes());
                }
            }
            Ok(Shown::Ok)
        })
    }

    #[test]
    fn objects_spill_into_the_next_buffer_whole() {
        // Three objects of 20000 bytes: two buffers hold one each, then one more.
        let out = session(&[20000, 20000, 20000]).unwrap();
        assert_eq!(out.len(), 60000 + "end 2\n".len());
        assert!(out.ends_with(b"end 2\n"));
        assert_eq!(out[19999], b'a');
        assert_eq!(out[20000], b'b');
    }

    #[test]
    fn an_object_larger_than_a_buffer_fails_e2big() {
        assert_eq!(session(&[10, ITER_BUF_SIZE]).err(), Some(Errno::E2BIG));
        // Exactly the size does not fit either (one byte must stay free).
        assert_eq!(session(&[ITER_BUF_SIZE]).err(), Some(Errno::E2BIG));
        assert!(session(&[ITER_BUF_SIZE - 1]).is_ok());
    }

    #[test]
    fn stop_ends_the_walk_and_single_read_walks_cannot_resume() {
        let shows = |rules, stop_at: usize, len: usize| {
            run_session(5, rules, |i, seq_num, buf| {
                match i {
                    Some(i) => {
                        buf.append(&vec![b'0' + i as u8; len]);
                        if i == stop_at {
                            return Ok(Shown::Stop);
                        }
                    }
                    None => {
                        buf.append(format!("end {seq_num}").as_bytes());
                    }
                }
                Ok(Shown::Ok)
            })
        };
        let single = SessionRules { single_read: true };
        assert_eq!(shows(single, 1, 1).unwrap(), b"01end 1");
        assert_eq!(shows(single, 9, 1).unwrap(), b"01234end 4");
        // Two objects per buffer: the walk would need a second read.
        assert_eq!(shows(single, 9, 12000).err(), Some(Errno::EOPNOTSUPP));
        assert_eq!(
            shows(SessionRules::default(), 9, 12000).unwrap().len(),
            5 * 12000 + 5
        );
    }

    #[test]
    fn no_objects_still_gets_the_final_call() {
        assert_eq!(session(&[]).unwrap(), b"end 0\n");
    }

    #[test]
    fn view_retries_with_doubled_buffers() {
        let mut sizes = Vec::new();
        let out = run_single(|buf| {
            sizes.push(buf.size);
            buf.append(&[b'x'; 10000]);
            Ok(Shown::Ok)
        })
        .unwrap();
        assert_eq!(out.len(), 10000);
        assert_eq!(sizes, [4096, 8192, 16384]);
    }
}
