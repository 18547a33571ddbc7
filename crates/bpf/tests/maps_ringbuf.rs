//! BPF_MAP_TYPE_RINGBUF through the public API: create-time checks, ENOTSUPP element ops,
//! record protocol (reserve/submit/discard/output, busy records, no space), wraparound, and
//! producers and a consumer on different threads.

use bpfvfs_bpf::maps::ringbuf::*;
use bpfvfs_bpf::maps::ENOTSUPP;
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, Handle, Map, MapDef, MapType};
use bpfvfs_vfs::Errno;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::bpf;

fn ring(bpf: &Bpf, size: u32) -> Handle {
    bpf.map_create(MapDef::new(MapType::Ringbuf, 0, 0, size))
        .unwrap()
}
fn rb(m: &Map) -> &RingBuf {
    m.ops().as_any().downcast_ref::<RingBuf>().unwrap()
}
fn write(p: NonNull<u8>, data: &[u8]) {
    // SAFETY: callers pass a pointer from `reserve(data.len())` not yet committed.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.as_ptr(), data.len()) }
}
fn drain(r: &RingBuf) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    r.consume(|d| out.push(d.to_vec()));
    out
}

#[test]
fn create_checks() {
    let bpf = bpf();
    let d = |ks, vs, me, fl| MapDef::new(MapType::Ringbuf, ks, vs, me).with_flags(fl);
    let cases: &[(MapDef, Option<Errno>)] = &[
        (d(0, 0, 4096, 0), None),
        (d(0, 0, 1 << 16, 0), None),
        (d(0, 0, 0, 0), Some(Errno::EINVAL)),
        (d(0, 0, 2048, 0), Some(Errno::EINVAL)),
        (d(0, 0, 3 * 4096, 0), Some(Errno::EINVAL)),
        (d(0, 0, 4097, 0), Some(Errno::EINVAL)),
        (d(4, 0, 4096, 0), Some(Errno::EINVAL)),
        (d(0, 8, 4096, 0), Some(Errno::EINVAL)),
        (d(0, 0, 4096, BPF_F_NUMA_NODE), None),
        (d(0, 0, 4096, BPF_F_RDONLY), Some(Errno::EINVAL)),
        (d(0, 0, 4096, BPF_F_RDONLY_PROG), Some(Errno::EINVAL)),
        (d(0, 0, 4096, BPF_F_MMAPABLE), Some(Errno::EINVAL)),
        (d(0, 0, 4096, BPF_F_NO_PREALLOC), Some(Errno::EINVAL)),
    ];
    for (def, want) in cases {
        assert_eq!(bpf.map_create(def.clone()).err(), *want, "{def:?}");
    }
}

#[test]
fn element_ops_enotsupp() {
    let bpf = bpf();
    let h = ring(&bpf, 4096);
    assert_eq!(bpf.map_lookup_elem(&h, &[]), Err(ENOTSUPP));
    assert_eq!(bpf.map_update_elem(&h, &[], &[], 0), Err(ENOTSUPP));
    assert_eq!(bpf.map_update_elem(&h, &[], &[], BPF_EXIST), Err(ENOTSUPP));
    assert_eq!(bpf.map_delete_elem(&h, &[]), Err(ENOTSUPP));
    assert_eq!(bpf.map_get_next_key(&h, None), Err(ENOTSUPP));
    assert_eq!(h.map().unwrap().entries(), Err(ENOTSUPP));
    assert!(h.map().unwrap().mem_usage() >= 4096);
}

#[test]
fn records_in_order_discard_busy() {
    let bpf = bpf();
    let h = ring(&bpf, 4096);
    let r = rb(h.map().unwrap());
    assert_eq!(r.size(), 4096);
    assert_eq!(r.available(), 0);
    assert_eq!(drain(r), Vec::<Vec<u8>>::new());

    let a = r.reserve(3).unwrap();
    let b = r.reserve(10).unwrap();
    let c = r.reserve(0).unwrap();
    assert_eq!(a.as_ptr() as usize % 8, 0);
    assert_eq!(b.as_ptr() as usize - a.as_ptr() as usize, 16); // 8 header + 3 -> 16
    assert_eq!(c.as_ptr() as usize - b.as_ptr() as usize, 24); // 8 + 10 -> 24
    assert_eq!(r.available(), 16 + 24 + 8);
    write(a, b"abc");
    write(b, b"0123456789");
    // b committed before a: the consumer waits at a (busy).
    r.submit(b, 0).unwrap();
    assert_eq!(drain(r), Vec::<Vec<u8>>::new());
    r.submit(a, BPF_RB_NO_WAKEUP).unwrap();
    assert_eq!(drain(r), vec![b"abc".to_vec(), b"0123456789".to_vec()]);
    // c still busy.
    assert_eq!(r.available(), 8);
    r.discard(c, 0).unwrap();
    assert_eq!(drain(r), Vec::<Vec<u8>>::new());
    assert_eq!(r.available(), 0);
    // Double commit / foreign pointers are refused.
    assert_eq!(r.submit(c, 0), Err(Errno::EINVAL));
    let mut x = 0u64;
    assert_eq!(
        r.submit(NonNull::from(&mut x).cast(), 0),
        Err(Errno::EINVAL)
    );

    r.output(b"out", 0).unwrap();
    r.output(b"", BPF_RB_FORCE_WAKEUP).unwrap();
    assert_eq!(r.output(b"x", 4), Err(Errno::EINVAL));
    assert_eq!(drain(r), vec![b"out".to_vec(), vec![]]);
    assert_eq!(r.query(BPF_RB_RING_SIZE), 4096);
    assert_eq!(r.query(BPF_RB_CONS_POS), r.query(BPF_RB_PROD_POS));
}

