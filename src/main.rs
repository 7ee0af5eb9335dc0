//! The `glidepath` binary: everything lives in the library; `cli::main` parses the
//! arguments, runs one command, prints its error (once) and returns the exit code.

fn main() {
    // Die quietly on a closed stdout pipe (`glidepath history | head`) like other command
    // line tools, instead of panicking in println!. Safe here: children get null stdin,
    // and sockets write with MSG_NOSIGNAL, so only our own stdout/stderr can raise it.
    // SAFETY: setting a signal disposition before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(glidepath::cli::main());
}
