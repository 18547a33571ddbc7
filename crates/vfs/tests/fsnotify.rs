//! Watch marks: every event kind and when it fires, ordering within a group, cookies, queue
//! overflow and merging, mark add/modify/remove, groups going away, unmount, destruction
//! watches (exactly once, also racing eviction and cancel from threads), and counters
//! returning to zero.
//!
//! Events are rendered as "WD NAMES [name]" (e.g. "1 CREATE,ISDIR sub") so expectations
//! read like inotifywait output; cookies are checked separately.

use bpfvfs_vfs::fsnotify::*;
use bpfvfs_vfs::oflags::*;
use bpfvfs_vfs::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

macro_rules! ok {
    ($e:expr) => {{
        match $e {
            Ok(v) => v,
            Err(got) => panic!("`{}` failed with {:?}", stringify!($e), got),
        }
    }};
}

fn r() -> Cred {
    Cred::root()
}

fn render(e: &Event) -> String {
    let mut s = format!("{} {}", e.wd, e.mask_names().join(","));
    if let Some(n) = &e.name {
        s.push(' ');
        s.push_str(&String::from_utf8_lossy(n));
    }
    s
}

fn drain(g: &Group) -> Vec<Event> {
    ok!(g.try_read_events(usize::MAX))
}

fn rendered(g: &Group) -> Vec<String> {
    drain(g).iter().map(render).collect()
}

fn expect(g: &Group, want: &[&str]) {
    let got = rendered(g);
    assert_eq!(got, want, "events differ");
}

/// A tree with /d (watched by the returned group for everything, wd 1).
fn setup() -> (Arc<Vfs>, Group, i32) {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    let g = Group::default();
    let wd = ok!(g.add_watch(&vfs, &r(), b"/d", IN_ALL_EVENTS));
    (vfs, g, wd)
}

