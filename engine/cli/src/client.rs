//! Talking to a running `objectos serve`: where it is, the token, one
//! request helper per shape of route, and failures that say what to do
//! next and carry the exit code scripts rely on.
//!
//! The server and token come from, in order: `--server` / `--token`,
//! `OBJECTOS_SERVER` / `OBJECTOS_TOKEN`, the client config file written by
//! `objectos login`; the server defaults to serve's own default address.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Exit code when the server cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 5;
/// Exit code when the token is missing, refused, or may not do this (401, 403).
pub const EXIT_DENIED: u8 = 6;

/// Where `objectos serve` listens unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";

/// A failure with its own exit code; anything else exits with 1.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub exit: u8,
    /// The HTTP status the server answered, if it answered.
    pub status: Option<u16>,
    /// What went wrong and what to do next.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// How to reach the server (global options of every client command).
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The server's URL (default: the client config's, else http://127.0.0.1:7878).
    #[arg(long, value_name = "URL", env = "OBJECTOS_SERVER", global = true)]
    pub server: Option<String>,
    /// The API token (default: the client config's).
    #[arg(long, value_name = "TOKEN", env = "OBJECTOS_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

/// The client config file: `server` and `token`, written by `objectos login`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The server's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl ClientConfig {
    /// `OBJECTOS_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/objectos/client.yaml`,
    /// else `~/.config/objectos/client.yaml`.
    pub fn path() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("OBJECTOS_CLIENT_CONFIG") {
            return Some(path.into());
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
        Some(base.join("objectos").join("client.yaml"))
    }

    /// The file's settings; none if it does not exist.
    pub fn load() -> anyhow::Result<Self> {
        let Some(path) = Self::path() else { return Ok(Self::default()) };
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_norway::from_str(&text).with_context(|| format!("reading {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the file, readable by its owner only (it holds a token).
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = Self::path().context("no HOME or OBJECTOS_CLIENT_CONFIG to keep the client config in")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::write_all(&mut file, serde_norway::to_string(self)?.as_bytes())?;
        Ok(path)
    }
}

/// A connection to one server.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// A response body to read as it arrives, and what its headers say.
pub struct Download {
    /// `Content-Length`, if sent.
    pub length: Option<u64>,
    /// The `x-sha256` header, if sent.
    pub sha256: Option<String>,
    /// The body.
    pub body: Box<dyn Read + Send>,
}

impl Client {
    /// The client for `connection`, filled in from the client config file.
    pub fn new(connection: &Connection) -> anyhow::Result<Self> {
        let (base, token) = resolve(connection, ClientConfig::load()?);
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "--server `{base}` is not an http:// or https:// URL"
        );
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .user_agent(concat!("objectos/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self { base, token, agent })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// `GET path?query` and its JSON.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let request = self.authorize(self.agent.get(self.url(path))).query_pairs(query.iter().cloned());
        json_of(self.finish(request.call())?)
    }

    /// `method path` with a JSON body (`POST`, `PUT` or `PATCH`), and its JSON.
    pub fn send(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = self.url(path);
        let request = match method {
            "PUT" => self.agent.put(url),
            "PATCH" => self.agent.patch(url),
            _ => self.agent.post(url),
        };
        json_of(self.finish(self.authorize(request).send_json(body))?)
    }

    /// `POST path` without a body, and its JSON.
    pub fn post(&self, path: &str) -> anyhow::Result<Value> {
        json_of(self.finish(self.authorize(self.agent.post(self.url(path))).send_empty())?)
    }

    /// `DELETE path`, and its JSON (`null` for 204).
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        json_of(self.finish(self.authorize(self.agent.delete(self.url(path))).call())?)
    }

    /// `PUT path` with the bytes `body` reads (of `content_type`), and its JSON.
    pub fn put_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: impl Read + 'static,
    ) -> anyhow::Result<Value> {
        let request = self.authorize(self.agent.put(self.url(path))).content_type(content_type);
        json_of(self.finish(request.send(ureq::SendBody::from_owned_reader(body)))?)
    }

    /// `GET path?query`, its body left to read as it arrives.
    pub fn download(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Download> {
        let request = self.authorize(self.agent.get(self.url(path))).query_pairs(query.iter().cloned());
        let response = self.finish(request.call())?;
        let header =
            |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let length = header("content-length").and_then(|l| l.parse().ok());
        let sha256 = header("x-sha256");
        Ok(Download { length, sha256, body: Box::new(response.into_body().into_reader()) })
    }

    /// The response if it succeeded; otherwise a [`Failure`] saying why and
    /// what to do.
    fn finish(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let mut response = response.map_err(|error| self.unreachable(error))?;
        let status = response.status().as_u16();
        if status < 400 {
            return Ok(response);
        }
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("the server answered {status}: {}", body.trim()));
        Err(match status {
            401 => Failure {
                exit: EXIT_DENIED,
                status: Some(status),
                message: format!(
                    "{message}\nhint: pass --token or set OBJECTOS_TOKEN (the first `objectos serve` prints an \
                     admin token), or save one with `objectos login`"
                ),
            },
            403 => Failure {
                exit: EXIT_DENIED,
                status: Some(status),
                message: format!(
                    "{message}\nhint: the token's principal lacks the permission; an operator grants it in a \
                     permission set"
                ),
            },
            _ => Failure { exit: super::EXIT_ERROR, status: Some(status), message },
        }
        .into())
    }

    fn unreachable(&self, error: ureq::Error) -> anyhow::Error {
        let message = match error {
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(_) => {
                format!(
                    "cannot reach the server at {}: {error}\nhint: is `objectos serve` running there? Name another \
                     with --server or OBJECTOS_SERVER",
                    self.base
                )
            }
            other => format!("talking to {}: {other}", self.base),
        };
        Failure { exit: EXIT_UNREACHABLE, status: None, message }.into()
    }
}

