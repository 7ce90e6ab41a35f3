fn main() -> std::process::ExitCode {
    oect_host::cli::main()
}
