//! The `advsoup` command, built in the e2e package so its tests can spawn and kill it.
fn main() {
    advsoup_cli::tune_allocator();
    advsoup_cli::main_entry()
}