fn create(vfs: &Vfs, path: &[u8]) {
    drop(ok!(vfs.open(&r(), None, path, O_WRONLY | O_CREAT, 0o644)));
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    loop {
        rcu_barrier();
        if cond() {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// No marks attached, none allocated, no armed destruction watch.
fn assert_marks_gone(vfs: &Vfs) {
    let s = vfs.stats();
    assert_eq!(s.watch_marks, 0, "{s:?}");
    assert_eq!(s.destroy_watches, 0, "{s:?}");
    wait_for("mark memory freed", || vfs.stats().watch_marks_live == 0);
}

#[test]
fn create_kinds_carry_names() {
    let (vfs, g, _) = setup();
    create(&vfs, b"/d/f");
    ok!(vfs.mkdir(&r(), None, b"/d/sub", 0o755));
    ok!(vfs.symlink(&r(), b"f", None, b"/d/l"));
    ok!(vfs.mknod(&r(), None, b"/d/p", S_IFIFO | 0o644, 0));
    ok!(vfs.link(&r(), b"/d/f", b"/d/h", false));
    expect(
        &g,
        &[
            "1 CREATE f",
            "1 OPEN f",
            "1 CLOSE_WRITE f",
            "1 CREATE,ISDIR sub",
            "1 CREATE l",
            "1 CREATE p",
            "1 CREATE h",
        ],
    );
}

#[test]
fn delete_and_delete_self() {
    let (vfs, g, _) = setup();
    create(&vfs, b"/d/f");
    ok!(vfs.mkdir(&r(), None, b"/d/sub", 0o755));
    ok!(vfs.link(&r(), b"/d/f", b"/d/h", false));
    let wf = ok!(g.add_watch(&vfs, &r(), b"/d/f", IN_ALL_EVENTS));
    let ws = ok!(g.add_watch(&vfs, &r(), b"/d/sub", IN_ALL_EVENTS));
    drain(&g);
    // Not the last link: the inode only sees its link count change.
    ok!(vfs.unlink(&r(), None, b"/d/h"));
    expect(&g, &[&format!("{wf} ATTRIB"), "1 DELETE h"]);
    ok!(vfs.unlink(&r(), None, b"/d/f"));
    expect(
        &g,
        &[
            &format!("{wf} ATTRIB"),
            &format!("{wf} DELETE_SELF"),
            &format!("{wf} IGNORED"),
            "1 DELETE f",
        ],
    );
    ok!(vfs.rmdir(&r(), None, b"/d/sub"));
    expect(
        &g,
        &[
            &format!("{ws} DELETE_SELF"),
            &format!("{ws} IGNORED"),
            "1 DELETE,ISDIR sub",
        ],
    );
    assert_eq!(g.stats().marks, 1);
    // The watched directory itself goes.
    ok!(vfs.rmdir(&r(), None, b"/d"));
    expect(&g, &["1 DELETE_SELF", "1 IGNORED"]);
    assert_eq!(g.stats().marks, 0);
    assert_marks_gone(&vfs);
}

#[test]
fn delete_self_waits_for_the_last_close() {
    let (vfs, g, _) = setup();
    let f = ok!(vfs.open(&r(), None, b"/d/f", O_RDWR | O_CREAT, 0o644));
    let wf = ok!(g.add_watch(&vfs, &r(), b"/d/f", IN_ALL_EVENTS));
    drain(&g);
    ok!(vfs.unlink(&r(), None, b"/d/f"));
    expect(&g, &[&format!("{wf} ATTRIB"), "1 DELETE f"]);
    // Still open: events keep coming, to the old parent too (no IN_EXCL_UNLINK).
    ok!(vfs.write(&f, b"x", 0));
    expect(&g, &["1 MODIFY f", &format!("{wf} MODIFY")]);
    drop(f);
    expect(
        &g,
        &[
            "1 CLOSE_WRITE f",
            &format!("{wf} CLOSE_WRITE"),
            &format!("{wf} DELETE_SELF"),
            &format!("{wf} IGNORED"),
        ],
    );
    drop(g);
    assert_marks_gone(&vfs);
}

#[test]
fn file_events_go_to_parent_with_name_then_to_the_file() {
    let (vfs, g, _) = setup();
    create(&vfs, b"/d/f");
    let wf = ok!(g.add_watch(&vfs, &r(), b"/d/f", IN_ALL_EVENTS));
    drain(&g);
    let f = ok!(vfs.open(&r(), None, b"/d/f", O_RDWR, 0));
    ok!(vfs.write(&f, b"hello", 0));
    let mut buf = [0u8; 8];
    assert_eq!(ok!(vfs.read(&f, &mut buf, 0)), 5);
    ok!(vfs.fallocate(&f, 0, 0, 8192));
    drop(f);
    let ro = ok!(vfs.open(&r(), None, b"/d/f", O_RDONLY, 0));
    // A read at EOF reads nothing and reports nothing.
    assert_eq!(ok!(vfs.read(&ro, &mut buf, 1 << 20)), 0);
    drop(ro);
    let w = |s: &str| format!("{wf} {s}");
    expect(
        &g,
        &[
            "1 OPEN f",
            &w("OPEN"),
            "1 MODIFY f",
            &w("MODIFY"),
            "1 ACCESS f",
            &w("ACCESS"),
            "1 MODIFY f",
            &w("MODIFY"),
            "1 CLOSE_WRITE f",
            &w("CLOSE_WRITE"),
            "1 OPEN f",
            &w("OPEN"),
            "1 CLOSE_NOWRITE f",
            &w("CLOSE_NOWRITE"),
        ],
    );
    // O_PATH opens report nothing.
    drop(ok!(vfs.open(&r(), None, b"/d/f", O_PATH, 0)));
    expect(&g, &[]);
    // O_TRUNC: OPEN, then the truncation's MODIFY.
    drop(ok!(vfs.open(&r(), None, b"/d/f", O_WRONLY | O_TRUNC, 0)));
    expect(
        &g,
        &[
            "1 OPEN f",
            &w("OPEN"),
            "1 MODIFY f",
            &w("MODIFY"),
            "1 CLOSE_WRITE f",
            &w("CLOSE_WRITE"),
        ],
    );
}

#[test]
fn setattr_events_follow_fsnotify_change() {
    let (vfs, g, _) = setup();
    create(&vfs, b"/d/f");
    drain(&g);
    ok!(vfs.chmod(&r(), b"/d/f", 0o600));
    ok!(vfs.chown(&r(), b"/d/f", Some(1), None, true));
    ok!(vfs.utimens(&r(), b"/d/f", Some(TimeSet::Now), Some(TimeSet::Now)));
    ok!(vfs.utimens(&r(), b"/d/f", Some(TimeSet::Now), None));
    ok!(vfs.utimens(&r(), b"/d/f", None, Some(TimeSet::Now)));
    ok!(vfs.truncate(&r(), b"/d/f", 10));
    // chown(-1, -1) changes nothing and reports nothing.
    ok!(vfs.chown(&r(), b"/d/f", None, None, true));
    let at = ok!(vfs.resolve(&r(), None, b"/d/f", 0));
    ok!(vfs.setxattr_at(&r(), &at, b"user.k", b"v", 0));
    ok!(vfs.removexattr_at(&r(), &at, b"user.k"));
    assert_eq!(
        vfs.removexattr_at(&r(), &at, b"user.k"),
        Err(Errno::ENODATA)
    );
    // The directory's own attributes: ISDIR, no name for its own mark.
    ok!(vfs.chmod(&r(), b"/d", 0o700));
    expect(
        &g,
        &[
            // chown and both-times utimens: ATTRIBs identical to the tail merge into it.
            "1 ATTRIB f",
            "1 ACCESS f",
            "1 MODIFY f",
            "1 ATTRIB f",
            "1 ATTRIB,ISDIR",
        ],
    );
    // Without the merge in the way, each one is there.
    ok!(vfs.chmod(&r(), b"/d/f", 0o644));
    drain(&g);
    ok!(vfs.truncate(&r(), b"/d/f", 0));
    expect(&g, &["1 MODIFY f"]);
}

#[test]
fn readdir_reports_access_on_the_directory() {
    let (vfs, g, _) = setup();
    ok!(vfs.mkdir(&r(), None, b"/d/sub", 0o755));
    let ws = ok!(g.add_watch(&vfs, &r(), b"/d/sub", IN_ALL_EVENTS));
    drain(&g);
    let dir = ok!(vfs.open(&r(), None, b"/d/sub", O_RDONLY | O_DIRECTORY, 0));
    ok!(vfs.readdir(dir.path(), 0, 100));
    drop(dir);
    expect(
        &g,
        &[
            "1 OPEN,ISDIR sub",
            &format!("{ws} OPEN,ISDIR"),
            "1 ACCESS,ISDIR sub",
            &format!("{ws} ACCESS,ISDIR"),
            "1 CLOSE_NOWRITE,ISDIR sub",
            &format!("{ws} CLOSE_NOWRITE,ISDIR"),
        ],
    );
}

fn cookie_pairs(evs: &[Event]) -> Vec<(String, u32)> {
    evs.iter().map(|e| (render(e), e.cookie)).collect()
}

#[test]
fn rename_pairs_moved_from_and_to_with_a_cookie() {
    let (vfs, g, _) = setup();
    ok!(vfs.mkdir(&r(), None, b"/e", 0o755));
    let we = ok!(g.add_watch(&vfs, &r(), b"/e", IN_ALL_EVENTS));
    create(&vfs, b"/d/a");
    let wa = ok!(g.add_watch(&vfs, &r(), b"/d/a", IN_MOVE_SELF | IN_ATTRIB));
    drain(&g);
    ok!(vfs.rename(&r(), b"/d/a", b"/d/b", 0));
    ok!(vfs.rename(&r(), b"/d/b", b"/e/c", 0));
    let evs = drain(&g);
    let got = cookie_pairs(&evs);
    let names: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "1 MOVED_FROM a",
            "1 MOVED_TO b",
            &format!("{wa} MOVE_SELF"),
            "1 MOVED_FROM b",
            &format!("{we} MOVED_TO c"),
            &format!("{wa} MOVE_SELF"),
        ]
    );
    assert_ne!(got[0].1, 0);
    assert_eq!(got[0].1, got[1].1);
    assert_eq!(got[2].1, 0);
    assert_ne!(got[3].1, 0);
    assert_eq!(got[3].1, got[4].1);
    assert_ne!(got[0].1, got[3].1, "each rename has its own cookie");

    // A directory moves with ISDIR; a no-op rename (two names of one inode) reports nothing.
    ok!(vfs.mkdir(&r(), None, b"/d/s", 0o755));
    ok!(vfs.link(&r(), b"/e/c", b"/e/c2", false));
    drain(&g);
    ok!(vfs.rename(&r(), b"/e/c", b"/e/c2", 0));
    ok!(vfs.rename(&r(), b"/d/s", b"/d/t", 0));
    let got = rendered(&g);
    assert_eq!(got, ["1 MOVED_FROM,ISDIR s", "1 MOVED_TO,ISDIR t"]);
}

#[test]
fn rename_over_a_watched_target_deletes_it() {
    let (vfs, g, _) = setup();
    create(&vfs, b"/d/a");
    create(&vfs, b"/d/b");
    let wb = ok!(g.add_watch(&vfs, &r(), b"/d/b", IN_ALL_EVENTS));
    drain(&g);
    ok!(vfs.rename(&r(), b"/d/a", b"/d/b", 0));
    expect(
        &g,
        &[
            "1 MOVED_FROM a",
            "1 MOVED_TO b",
            &format!("{wb} ATTRIB"),
            &format!("{wb} DELETE_SELF"),
            &format!("{wb} IGNORED"),
        ],
    );
    // Directory over an empty directory.
    ok!(vfs.mkdir(&r(), None, b"/d/x", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/d/y", 0o755));
    let wy = ok!(g.add_watch(&vfs, &r(), b"/d/y", IN_ALL_EVENTS));
    drain(&g);
    ok!(vfs.rename(&r(), b"/d/x", b"/d/y", 0));
    expect(
        &g,
        &[
            "1 MOVED_FROM,ISDIR x",
            "1 MOVED_TO,ISDIR y",
            &format!("{wy} ATTRIB,ISDIR"),
            &format!("{wy} DELETE_SELF"),
            &format!("{wy} IGNORED"),
        ],
    );
    assert_marks_gone_except(&vfs, 1);
}

fn assert_marks_gone_except(vfs: &Vfs, n: i64) {
    assert_eq!(vfs.stats().watch_marks, n);
}

#[test]
fn rename_exchange_reports_two_moves() {
    let (vfs, g, _) = setup();
    create(&vfs, b"/d/a");
    ok!(vfs.mkdir(&r(), None, b"/d/b", 0o755));
    let wa = ok!(g.add_watch(&vfs, &r(), b"/d/a", IN_MOVE_SELF));
    let wb = ok!(g.add_watch(&vfs, &r(), b"/d/b", IN_MOVE_SELF));
    drain(&g);
    ok!(vfs.rename(&r(), b"/d/a", b"/d/b", rename_flags::RENAME_EXCHANGE));
    let evs = drain(&g);
    let got = cookie_pairs(&evs);
    let names: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "1 MOVED_FROM a",
            "1 MOVED_TO b",
            &format!("{wa} MOVE_SELF"),
            "1 MOVED_FROM,ISDIR b",
            "1 MOVED_TO,ISDIR a",
            &format!("{wb} MOVE_SELF"),
        ]
    );
    assert_eq!(got[0].1, got[1].1);
    assert_eq!(got[3].1, got[4].1);
    assert_ne!(got[0].1, got[3].1);
}

#[test]
fn events_keep_operation_order_within_a_group() {
    let (vfs, g, _) = setup();
    let mut want = Vec::new();
    for i in 0..50 {
        let name = format!("f{i}");
        let path = format!("/d/{name}");
        let f = ok!(vfs.open(&r(), None, path.as_bytes(), O_WRONLY | O_CREAT, 0o644));
        ok!(vfs.write(&f, b"x", 0));
        drop(f);
        want.push(format!("1 CREATE {name}"));
        want.push(format!("1 OPEN {name}"));
        want.push(format!("1 MODIFY {name}"));
        want.push(format!("1 CLOSE_WRITE {name}"));
        if i % 3 == 0 {
            ok!(vfs.unlink(&r(), None, path.as_bytes()));
            want.push(format!("1 DELETE {name}"));
        }
    }
    assert_eq!(rendered(&g), want);
}

#[test]
fn only_wanted_events_and_isolated_groups() {
    let (vfs, g, _) = setup();
    let g2 = Group::default();
    let w2 = ok!(g2.add_watch(&vfs, &r(), b"/d", IN_DELETE));
    assert_eq!(w2, 1, "descriptors are per group");
    create(&vfs, b"/d/f");
    ok!(vfs.unlink(&r(), None, b"/d/f"));
    assert_eq!(rendered(&g).len(), 4);
    expect(&g2, &["1 DELETE f"]);
}

#[test]
fn overflow_is_queued_once_and_reported_with_wd_minus_one() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    let g = Group::new(GroupOptions {
        max_events: 3,
        ..Default::default()
    });
    ok!(g.add_watch(&vfs, &r(), b"/d", IN_CREATE));
    for i in 0..10 {
        create(&vfs, format!("/d/f{i}").as_bytes());
    }
    let evs = drain(&g);
    assert_eq!(evs.len(), 4);
    assert_eq!(render(&evs[2]), "1 CREATE f2");
    assert_eq!(
        evs[3],
        Event {
            wd: -1,
            mask: IN_Q_OVERFLOW,
            cookie: 0,
            name: None
        }
    );
    assert_eq!(g.stats().dropped_total, 7);
    // Once read, a new overflow can be reported again.
    for i in 10..15 {
        create(&vfs, format!("/d/f{i}").as_bytes());
    }
    let evs = drain(&g);
    assert_eq!(evs.len(), 4);
    assert!(evs[3].is_overflow());
}

