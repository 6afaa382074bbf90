//! `llmc`: the command-line front end (see `src/cli/`).

mod cli;

fn main() {
    std::process::exit(cli::main());
}
