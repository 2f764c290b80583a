//! The HTTP API of a node on its SQLite database (`synchronous=FULL`, as
//! `objectos serve` runs by default), over real TCP on 127.0.0.1, the audit
//! log fed as a node feeds it.
//!
//! 1. Enqueue requests/s with the workers stopped: `POST /v1/jobs` over
//!    CONNECTIONS keep-alive connections (default 32), and `POST
//!    /v1/jobs/batch` of 100 jobs a request.
//! 2. Enqueue-to-completion latency of a no-op job with the workers
//!    running, one job at a time: from sending the request to the job's
//!    completion being stored (p50, p99 of LATENCY jobs, default 1,000).
//! 3. Upload-to-ready of a 1 MiB component: `PUT /v1/handlers/{name}` to
//!    its answer, the bytes validated and compiled (new bytes every round,
//!    so nothing is cached). The component is `report-generation` (the
//!    largest built-in, 344 KiB of code) with a custom section filling it
//!    to 1 MiB; the code-only upload is timed too.
//!
//! Prints medians of ROUNDS runs (default 3). Run with
//! `cargo bench -p objectos-engine --bench api` (`REQUESTS=…` per round,
//! default 20,000).

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use objectos_engine::api;
use objectos_engine::config::{EngineConfig, TokenConfig, WorkersConfig};
use objectos_engine::digest::sha256_hex;
use objectos_engine::node::Node;
use objectos_engine::principal::Principal;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TOKEN: &str = "bench-token";
const SYSTEM: &str = "name: bench\nsystem:\n  profiles:\n    admin: [jobs.enqueue, jobs.read, handlers.upload, handlers.read]\n";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    async fn open(address: &str) -> Self {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self { stream: BufReader::new(stream), host: address.to_string() }
    }

    /// Sends a request and returns the status and body.
    async fn send(&mut self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(body).await.expect("write");
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status");
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        let mut length = 0;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(": ")
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.parse().expect("a length");
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("body");
        (status, body)
    }
}

/// `wasm` with a custom section appended so it is `size` bytes long, its
/// content `nonce` so every round's bytes (and sha256) differ.
fn padded(wasm: &[u8], size: usize, nonce: u64) -> Vec<u8> {
    let name = format!("bench-padding-{nonce}");
    let mut section = Vec::new();
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name.as_bytes());
    let fill = size.saturating_sub(wasm.len() + section.len() + 6);
    section.resize(section.len() + fill, 0);
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(&mut out, section.len() as u64);
    out.extend(section);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn main() {
    objectos_alloc::keep_freed_memory();
    let requests = env("REQUESTS", 20_000);
    let connections = env("CONNECTIONS", 32);
    let latency_jobs = env("LATENCY", 1000);
    let rounds = env("ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let permissions = dir.path().join("permissions");
        std::fs::create_dir_all(&permissions).expect("permissions dir");
        std::fs::write(permissions.join("system.yaml"), SYSTEM).expect("write set");
        let mut config = EngineConfig {
            data_dir: dir.path().join("data"),
            permissions: Some(permissions),
            workers: WorkersConfig { concurrency: 16, ..Default::default() },
            ..Default::default()
        };
        config.api.tokens = vec![TokenConfig {
            name: "bench".into(),
            sha256: sha256_hex(TOKEN.as_bytes()),
            principal: Principal::new("bench", &["admin"]),
        }];
        config.api.max_body_bytes = 64 << 20;
        let node = Arc::new(Node::open(config).expect("node"));
        node.queue.registry().register("noop", objectos_test_guests::NOOP.to_vec()).await.expect("register");
        let audit = node.start_audit();
        let (tokens, _) = api::auth::load(&node.config.data_dir, &node.config.api.tokens).expect("tokens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(axum::serve(listener, api::router(node.clone(), tokens)).into_future());
        println!("HTTP API on SQLite (synchronous=FULL), audit log on; medians of {rounds} rounds\n");

        let single = json!({"name": "noop", "data": {}}).to_string();
        let (mut rates, mut batch_rates) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            let per_connection = requests / connections;
            let mut tasks = Vec::new();
            for _ in 0..connections {
                let (address, body) = (address.clone(), single.clone());
                tasks.push(tokio::spawn(async move {
                    let mut connection = Connection::open(&address).await;
                    for _ in 0..per_connection {
                        let (status, _) =
                            connection.send("POST", "/v1/jobs", "application/json", body.as_bytes()).await;
                        assert_eq!(status, 201);
                    }
                }));
            }
            for task in tasks {
                task.await.expect("client");
            }
            rates.push((per_connection * connections) as f64 / started.elapsed().as_secs_f64());

            let batch = json!({"jobs": vec![json!({"name": "noop", "data": {}}); 100]}).to_string();
            let started = Instant::now();
            let batches = requests / 100;
            let mut tasks = Vec::new();
            let clients = connections.min(8);
            for _ in 0..clients {
                let (address, body) = (address.clone(), batch.clone());
                tasks.push(tokio::spawn(async move {
                    let mut connection = Connection::open(&address).await;
                    for _ in 0..batches / clients {
                        let (status, _) = connection
                            .send("POST", "/v1/jobs/batch", "application/json", body.as_bytes())
                            .await;
                        assert_eq!(status, 201);
                    }
                }));
            }
            for task in tasks {
                task.await.expect("client");
            }
            batch_rates.push((batches / clients * clients * 100) as f64 / started.elapsed().as_secs_f64());
        }
        println!(
            "enqueue, workers stopped: {:.0} requests/s single ({connections} connections), \
             {:.0} jobs/s in batches of 100",
            median(rates),
            median(batch_rates)
        );

        // Drain what was enqueued, then time jobs one at a time.
        let workers = node.queue.start();
        loop {
            let (counts, _) = node.queue.stats().await.expect("stats");
            if counts.by_status.get("pending").copied().unwrap_or(0) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut connection = Connection::open(&address).await;
        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let mut latencies = Vec::with_capacity(latency_jobs);
            for _ in 0..latency_jobs {
                let started = Instant::now();
                let (status, body) =
                    connection.send("POST", "/v1/jobs", "application/json", single.as_bytes()).await;
                assert_eq!(status, 201);
                let job: serde_json::Value = serde_json::from_slice(&body).expect("a job");
                node.queue.wait_final(job["id"].as_str().expect("an id")).await.expect("wait");
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            latencies.sort_by(f64::total_cmp);
            p50s.push(latencies[latencies.len() / 2]);
            p99s.push(latencies[latencies.len() * 99 / 100]);
        }
        println!(
            "enqueue to completion, one job at a time, workers running: p50 {:.2} ms, p99 {:.2} ms",
            median(p50s),
            median(p99s)
        );

        let code =
            objectos_engine::builtins::ALL.iter().find(|b| b.name == "report-generation").expect("built-in");
        for (label, size) in [("code only", code.wasm.len()), ("1 MiB", 1 << 20)] {
            let mut times = Vec::new();
            for round in 0..rounds {
                let bytes = padded(code.wasm, size, round as u64 + size as u64);
                let started = Instant::now();
                let (status, body) = connection
                    .send("PUT", &format!("/v1/handlers/up-{size}-{round}"), "application/wasm", &bytes)
                    .await;
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            println!(
                "upload to ready, {label} ({} KiB): {:.0} ms",
                padded(code.wasm, size, 0).len() / 1024,
                median(times)
            );
        }
        workers.shutdown(Some(Duration::from_secs(5))).await;
        audit.stop().await;
    });
}
