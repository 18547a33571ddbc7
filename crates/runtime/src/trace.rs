//! The trace pipe: where `bpf_trace_printk` messages of this instance's programs go, formatted
//! as the kernel's `trace_pipe` lines, and read (consumed) by `bpfvfs prog tracelog`.
//!
//! Bounded: past `capacity` unread lines the oldest are dropped and counted, as a ring buffer
//! that the reader did not keep up with.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub const DEFAULT_CAPACITY: usize = 16 * 1024;

#[derive(Default)]
struct State {
    lines: VecDeque<String>,
    dropped: u64,
    written: u64,
}

pub struct TraceLog {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    boot: Instant,
}

impl TraceLog {
    pub fn new(capacity: usize) -> TraceLog {
        TraceLog {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            boot: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append one message from a program running as task `comm`/`pid` on `cpu`.
    pub fn push(&self, comm: &[u8], pid: u32, cpu: u32, msg: &[u8]) {
        let comm: String =
            String::from_utf8_lossy(comm.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
        let t = self.boot.elapsed();
        let mut text = String::from_utf8_lossy(msg).into_owned();
        while text.ends_with('\n') {
            text.pop();
        }
        // The shape of a trace_pipe line: task-pid, [cpu], irq/preempt flags, timestamp.
        let line = format!(
            "{:>16}-{:<7} [{:03}] ..... {:>5}.{:06}: bpf_trace_printk: {}",
            comm,
            pid,
            cpu,
            t.as_secs(),
            t.subsec_micros(),
            text
        );
        let mut s = self.lock();
        if s.lines.len() == self.capacity {
            s.lines.pop_front();
            s.dropped += 1;
        }
        s.lines.push_back(line);
        s.written += 1;
        drop(s);
        self.ready.notify_all();
    }

    /// Take up to `max` unread lines, waiting up to `wait` for the first one.
    pub fn read(&self, max: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut s = self.lock();
        while s.lines.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            s = self
                .ready
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let n = s.lines.len().min(max.max(1));
        s.lines.drain(..n).collect()
    }

    /// (lines written in total, lines dropped unread).
    pub fn counters(&self) -> (u64, u64) {
        let s = self.lock();
        (s.written, s.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_consumed_in_order_and_bounded() {
        let t = TraceLog::new(2);
        t.push(b"a\0\0", 1, 0, b"one\n");
        t.push(b"a", 1, 0, b"two");
        t.push(b"a", 1, 0, b"three");
        let got = t.read(10, Duration::ZERO);
        assert_eq!(got.len(), 2);
        assert!(got[0].ends_with("bpf_trace_printk: two"), "{}", got[0]);
        assert!(got[1].ends_with("bpf_trace_printk: three"));
        assert!(got[0].trim_start().starts_with("a-1 "), "{}", got[0]);
        assert_eq!(t.counters(), (3, 1));
        assert!(t.read(10, Duration::from_millis(1)).is_empty());
    }
}
