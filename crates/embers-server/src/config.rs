//! Server settings: defaults, overridden by a TOML file, then by `EMBERS_*` environment
//! variables and flags (the CLI merges those two through clap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `embers server` can be told.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory (created if missing).
    pub data_dir: PathBuf,
    /// Keep data this long (`30d`, `12h`); empty keeps everything.
    pub retention: Option<String>,
    /// Largest request body, in bytes, as sent (compressed).
    pub max_body_bytes: usize,
    /// Largest body after decompression.
    pub max_decoded_bytes: usize,
    /// Most labels on one series.
    pub max_labels_per_series: usize,
    /// Longest label name or value.
    pub max_label_length: usize,
    /// Most series per service.
    pub max_series_per_service: usize,
    /// The other bounds of one ingest request (`[ingest]` in the TOML file). The four
    /// above (body sizes, label count and length) are set there, not here: their keys
    /// in this table are ignored.
    pub ingest: embers_formats::IngestBudget,
    /// Seconds between flushes of the in-memory head.
    pub flush_interval_seconds: u64,
    /// Bytes of decoded blocks cached for queries.
    pub cache_bytes: usize,
    /// `text` or `json` logs.
    pub log_format: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 4040)),
            data_dir: PathBuf::from("embers-data"),
            retention: None,
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 64 << 20,
            max_labels_per_series: 64,
            max_label_length: 1024,
            max_series_per_service: 10_000,
            ingest: embers_formats::IngestBudget::default(),
            flush_interval_seconds: 10,
            cache_bytes: 256 << 20,
            log_format: "text".into(),
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file (every key optional, unknown keys refused).
    pub fn from_toml(text: &str) -> Result<ServerConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The retention as a duration.
    pub fn retention(&self) -> Result<Option<Duration>, String> {
        match self.retention.as_deref().map(str::trim) {
            None | Some("") | Some("0") => Ok(None),
            Some(s) => crate::params::parse_duration(s)
                .map(|secs| Some(Duration::from_secs(secs.max(0) as u64)))
                .map_err(|e| format!("retention: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_refuses_typos() {
        let c =
            ServerConfig::from_toml("listen = \"127.0.0.1:5000\"\nretention = \"30d\"\n").unwrap();
        assert_eq!(c.listen.port(), 5000);
        assert_eq!(
            c.retention().unwrap(),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(c.max_body_bytes, ServerConfig::default().max_body_bytes);
        assert!(ServerConfig::from_toml("retension = \"1d\"").is_err());
    }
}
