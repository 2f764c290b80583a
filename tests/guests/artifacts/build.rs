//! Compiles the test guest programs to components before the tests build.

fn main() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guests = objectos_guest_build::build_workspace(&here.join("../programs"));
    objectos_guest_build::write_bytes_module(&guests, "guests.rs");
}