#[test]
fn identical_consecutive_events_merge() {
    let (vfs, g, _) = setup();
    create(&vfs, b"/d/f");
    drain(&g);
    let f = ok!(vfs.open(&r(), None, b"/d/f", O_WRONLY, 0));
    for i in 0..10 {
        ok!(vfs.write(&f, b"x", i));
    }
    expect(&g, &["1 OPEN f", "1 MODIFY f"]);
    ok!(vfs.write(&f, b"x", 0));
    expect(&g, &["1 MODIFY f"]);
    assert_eq!(g.stats().merged_total, 9);
}

#[test]
fn mark_add_modify_remove() {
    let (vfs, g, wd) = setup();
    create(&vfs, b"/d/f");
    drain(&g);
    // Re-adding returns the same wd and replaces the mask.
    assert_eq!(ok!(g.add_watch(&vfs, &r(), b"/d", IN_DELETE)), wd);
    create(&vfs, b"/d/g");
    expect(&g, &[]);
    // IN_MASK_ADD ORs.
    assert_eq!(
        ok!(g.add_watch(&vfs, &r(), b"/d", IN_CREATE | IN_MASK_ADD)),
        wd
    );
    assert_eq!(g.watches()[0].mask, IN_DELETE | IN_CREATE);
    create(&vfs, b"/d/h");
    ok!(vfs.unlink(&r(), None, b"/d/h"));
    expect(&g, &["1 CREATE h", "1 DELETE h"]);
    assert_eq!(
        g.add_watch(&vfs, &r(), b"/d", IN_CREATE | IN_MASK_CREATE),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        g.add_watch(&vfs, &r(), b"/d", IN_MASK_ADD | IN_MASK_CREATE | IN_CREATE),
        Err(Errno::EINVAL)
    );
    assert_eq!(g.add_watch(&vfs, &r(), b"/d", 0), Err(Errno::EINVAL));
    assert_eq!(
        g.add_watch(&vfs, &r(), b"/d/f", IN_ONLYDIR | IN_ALL_EVENTS),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(
        g.add_watch(&vfs, &r(), b"/d/none", IN_ALL_EVENTS),
        Err(Errno::ENOENT)
    );
    // Read permission on the inode is required.
    ok!(vfs.chmod(&r(), b"/d/f", 0o200));
    assert_eq!(
        g.add_watch(&vfs, &Cred::user(1000, 1000), b"/d/f", IN_ALL_EVENTS),
        Err(Errno::EACCES)
    );
    // Symlinks: followed unless IN_DONT_FOLLOW.
    ok!(vfs.symlink(&r(), b"f", None, b"/d/l"));
    drain(&g);
    let wf = ok!(g.add_watch(&vfs, &r(), b"/d/l", IN_ATTRIB));
    let wl = ok!(g.add_watch(&vfs, &r(), b"/d/l", IN_ATTRIB | IN_DONT_FOLLOW));
    assert_ne!(wf, wl);
    let at_f = ok!(vfs.resolve(&r(), None, b"/d/f", 0));
    assert_eq!(ok!(g.add_mark(&at_f, IN_ATTRIB)), wf);
    // Removal queues IN_IGNORED; descriptors are not reused right away.
    ok!(g.remove_watch(wf));
    assert_eq!(g.remove_watch(wf), Err(Errno::EINVAL));
    assert_eq!(g.remove_watch(999), Err(Errno::EINVAL));
    expect(&g, &[&format!("{wf} IGNORED")]);
    let again = ok!(g.add_watch(&vfs, &r(), b"/d/f", IN_ATTRIB));
    assert!(again > wl, "cyclic allocation: {again} after {wl}");
    assert_eq!(vfs.stats().watch_marks, 3);
    drop(g);
    assert_marks_gone(&vfs);
}

#[test]
fn oneshot_fires_once_then_ignored() {
    let (vfs, g, _) = setup();
    create(&vfs, b"/d/f");
    let w = ok!(g.add_watch(&vfs, &r(), b"/d/f", IN_ATTRIB | IN_ONESHOT));
    drain(&g);
    ok!(vfs.chmod(&r(), b"/d/f", 0o600));
    ok!(vfs.chmod(&r(), b"/d/f", 0o644));
    expect(
        &g,
        &[
            "1 ATTRIB f",
            &format!("{w} ATTRIB"),
            // Destroyed as soon as it fired, within the same operation.
            &format!("{w} IGNORED"),
            "1 ATTRIB f",
        ],
    );
    assert_eq!(g.stats().marks, 1);
}

#[test]
fn excl_unlink_skips_unlinked_children() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    let g = Group::default();
    ok!(g.add_watch(&vfs, &r(), b"/d", IN_MODIFY | IN_EXCL_UNLINK));
    let f = ok!(vfs.open(&r(), None, b"/d/f", O_RDWR | O_CREAT, 0o644));
    ok!(vfs.write(&f, b"a", 0));
    ok!(vfs.unlink(&r(), None, b"/d/f"));
    ok!(vfs.write(&f, b"b", 1));
    expect(&g, &["1 MODIFY f"]);
}

