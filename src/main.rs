fn main() {
    std::process::exit(glidepath::cli::main());
}