/// The server's URL and the token to send it. The saved token goes only to
/// the saved server, never to another one named by a flag or variable.
fn resolve(connection: &Connection, saved: ClientConfig) -> (String, Option<String>) {
    let trim = |url: &str| url.trim_end_matches('/').to_string();
    let saved_server = saved.server.as_deref().map(trim);
    let base = connection
        .server
        .as_deref()
        .map(trim)
        .or(saved_server.clone())
        .unwrap_or_else(|| DEFAULT_SERVER.into());
    let saved_token = saved.token.filter(|_| saved_server.as_deref().unwrap_or(DEFAULT_SERVER) == base);
    (base, connection.token.clone().or(saved_token))
}

/// A response body as JSON; `null` if empty.
fn json_of(mut response: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
    let text = response.body_mut().with_config().limit(1 << 30).read_to_string()?;
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).context("the server's answer is not JSON")
}

/// `text` percent-encoded for one path segment.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(server: Option<&str>, token: &str) -> ClientConfig {
        ClientConfig { server: server.map(str::to_string), token: Some(token.into()) }
    }

    fn named(server: Option<&str>, token: Option<&str>) -> Connection {
        Connection { server: server.map(str::to_string), token: token.map(str::to_string) }
    }

    #[test]
    fn flags_win_and_a_saved_token_goes_only_to_its_server() {
        let home = Some("http://jobs.internal:7878/");
        let resolved = resolve(&named(None, None), saved(home, "t1"));
        assert_eq!(resolved, ("http://jobs.internal:7878".into(), Some("t1".into())));
        let same = resolve(&named(Some("http://jobs.internal:7878"), None), saved(home, "t1"));
        assert_eq!(same.1.as_deref(), Some("t1"));
        let elsewhere = resolve(&named(Some("http://other:7878"), None), saved(home, "t1"));
        assert_eq!(elsewhere, ("http://other:7878".into(), None), "the saved token is not sent elsewhere");
        let given = resolve(&named(Some("http://other:7878"), Some("t2")), saved(home, "t1"));
        assert_eq!(given.1.as_deref(), Some("t2"));
        let default = resolve(&named(None, None), saved(None, "t3"));
        assert_eq!(default, (DEFAULT_SERVER.into(), Some("t3".into())));
    }
}
