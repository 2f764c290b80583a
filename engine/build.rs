//! Compiles the SDK's example handlers (`guest-sdk/examples`) to components
//! and embeds them, so `objectos demo` can register them without a
//! toolchain. Later, the built-in handlers of `jobs-wasm/` join them.

use std::path::Path;

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = objectos_guest_build::build_workspace(&here.join("../guest-sdk/examples"));
    objectos_guest_build::write_bytes_module(&examples, "examples.rs");
}