#[test]
fn group_close_removes_its_marks_and_wakes_readers() {
    let (vfs, g, _) = setup();
    for i in 0..20 {
        let p = format!("/d/f{i}");
        create(&vfs, p.as_bytes());
        ok!(g.add_watch(&vfs, &r(), p.as_bytes(), IN_ALL_EVENTS));
    }
    let before = vfs.stats();
    assert_eq!(before.watch_marks, 21);
    assert!(active());
    let g = Arc::new(g);
    drain(&g);
    let reader = {
        let g = g.clone();
        std::thread::spawn(move || g.read_events(16, None))
    };
    std::thread::sleep(Duration::from_millis(20));
    g.close();
    assert_eq!(ok!(reader.join()), Err(ReadError::Closed));
    assert!(g.is_closed());
    assert_eq!(g.add_watch(&vfs, &r(), b"/d", IN_CREATE), Err(Errno::EBADF));
    assert_eq!(g.stats().marks, 0);
    // Nothing watched any more: events cost nothing and go nowhere.
    create(&vfs, b"/d/late");
    assert_eq!(g.try_read_events(10), Err(ReadError::Closed));
    drop(g);
    assert_marks_gone(&vfs);
    // The inodes themselves are untouched.
    assert!(vfs.stat(&r(), None, b"/d/f3", true).is_ok());
}