#[test]
fn no_space() {
    let bpf = bpf();
    let h = ring(&bpf, 4096);
    let r = rb(h.map().unwrap());
    // A record must leave one byte free: 4096 - 8 header is too big, 4088 - 8 fits.
    assert!(r.reserve(4096).is_none());
    assert!(r.reserve(4088).is_none());
    assert!(r.reserve(RINGBUF_MAX_RECORD_SZ + 1).is_none());
    let big = r.reserve(4080).unwrap();
    assert!(r.reserve(0).is_none(), "full");
    assert_eq!(r.output(b"x", 0), Err(Errno::EAGAIN));
    r.discard(big, 0).unwrap();
    // Discarded but not consumed yet: still no space.
    assert!(r.reserve(8).is_none());
    assert_eq!(drain(r).len(), 0);
    assert!(r.reserve(8).is_some());
}

#[test]
fn wraparound_records_are_contiguous() {
    let bpf = bpf();
    let h = ring(&bpf, 4096);
    let r = rb(h.map().unwrap());
    let mut expect = Vec::new();
    let mut seq = 0u32;
    // Records of varying sizes, many laps around the ring.
    for round in 0..2000usize {
        let len = 1 + (round * 37) % 1500;
        let data: Vec<u8> = (0..len).map(|i| (i as u32 ^ seq) as u8).collect();
        match r.reserve(len as u64) {
            Some(p) => {
                write(p, &data);
                if round % 7 == 0 {
                    r.discard(p, 0).unwrap();
                } else {
                    r.submit(p, 0).unwrap();
                    expect.push(data);
                }
                seq += 1;
            }
            None => {
                let got = drain(r);
                assert_eq!(got, expect);
                expect.clear();
            }
        }
    }
    assert_eq!(drain(r), expect);
    assert!(r.query(BPF_RB_PROD_POS) > 20 * 4096, "wrapped many times");
}

#[test]
fn producers_and_consumer_threads() {
    let bpf = bpf();
    let h = ring(&bpf, 1 << 14);
    let m = h.map().unwrap().clone();
    let producers = 3usize;
    let per = 20_000u32;
    let done = Arc::new(AtomicUsize::new(0));
    let ps: Vec<_> = (0..producers)
        .map(|p| {
            let (m, done) = (m.clone(), done.clone());
            std::thread::spawn(move || {
                let r = rb(&m);
                let mut i = 0u32;
                while i < per {
                    // Record: producer id, sequence number, then filler of varying length.
                    let len = 8 + (i as usize * 13 + p * 5) % 200;
                    let Some(rec) = r.reserve(len as u64) else {
                        std::thread::yield_now();
                        continue;
                    };
                    let mut data = vec![(i as u8) ^ (p as u8); len];
                    data[..4].copy_from_slice(&(p as u32).to_ne_bytes());
                    data[4..8].copy_from_slice(&i.to_ne_bytes());
                    write(rec, &data);
                    if i % 10 == 9 {
                        r.discard(rec, 0).unwrap();
                    } else {
                        r.submit(rec, 0).unwrap();
                    }
                    i += 1;
                }
                done.fetch_add(1, Ordering::Release);
            })
        })
        .collect();
    let consumer = {
        let (m, done) = (m.clone(), done.clone());
        std::thread::spawn(move || {
            let r = rb(&m);
            let mut next = vec![0u32; producers];
            let mut count = 0usize;
            let bad = AtomicBool::new(false);
            loop {
                let finished = done.load(Ordering::Acquire) == producers;
                r.wait(Duration::from_millis(5));
                count += r.consume(|d| {
                    let p = u32::from_ne_bytes(d[..4].try_into().unwrap()) as usize;
                    let i = u32::from_ne_bytes(d[4..8].try_into().unwrap());
                    // Each producer's records arrive in order; discarded ones never arrive.
                    while next[p] % 10 == 9 {
                        next[p] += 1;
                    }
                    if i != next[p] || d[8..].iter().any(|&b| b != (i as u8) ^ (p as u8)) {
                        bad.store(true, Ordering::Relaxed);
                    }
                    next[p] = i + 1;
                });
                if finished && r.available() == 0 {
                    break;
                }
            }
            assert!(
                !bad.load(Ordering::Relaxed),
                "out of order or corrupt record"
            );
            count
        })
    };
    for p in ps {
        p.join().unwrap();
    }
    let got = consumer.join().unwrap();
    assert_eq!(got, producers * (per as usize - per as usize / 10));
}
