//! A pinned iterator link is readable: each open runs its seq source once.
use bpfvfs_bpf::*;
use bpfvfs_vfs::{Cred, Errno, Vfs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

struct Counter(AtomicU32);
impl SeqSource for Counter {
    fn read_all(&self) -> Result<Vec<u8>, Errno> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        if n == 2 {
            return Err(Errno::E2BIG);
        }
        Ok(format!("run {n}\n").into_bytes())
    }
}

fn prog_info() -> ProgInfo {
    ProgInfo {
        prog_type: ProgType::Tracing.as_u32(),
        name: "it".into(),
        tag: [0; 8],
        insn_count: 2,
        license: "GPL".into(),
        map_ids: vec![],
        loaded_at: 0,
        uid: 0,
        attach_to: String::new(),
        jited_len: 0,
    }
}

#[test]
fn pinned_iter_link_runs_at_each_open() {
    let vfs = Vfs::new_memfs();
    let bpf = Bpf::new(vfs.clone()).unwrap();
    let root = Cred::root();
    let p = bpf.prog_add(prog_info(), None).unwrap();
    let l = bpf.link_create(&p, "iter", "bpf_map", None).unwrap();
    let BpfObject::Link(link) = &l.obj else {
        panic!("not a link")
    };
    assert!(link.seq().is_none());
    // A plain link's pin is not readable.
    bpf.obj_pin(&root, &l, None, b"/sys/fs/bpf/plain", 0)
        .unwrap();
    assert_eq!(
        vfs.read_file(&root, b"/sys/fs/bpf/plain").err(),
        Some(Errno::EIO)
    );
    let l2 = bpf.link_create(&p, "iter", "bpf_map", None).unwrap();
    let BpfObject::Link(link2) = &l2.obj else {
        panic!("not a link")
    };
    link2.set_seq(Arc::new(Counter(AtomicU32::new(0))));
    // Only the first set counts.
    link2.set_seq(Arc::new(Counter(AtomicU32::new(100))));
    bpf.obj_pin(&root, &l2, None, b"/sys/fs/bpf/it", 0).unwrap();
    assert_eq!(vfs.read_file(&root, b"/sys/fs/bpf/it").unwrap(), b"run 0\n");
    assert_eq!(vfs.read_file(&root, b"/sys/fs/bpf/it").unwrap(), b"run 1\n");
    // The source's error is the open's error.
    assert_eq!(
        vfs.read_file(&root, b"/sys/fs/bpf/it").err(),
        Some(Errno::E2BIG)
    );
}