#[test]
fn blocking_read_timeout_and_wake() {
    let (vfs, g, _) = setup();
    let g = Arc::new(g);
    let t0 = Instant::now();
    assert_eq!(ok!(g.read_events(8, Some(Duration::from_millis(30)))), []);
    assert!(t0.elapsed() >= Duration::from_millis(30));
    // A wake before the read is not lost.
    g.wake();
    assert_eq!(g.read_events(8, None), Err(ReadError::Woken));
    // A wake during a blocked read.
    let reader = {
        let g = g.clone();
        std::thread::spawn(move || g.read_events(8, None))
    };
    std::thread::sleep(Duration::from_millis(20));
    g.wake();
    assert_eq!(ok!(reader.join()), Err(ReadError::Woken));
    // An event wakes a blocked reader with it.
    let reader = {
        let g = g.clone();
        std::thread::spawn(move || g.read_events(8, Some(Duration::from_secs(10))))
    };
    std::thread::sleep(Duration::from_millis(20));
    ok!(vfs.mkdir(&r(), None, b"/d/x", 0o755));
    let evs = ok!(ok!(reader.join()));
    assert_eq!(
        evs.iter().map(render).collect::<Vec<_>>(),
        ["1 CREATE,ISDIR x"]
    );
    // max bounds one read.
    for i in 0..5 {
        create(&vfs, format!("/d/m{i}").as_bytes());
    }
    assert_eq!(ok!(g.read_events(2, None)).len(), 2);
    assert_eq!(ok!(g.read_events(0, None)).len(), 0);
}

#[test]
fn unmount_reports_unmount_then_ignored() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/mnt", 0o755));
    ok!(vfs.mount_type(&r(), "tmpfs", "", b"/mnt"));
    ok!(vfs.mkdir(&r(), None, b"/mnt/d", 0o755));
    create(&vfs, b"/mnt/d/f");
    let g = Group::default();
    let wd = ok!(g.add_watch(&vfs, &r(), b"/mnt/d", IN_CREATE));
    let wf = ok!(g.add_watch(&vfs, &r(), b"/mnt/d/f", IN_MODIFY));
    let fired = Arc::new(AtomicUsize::new(0));
    let at = ok!(vfs.resolve(&r(), None, b"/mnt/d/f", 0));
    let dw = {
        let fired = fired.clone();
        ok!(watch_destruction(at.inode(), move |i| {
            assert!(i.nlink() > 0, "evicted by the unmount, not deleted");
            fired.fetch_add(1, Ordering::SeqCst);
        }))
    };
    drop(at);
    ok!(vfs.umount(&r(), b"/mnt"));
    let mut got = rendered(&g);
    got.sort();
    let mut want = vec![
        format!("{wd} UNMOUNT,ISDIR"),
        format!("{wd} IGNORED"),
        format!("{wf} UNMOUNT"),
        format!("{wf} IGNORED"),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    assert_eq!(dw.state(), DestroyState::Fired);
    assert!(!dw.cancel());
    drop(dw);
    assert_marks_gone(&vfs);
}

#[test]
fn pins_made_with_mkobj_report_create() {
    let (vfs, g, _) = setup();
    let d = ok!(vfs.resolve(&r(), None, b"/d", 0));
    // memfs takes no objects; the event must not fire for a failed create.
    let res = vfs.mkobj_at(&r(), &d, b"obj", 0o600, Box::new(1u32));
    if res.is_ok() {
        expect(&g, &["1 CREATE obj"]);
    } else {
        expect(&g, &[]);
    }
}

// ---- destruction watches ----

