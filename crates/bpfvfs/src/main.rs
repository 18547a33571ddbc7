fn main() {
    std::process::exit(bpfvfs::cli::main());
}
