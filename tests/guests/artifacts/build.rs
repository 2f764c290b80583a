//! Compiles the test guest programs and the SDK examples to components
//! before the tests build.

use std::path::Path;

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut guests = objectos_guest_build::build_workspace(&here.join("../programs"));
    guests.extend(objectos_guest_build::build_workspace(&here.join("../../../guest-sdk/examples")));
    objectos_guest_build::write_bytes_module(&guests, "guests.rs");
}
