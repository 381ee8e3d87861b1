//! The `advsoup` binary; everything lives in the library (`advsoup_cli`).
fn main() {
    advsoup_cli::tune_allocator();
    advsoup_cli::main_entry()
}
