//! Compiles the test guest programs to components before the tests build.
//! (The SDK examples are the engine's: `objectos_engine::examples`.)

use std::path::Path;

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guests = objectos_guest_build::build_workspace(&here.join("../programs"));
    objectos_guest_build::write_bytes_module(&guests, "guests.rs");
}
