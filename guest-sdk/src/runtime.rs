//! The glue between the `run` export and a [`Handler`]: decoding input,
//! encoding output, and reporting panics. Used by [`export_handler!`](crate::export_handler).

use std::sync::Once;

use crate::bindings::objectos::jobs::types as wit;
use crate::{Context, Error, Handler};

/// Runs `H` for one call of the `run` export.
pub fn run<H: Handler>(ctx: wit::JobContext, input: String) -> Result<String, wit::JobError> {
    install_panic_hook();
    let ctx = Context::from(ctx);
    let input: H::Input = serde_json::from_str(&input)
        .map_err(|e| Error::fatal(format!("the job's data does not fit this handler's input: {e}")))?;
    let output = H::run(&ctx, input)?;
    serde_json::to_string(&output)
        .map_err(|e| Error::fatal(format!("cannot encode the result as JSON: {e}")).into())
}

/// Reports a panic's message in the job log and on stderr (whose tail the
/// engine attaches to the failed attempt), then lets the guest abort.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            let location =
                info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let report = format!("panicked{location}: {message}");
            crate::log::write(crate::log::Level::Error, &report);
            eprintln!("{report}");
        }));
    });
}
