//! Objects a client creates over the control socket get the client's umask, as the kernel's
//! bpf(BPF_OBJ_PIN) applies the caller's `current_umask()` to a pin's `0600`: bpffs pins and
//! true pins outside bpffs alike.

mod common;

use common::*;

#[test]
fn pins_take_the_clients_umask() {
    let Some(d) = Daemon::start("cliumask", &[]) else {
        return;
    };
    let cli = format!("{BIN} --socket {}", d.sock.display());
    d.sh_ok("mkdir proj");
    for (umask, want) in [
        ("0022", "600"),
        ("0277", "400"),
        ("0177", "600"),
        ("0677", "0"),
    ] {
        let n = umask.trim_start_matches('0');
        d.sh_ok(&format!(
            "umask {umask}; {cli} map create /sys/fs/bpf/m{n} type array key 4 value 4 entries 1 name u{n} \
             && {cli} map pin pinned /sys/fs/bpf/m{n} /proj/m{n}"
        ));
        let modes = d.sh_ok(&format!("stat -c '%a' sys/fs/bpf/m{n} proj/m{n}"));
        assert_eq!(
            modes.split_whitespace().collect::<Vec<_>>(),
            vec![want, want],
            "umask {umask}"
        );
    }
}
