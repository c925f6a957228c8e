//! `workflowops`: see `workflowops --help`.

fn main() -> std::process::ExitCode {
    workflowops_api::cli::main()
}
