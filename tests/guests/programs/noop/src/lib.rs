//! The smallest handler: returns its input unchanged. Used to measure the
//! sandbox's own overhead per job.

wit_bindgen::generate!({
    path: "../../../../guest-sdk/wit",
    world: "objectos:jobs/job",
    generate_all,
});

struct Noop;

impl Guest for Noop {
    fn run(_ctx: JobContext, input: String) -> Result<String, JobError> {
        Ok(input)
    }
}

export!(Noop);