fn counter() -> (Arc<AtomicUsize>, impl FnOnce(&Arc<Inode>) + Send + 'static) {
    let c = Arc::new(AtomicUsize::new(0));
    let c2 = c.clone();
    (c, move |_: &Arc<Inode>| {
        c2.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn destruction_fires_once_at_eviction_not_at_unlink() {
    let vfs = Vfs::new_memfs();
    let f = ok!(vfs.open(&r(), None, b"/f", O_RDWR | O_CREAT, 0o644));
    let (n, cb) = counter();
    let w = ok!(watch_destruction(f.inode(), cb));
    assert_eq!(vfs.stats().destroy_watches, 1);
    assert_eq!(w.ino(), f.inode().ino());
    // Destruction watches are not event marks.
    assert!(vfs.stats().watch_marks == 0);
    ok!(vfs.link(&r(), b"/f", b"/g", false));
    ok!(vfs.unlink(&r(), None, b"/f"));
    ok!(vfs.unlink(&r(), None, b"/g"));
    assert_eq!(n.load(Ordering::SeqCst), 0, "still open");
    assert_eq!(w.state(), DestroyState::Armed);
    let inode = f.inode().clone();
    drop(f);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert_eq!(w.state(), DestroyState::Fired);
    assert!(!w.cancel());
    assert_eq!(vfs.stats().destroy_watches, 0);
    // An evicted inode takes no new watch.
    let (_, cb) = counter();
    assert_eq!(watch_destruction(&inode, cb).err(), Some(Errno::ENOENT));
    let g = Group::default();
    assert_eq!(g.add_inode_mark(&inode, IN_ALL_EVENTS), Err(Errno::ENOENT));
    drop(inode);
    drop(w);
    assert_marks_gone(&vfs);
}

#[test]
fn destruction_cancel_before_eviction() {
    let vfs = Vfs::new_memfs();
    create(&vfs, b"/f");
    let at = ok!(vfs.resolve(&r(), None, b"/f", 0));
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Canary(Arc<AtomicUsize>);
    impl Drop for Canary {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let canary = Canary(dropped.clone());
    let (n, cb) = counter();
    let w = ok!(watch_destruction(at.inode(), move |i| {
        let _keep = &canary;
        cb(i)
    }));
    // Several watches on one inode are independent.
    let (n2, cb2) = counter();
    let w2 = ok!(watch_destruction(at.inode(), cb2));
    assert!(w.cancel());
    assert!(!w.cancel(), "only once");
    assert_eq!(w.state(), DestroyState::Cancelled);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the callback was dropped"
    );
    drop(at);
    ok!(vfs.unlink(&r(), None, b"/f"));
    assert_eq!(n.load(Ordering::SeqCst), 0);
    assert_eq!(n2.load(Ordering::SeqCst), 1);
    assert_eq!(w2.state(), DestroyState::Fired);
    // A dropped handle leaves the watch armed.
    create(&vfs, b"/h");
    let at = ok!(vfs.resolve(&r(), None, b"/h", 0));
    let (n3, cb3) = counter();
    drop(ok!(watch_destruction(at.inode(), cb3)));
    drop(at);
    ok!(vfs.unlink(&r(), None, b"/h"));
    assert_eq!(n3.load(Ordering::SeqCst), 1);
    drop((w, w2));
    assert_marks_gone(&vfs);
}

#[test]
fn destruction_watch_and_event_marks_coexist() {
    let (vfs, g, _) = setup();
    create(&vfs, b"/d/f");
    let wf = ok!(g.add_watch(&vfs, &r(), b"/d/f", IN_DELETE_SELF));
    let at = ok!(vfs.resolve(&r(), None, b"/d/f", 0));
    let (n, cb) = counter();
    let w = ok!(watch_destruction(at.inode(), cb));
    drain(&g);
    // `at` keeps the dentry busy: DELETE_SELF waits for eviction, with the callback.
    ok!(vfs.unlink(&r(), None, b"/d/f"));
    expect(&g, &["1 DELETE f"]);
    drop(at);
    expect(
        &g,
        &[&format!("{wf} DELETE_SELF"), &format!("{wf} IGNORED")],
    );
    assert_eq!(n.load(Ordering::SeqCst), 1);
    drop(w);
    drop(g);
    assert_marks_gone(&vfs);
}

#[test]
fn destruction_fires_for_every_inode_when_the_vfs_goes() {
    let vfs = Vfs::new_memfs();
    let total = Arc::new(AtomicUsize::new(0));
    let mut ws = Vec::new();
    for i in 0..10 {
        let p = format!("/f{i}");
        create(&vfs, p.as_bytes());
        let at = ok!(vfs.resolve(&r(), None, p.as_bytes(), 0));
        let t = total.clone();
        ws.push(ok!(watch_destruction(at.inode(), move |_| {
            t.fetch_add(1, Ordering::SeqCst);
        })));
    }
    drop(vfs);
    assert_eq!(total.load(Ordering::SeqCst), 10);
    assert!(ws.iter().all(|w| w.state() == DestroyState::Fired));
}

/// Eviction and cancel race from two threads, many times: for every watch exactly one of
/// them wins — the callback ran once and cancel said false, or cancel said true and the
/// callback never ran.
#[test]
fn destruction_exactly_once_racing_eviction_and_cancel() {
    let vfs = Vfs::new_memfs();
    const N: usize = 2000;
    let mut fired_total = 0;
    let mut cancelled_total = 0;
    for round in 0..N {
        let p = format!("/f{round}");
        let f = ok!(vfs.open(&r(), None, p.as_bytes(), O_RDWR | O_CREAT, 0o644));
        ok!(vfs.unlink(&r(), None, p.as_bytes()));
        let (n, cb) = counter();
        let w = Arc::new(ok!(watch_destruction(f.inode(), cb)));
        let barrier = Arc::new(Barrier::new(2));
        let t = {
            let (w, barrier) = (w.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                w.cancel()
            })
        };
        barrier.wait();
        drop(f); // evicts
        let cancelled = t.join().unwrap();
        let fired = n.load(Ordering::SeqCst);
        assert_eq!(fired + cancelled as usize, 1, "round {round}");
        assert_eq!(
            w.state(),
            if cancelled {
                DestroyState::Cancelled
            } else {
                DestroyState::Fired
            }
        );
        fired_total += fired;
        cancelled_total += cancelled as usize;
    }
    eprintln!("fired {fired_total}, cancelled {cancelled_total}");
    assert_marks_gone(&vfs);
}

/// Registration racing eviction: either the watch is refused (ENOENT) or its callback runs
/// exactly once — never a watch that is accepted and then forgotten.
#[test]
fn destruction_registration_racing_eviction() {
    let vfs = Vfs::new_memfs();
    for round in 0..2000 {
        let p = format!("/f{round}");
        let f = ok!(vfs.open(&r(), None, p.as_bytes(), O_RDWR | O_CREAT, 0o644));
        ok!(vfs.unlink(&r(), None, p.as_bytes()));
        let inode = f.inode().clone();
        let barrier = Arc::new(Barrier::new(2));
        let t = {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let (n, cb) = counter();
                barrier.wait();
                let res = watch_destruction(&inode, cb);
                (n, res)
            })
        };
        barrier.wait();
        drop(f);
        let (n, res) = t.join().unwrap();
        match res {
            Ok(w) => {
                assert_eq!(
                    n.load(Ordering::SeqCst),
                    1,
                    "round {round}: accepted, not fired"
                );
                assert_eq!(w.state(), DestroyState::Fired);
            }
            Err(e) => {
                assert_eq!(e, Errno::ENOENT);
                assert_eq!(n.load(Ordering::SeqCst), 0);
            }
        }
    }
    assert_marks_gone(&vfs);
}

