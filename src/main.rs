fn main() {
    eprintln!("llmc: not yet implemented");
    std::process::exit(1);
}
