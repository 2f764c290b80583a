//! The template handler: copy this crate to start your own.
//!
//! It greets `name` `times` times, logs as it goes and reports progress.
//! It imports no capability, so any principal may run it. Try it with
//! `objectos run guest-sdk/examples/template --data '{"name":"Ada","times":3}'`.

use objectos_guest::{Context, Error, Handler, export_handler, info, progress};
use serde::{Deserialize, Serialize};

/// The job's data.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    name: String,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

/// The job's result.
#[derive(Serialize)]
struct Output {
    greetings: Vec<String>,
}

struct Template;

impl Handler for Template {
    type Input = Input;
    type Output = Output;

    fn run(ctx: &Context, input: Input) -> Result<Output, Error> {
        if input.name.trim().is_empty() {
            // Bad input will not get better on a retry: fail for good.
            return Err(Error::fatal("`name` must not be empty"));
        }
        if input.times > 1000 {
            return Err(Error::fatal(format!("`times` is {}, at most 1000 greetings", input.times)));
        }
        info!("job {} (attempt {}) runs as {}", ctx.job_id, ctx.attempt, ctx.principal.user_id);
        let mut greetings = Vec::new();
        for i in 0..input.times {
            greetings.push(format!("hello, {}!", input.name));
            progress(((i + 1) * 100 / input.times) as u8, "greeting");
        }
        println!("said hello {} times", input.times);
        Ok(Output { greetings })
    }
}

export_handler!(Template);
