//! A handler that misbehaves on request, for the sandbox's hostile-guest
//! tests. The job input is a JSON string naming the action, optionally with
//! an argument after a colon: `"spin"`, `"print:1048576"`, `"count:contacts"`,
//! `"read-artifact:art_…"`.
//!
//! It imports every capability of the contract, so it also serves the
//! capability-gating tests.

use objectos::jobs::{artifacts, artifacts_read, log, progress, records, records_import, records_write};
use std::hint::black_box;
use std::io::Write;

wit_bindgen::generate!({
    path: "../../../../guest-sdk/wit",
    world: "objectos:jobs/job",
    generate_all,
});

static mut SECRET: Option<String> = None;
static mut RUNS: u32 = 0;

struct Hostile;

impl Guest for Hostile {
    fn run(ctx: JobContext, input: String) -> Result<String, JobError> {
        let command = input.trim_matches('"');
        let (action, arg) = command.split_once(':').unwrap_or((command, ""));
        match action {
            "spin" => loop {
                black_box(0);
            },
            "alloc" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "recurse" => Ok(recurse(black_box(1)).to_string()),
            "panic" => panic!("handler gave up: {arg}"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(arg.parse().unwrap()));
                Ok("\"slept\"".into())
            }
            "print" => {
                let total: usize = arg.parse().unwrap();
                let line = [b'x'; 1023];
                let mut out = std::io::stdout().lock();
                let mut written = 0;
                while written < total {
                    out.write_all(&line).unwrap();
                    out.write_all(b"\n").unwrap();
                    written += 1024;
                }
                out.flush().unwrap();
                Ok(written.to_string())
            }
            "stderr" => {
                eprintln!("{arg}");
                Ok("null".into())
            }
            "log" => {
                log::write(log::Level::Info, &format!("hello from {}", ctx.job_id));
                progress::report(50, "half way");
                println!("printed line");
                Ok("null".into())
            }
            // Memory isolation: one job stores a secret, a later one looks for it.
            "store" => {
                // SAFETY: guests are single threaded.
                unsafe { SECRET = Some(arg.to_string()) };
                Ok("null".into())
            }
            "peek" => {
                // SAFETY: guests are single threaded.
                let secret = unsafe { (*std::ptr::addr_of!(SECRET)).clone() };
                Ok(format!("{:?}", secret.unwrap_or_default()))
            }
            "runs" => {
                // SAFETY: guests are single threaded.
                let runs = unsafe {
                    RUNS += 1;
                    RUNS
                };
                Ok(runs.to_string())
            }
            "context" => Ok(format!(
                "{{\"job\":{:?},\"user\":{:?},\"attempt\":{},\"schedule\":{}}}",
                ctx.job_id,
                ctx.principal.user_id,
                ctx.attempt,
                ctx.schedule_id.map_or("null".to_string(), |id| format!("{id:?}"))
            )),
            "retryable" => Err(JobError::Retryable(arg.into())),
            "fatal" => Err(JobError::Fatal(arg.into())),
            "count" => records::count(arg, "{}")
                .map(|n| n.to_string())
                .map_err(|e| JobError::Fatal(format!("{e:?}"))),
            "find" => records::find(arg, "{}")
                .map(|page| page.records)
                .map_err(|e| JobError::Fatal(format!("{e:?}"))),
            "insert" => records_write::insert(arg, r#"[{"name":"Ada"}]"#)
                .map(|ids| format!("{}", ids.len()))
                .map_err(|e| JobError::Fatal(format!("{e:?}"))),
            "import" => {
                records_import::import(arg, r#"[{"id":"r1","name":"Old"}]"#, records_import::OnConflict::Fail)
                    .map(|r| r.inserted.to_string())
                    .map_err(|e| JobError::Fatal(format!("{e:?}")))
            }
            "artifact" => {
                let writer = artifacts::create("out.txt", "text/plain")
                    .map_err(|e| JobError::Fatal(format!("{e:?}")))?;
                writer.write(arg.as_bytes()).map_err(|e| JobError::Fatal(format!("{e:?}")))?;
                let info = writer.finish().map_err(|e| JobError::Fatal(format!("{e:?}")))?;
                read_artifact(&info.id)
            }
            // Opens writers and never finishes them, holding each: how many
            // it got before a refusal (and the refusal), as `n:error`.
            "writers" => {
                let mut held = Vec::new();
                for _ in 0..arg.parse::<usize>().unwrap() {
                    match artifacts::create("held.bin", "application/octet-stream") {
                        Ok(writer) => {
                            writer.write(&[1; 1000]).map_err(|e| JobError::Fatal(format!("{e:?}")))?;
                            held.push(writer);
                        }
                        Err(e) => return Ok(format!("{:?}", format!("{}:{e:?}", held.len()))),
                    }
                }
                Ok(format!("{:?}", format!("{}:", held.len())))
            }
            // Writes `arg` bytes to one artifact in 64 KiB pieces; the
            // bytes written before a refusal, and the refusal.
            "artifact-bytes" => {
                let writer = artifacts::create("big.bin", "application/octet-stream")
                    .map_err(|e| JobError::Fatal(format!("{e:?}")))?;
                let (total, piece) = (arg.parse::<usize>().unwrap(), vec![7u8; 64 << 10]);
                let mut written = 0;
                while written < total {
                    if let Err(e) = writer.write(&piece) {
                        return Ok(format!("{:?}", format!("{written}:{e:?}")));
                    }
                    written += piece.len();
                }
                Ok(format!("{:?}", format!("{written}:")))
            }
            // Starts an artifact and returns without finishing it.
            "abandon" => {
                let writer = artifacts::create("left.bin", "application/octet-stream")
                    .map_err(|e| JobError::Fatal(format!("{e:?}")))?;
                writer.write(&vec![9u8; 300 << 10]).map_err(|e| JobError::Fatal(format!("{e:?}")))?;
                std::mem::forget(writer);
                Ok("null".into())
            }
            "exit" => std::process::exit(arg.parse().unwrap()),
            // Recursion holding a large frame in linear memory: overflows the
            // guest's own (shadow) stack rather than wasm's.
            "deep" => Ok(deep(black_box(0)).to_string()),
            "long-error" => Err(JobError::Fatal("e".repeat(arg.parse().unwrap()))),
            "long-progress" => {
                progress::report(10, &"p".repeat(arg.parse().unwrap()));
                Ok("null".into())
            }
            // Reads any artifact by id: someone else's, for the ownership tests.
            "read-artifact" => read_artifact(arg),
            other => Err(JobError::Fatal(format!("unknown action {other}"))),
        }
    }
}

#[inline(never)]
fn deep(depth: u64) -> u64 {
    let frame = black_box([depth as u8; 4096]);
    if depth == u64::MAX {
        return 0;
    }
    deep(depth + 1).wrapping_add(frame[(depth % 4096) as usize] as u64)
}

/// The whole of artifact `id`, as a JSON string.
fn read_artifact(id: &str) -> Result<String, JobError> {
    let reader = artifacts_read::open(id).map_err(|e| JobError::Fatal(format!("{e:?}")))?;
    let mut back = Vec::new();
    loop {
        let chunk = reader.read(4).map_err(|e| JobError::Fatal(format!("{e:?}")))?;
        if chunk.is_empty() {
            break;
        }
        back.extend(chunk);
    }
    Ok(format!("{:?}", String::from_utf8(back).unwrap()))
}

/// Recursion that keeps no locals in linear memory, so it exhausts the wasm
/// stack rather than Rust's shadow stack, and that LLVM cannot turn into a loop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 1;
    }
    recurse(depth + 1).wrapping_mul(3) ^ depth
}

export!(Hostile);