// ---- stress ----

/// Writers create, write, rename and unlink in watched directories while other threads add
/// and remove marks, and groups come and go. Checks: no deadlock, no event for a wd after
/// its IN_IGNORED, each MOVED_FROM's cookie is seen at most twice, and every counter back to
/// zero at the end.
#[test]
fn stress_events_marks_and_groups() {
    let vfs = Vfs::new_memfs();
    for d in 0..4 {
        ok!(vfs.mkdir(&r(), None, format!("/d{d}").as_bytes(), 0o755));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut threads = Vec::new();
    // Writers.
    for t in 0..3 {
        let (vfs, stop) = (vfs.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let d = i % 4;
                let p = format!("/d{d}/w{t}_{}", i % 8);
                if let Ok(f) = vfs.open(&r(), None, p.as_bytes(), O_RDWR | O_CREAT, 0o644) {
                    let _ = vfs.write(&f, b"data", 0);
                    let q = format!("/d{}/w{t}_{}", (d + 1) % 4, i % 8);
                    let _ = vfs.rename(&r(), p.as_bytes(), q.as_bytes(), 0);
                    let _ = vfs.chmod(&r(), q.as_bytes(), 0o600);
                    if i.is_multiple_of(3) {
                        let _ = vfs.unlink(&r(), None, q.as_bytes());
                    }
                }
                i += 1;
            }
        }));
    }
    // Watchers: each owns groups that it reads, re-marks and drops.
    for _ in 0..2 {
        let (vfs, stop, violations) = (vfs.clone(), stop.clone(), violations.clone());
        threads.push(std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let g = Group::new(GroupOptions {
                    max_events: 256,
                    ..Default::default()
                });
                let mut ignored = std::collections::HashSet::new();
                let mut cookies: std::collections::HashMap<u32, u32> = Default::default();
                for k in 0..20 {
                    let d = (round + k) % 4;
                    let p = format!("/d{d}");
                    let _ = g.add_watch(&vfs, &r(), p.as_bytes(), IN_ALL_EVENTS);
                    let fp = format!("/d{d}/w0_{}", k % 8);
                    let _ = g.add_watch(&vfs, &r(), fp.as_bytes(), IN_ALL_EVENTS | IN_ONESHOT);
                    if k % 5 == 4 {
                        if let Some(w) = g.watches().first() {
                            let _ = g.remove_watch(w.wd);
                        }
                    }
                    for e in g.try_read_events(usize::MAX).unwrap() {
                        if e.is_overflow() {
                            continue;
                        }
                        if ignored.contains(&e.wd) {
                            violations
                                .lock()
                                .unwrap()
                                .push(format!("event after IGNORED: {e:?}"));
                        }
                        if e.mask & IN_IGNORED != 0 {
                            ignored.insert(e.wd);
                        }
                        if e.cookie != 0 {
                            *cookies.entry(e.cookie).or_default() += 1;
                        }
                    }
                }
                if let Some((c, n)) = cookies.iter().find(|(_, &n)| n > 2) {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("cookie {c} seen {n} times in one group"));
                }
                round += 1;
                drop(g);
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let v = violations.lock().unwrap();
    assert!(v.is_empty(), "{:?}", &v[..v.len().min(5)]);
    assert_marks_gone(&vfs);
}

