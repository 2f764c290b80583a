//! Compiles the built-in handlers (`jobs-wasm`) and the SDK's example
//! handlers (`guest-sdk/examples`) to components and embeds them, so the
//! engine registers them without a toolchain.

use std::path::Path;

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let builtins = objectos_guest_build::build_workspace(&here.join("../jobs-wasm"));
    objectos_guest_build::write_bytes_module(&builtins, "builtins.rs");
    let examples = objectos_guest_build::build_workspace(&here.join("../guest-sdk/examples"));
    objectos_guest_build::write_bytes_module(&examples, "examples.rs");
}
