//! Sending windows: one `POST /push.v1.PusherService/Push` per window, with the auth and
//! tenant headers; failures classified as worth retrying (server down, 5xx, 429, timeout)
//! or refused for good (other 4xx: retrying the same bytes cannot help).

use std::io::Read;
use std::time::Duration;

use base64::Engine;

use crate::config::{AgentConfig, Auth};
use crate::http::{self, ClientError};
use crate::push::Outgoing;

/// Why a push failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Try again later.
    Retry(String),
    /// The server refused this window; it is dropped and counted.
    Refused(String),
}

/// Pushes windows to one server.
#[derive(Debug)]
pub struct Uploader {
    agent: ureq::Agent,
    url: String,
    authorization: Option<String>,
    tenant_id: Option<String>,
}

impl Uploader {
    /// An uploader for `config.server`, trusting the system's roots and `config.ca_cert`.
    pub fn new(config: &AgentConfig) -> Result<Self, ClientError> {
        let agent = http::client(&http::ClientConfig {
            ca_cert: config.ca_cert.clone(),
            timeout: Some(config.request_timeout),
        })?;
        let authorization = match &config.auth {
            Auth::None => None,
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
            Auth::Basic { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
        };
        Ok(Uploader {
            agent,
            url: format!(
                "{}/push.v1.PusherService/Push",
                config.server.trim_end_matches('/')
            ),
            authorization,
            tenant_id: config.tenant_id.clone(),
        })
    }

    /// Sends one window.
    pub fn send(&self, outgoing: &Outgoing) -> Result<(), SendError> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("content-type", "application/proto")
            .header("connect-protocol-version", "1");
        if let Some(auth) = &self.authorization {
            request = request.header("authorization", auth);
        }
        if let Some(tenant) = &self.tenant_id {
            request = request.header("x-scope-orgid", tenant);
        }
        let mut response = request
            .send(&outgoing.body[..])
            .map_err(|e| SendError::Retry(http::explain(&e, &self.url)))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let mut text = String::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(4096)
            .read_to_string(&mut text);
        let mut why = format!("HTTP {status}: {}", text.trim());
        if status == 401 || status == 403 {
            why.push_str(
                " (the server refused the agent's credentials: check --auth-token or \
                 --basic-auth, and --tenant-id, which must be the token's tenant)",
            );
        }
        if status == 408 || status == 429 || status >= 500 {
            Err(SendError::Retry(why))
        } else {
            Err(SendError::Refused(why))
        }
    }
}

/// Exponential backoff with jitter: attempt n waits a uniform random time between half
/// and all of min(cap, base * 2^n), so agents that lost the same server do not return in
/// lockstep.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    rng: u64,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// Starts at up to `base`, grows to at most `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Backoff {
            attempt: 0,
            rng: seed | 1,
            base,
            cap,
        }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt += 1;
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(0.5 + 0.5 * unit)
    }

    /// After a success: start small again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits[3] >= Duration::from_millis(400) && waits[3] <= Duration::from_millis(800));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(2)));
        assert!(waits[7] >= Duration::from_secs(1));
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }
}