/// Eviction racing group close and mark removal on the same inodes.
#[test]
fn stress_eviction_vs_group_teardown() {
    let vfs = Vfs::new_memfs();
    for round in 0..300 {
        let g = Arc::new(Group::default());
        let mut files = Vec::new();
        for i in 0..8 {
            let p = format!("/r{round}_{i}");
            let f = ok!(vfs.open(&r(), None, p.as_bytes(), O_RDWR | O_CREAT, 0o644));
            ok!(g.add_watch(&vfs, &r(), p.as_bytes(), IN_ALL_EVENTS));
            ok!(vfs.unlink(&r(), None, p.as_bytes()));
            files.push(f);
        }
        let barrier = Arc::new(Barrier::new(3));
        let closer = {
            let (g, b) = (g.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                if round % 2 == 0 {
                    g.close();
                } else {
                    for w in g.watches() {
                        let _ = g.remove_watch(w.wd);
                    }
                }
            })
        };
        let reader = {
            let (g, b) = (g.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                let mut seen_ignored = std::collections::HashSet::new();
                while let Ok(evs) = g.read_events(64, Some(Duration::from_millis(20))) {
                    if evs.is_empty() {
                        break;
                    }
                    for e in evs {
                        assert!(!seen_ignored.contains(&e.wd), "event after IGNORED: {e:?}");
                        if e.mask & IN_IGNORED != 0 {
                            seen_ignored.insert(e.wd);
                        }
                    }
                }
            })
        };
        barrier.wait();
        drop(files);
        closer.join().unwrap();
        reader.join().unwrap();
        assert_eq!(g.stats().marks, 0, "round {round}");
    }
    assert_marks_gone(&vfs);
}

/// Threads race to create, remove and rename the same few names in one watched directory.
/// Directory events are queued under the directory lock, so replaying the stream must be a
/// valid history: a name is created only while absent and removed only while present, and
/// each move's MOVED_FROM is immediately followed by its MOVED_TO with the same cookie.
#[test]
fn stress_directory_events_replay_as_a_valid_history() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    let g = Group::new(GroupOptions {
        max_events: 1 << 20,
        ..Default::default()
    });
    ok!(g.add_watch(&vfs, &r(), b"/d", IN_CREATE | IN_DELETE | IN_MOVE));
    let names: [&[u8]; 3] = [b"/d/x", b"/d/y", b"/d/z"];
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let vfs = vfs.clone();
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                for _ in 0..3000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let a = names[(x % 3) as usize];
                    let b = names[((x >> 8) % 3) as usize];
                    let _ = match (x >> 16) % 3 {
                        0 => vfs.mknod(&r(), None, a, S_IFIFO | 0o644, 0).map(drop),
                        1 => vfs.rename(&r(), a, b, 0),
                        _ => vfs.unlink(&r(), None, a),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let evs = drain(&g);
    assert!(!evs.iter().any(Event::is_overflow));
    let mut exists = std::collections::HashSet::new();
    let mut i = 0;
    while i < evs.len() {
        let e = &evs[i];
        let n = e.name.clone().unwrap();
        match e.mask {
            IN_CREATE => assert!(exists.insert(n), "event {i}: create of a present name"),
            IN_DELETE => assert!(exists.remove(&n), "event {i}: delete of an absent name"),
            IN_MOVED_FROM => {
                assert!(exists.remove(&n), "event {i}: move of an absent name");
                let to = &evs[i + 1];
                assert_eq!(to.mask, IN_MOVED_TO, "event {i}: MOVED_FROM not followed");
                assert_eq!(to.cookie, e.cookie);
                // Rename over an existing name replaces it.
                exists.insert(to.name.clone().unwrap());
                i += 1;
            }
            m => panic!("unexpected event {i}: {m:#x}"),
        }
        i += 1;
    }
    // The replayed history ends where the directory is.
    let mut now: Vec<Box<[u8]>> = ok!(vfs.readdir(&ok!(vfs.resolve(&r(), None, b"/d", 0)), 2, 100))
        .into_iter()
        .map(|d| d.name.into_boxed_slice())
        .collect();
    now.sort();
    let mut replayed: Vec<Box<[u8]>> = exists.into_iter().collect();
    replayed.sort();
    assert_eq!(now, replayed);
    eprintln!("{} directory events replayed", evs.len());
}

/// The inode's union mask (the one load an event costs) follows every add, modify, remove
/// and group close.
#[test]
fn union_mask_tracks_marks() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    let at = ok!(vfs.resolve(&r(), None, b"/d", 0));
    let mask = || {
        at.inode()
            .addons()
            .map_or(0, |a| a.watch_mask.load(Ordering::Acquire))
    };
    assert_eq!(mask(), 0);
    let g1 = Group::default();
    let g2 = Group::default();
    let w1 = ok!(g1.add_watch(&vfs, &r(), b"/d", IN_CREATE | IN_ONESHOT));
    assert_eq!(mask(), IN_CREATE, "flags are not events");
    ok!(g2.add_watch(&vfs, &r(), b"/d", IN_DELETE));
    assert_eq!(mask(), IN_CREATE | IN_DELETE);
    ok!(g2.add_watch(&vfs, &r(), b"/d", IN_ATTRIB));
    assert_eq!(mask(), IN_CREATE | IN_ATTRIB);
    ok!(g1.remove_watch(w1));
    assert_eq!(mask(), IN_ATTRIB);
    // A destruction watch adds no event bits.
    let (_, cb) = counter();
    let dw = ok!(watch_destruction(at.inode(), cb));
    assert_eq!(mask(), IN_ATTRIB);
    drop(g2);
    assert_eq!(mask(), 0);
    assert!(dw.cancel());
    drop((g1, dw));
    assert_marks_gone(&vfs);
}
