//! Cross-site safety: which browser pages may change state here, and CORS for the few
//! that are allowed to call from elsewhere.
//!
//! A web page on any site can make a browser POST `text/plain`, form or multipart bodies
//! to any address the browser reaches (no CORS preflight for those "simple" requests), so
//! without a check a page a developer opens could write into a server on their network.
//! Browsers say where such a request comes from in `Origin` (and `Sec-Fetch-Site`); pages
//! cannot forge either. So a request with an unsafe method (anything but GET, HEAD and
//! OPTIONS) is refused with 403 when its `Origin` is present and is neither the server's own
//! origin nor in `allowed_origins`. `Origin: null` (sandboxed frames, `file:` pages,
//! some redirects) is foreign. Requests without `Origin` (curl, SDKs, agents: no browser
//! involved) pass, unless `Sec-Fetch-Site` says a browser sent them from another site.
//!
//! The server's own origin is the request's `Host` (HTTP/2: `:authority`) with the
//! request's scheme; behind a reverse proxy, `X-Forwarded-Host` and `X-Forwarded-Proto`
//! replace them when `trust_proxy_headers` is on (never by default: any client could set
//! them). An HTTP/1 request does not carry its scheme; then host and port decide, which is
//! enough: one host and port is one listening socket, speaking one scheme, and a page on
//! a different scheme at that same host and port could only come from an on-path attacker
//! who can talk to the server directly anyway.
//!
//! **DNS rebinding:** a page at `http://evil.example:4040` whose name is re-pointed at the
//! server sends `Origin` equal to `Host`, so the Origin check passes it. `allowed_hosts`
//! closes that: when set, a request whose host name is not in the list is refused (every
//! method: rebinding is also how a page would *read* profiles). IP addresses and
//! `localhost` always pass, as a rebinding page cannot have those as its origin. With
//! an auth file, rebinding gains nothing either: the page has no token.
//!
//! **CORS** only for `allowed_origins` (exact `scheme://host[:port]`, no wildcards: a
//! pattern would let any matching site, or a typo-squatted one, write here): a preflight
//! from such an origin is answered with the methods and the headers our clients send, and
//! every response to it carries `Access-Control-Allow-Origin: <that origin>` and
//! `Vary: Origin`. Any other origin gets no CORS headers at all. Credentials mode
//! (cookies) is not allowed: our clients send tokens in `Authorization` explicitly.
//!
//! Refusals answer in the shape of the route: gRPC (`grpc-status` 7,
//! `PERMISSION_DENIED`), Connect (`{"code":"permission_denied"}`, 403), else plain text.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD,
    CONTENT_TYPE, HOST, ORIGIN, VARY,
};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Headers a browser client of ours sends (Connect, gRPC-web-ish, Pyroscope's HTTP API).
const ALLOW_HEADERS: &str = "authorization, content-type, content-encoding, x-scope-orgid, \
    connect-protocol-version, connect-timeout-ms, connect-content-encoding, \
    connect-accept-encoding, grpc-timeout, grpc-encoding, grpc-accept-encoding";
/// Response headers an allowed page may read (retry hints and error details).
const EXPOSE_HEADERS: &str = "retry-after, www-authenticate, grpc-status, grpc-message";

/// A setting that cannot be a policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// Not `scheme://host[:port]`.
    #[error(
        "allowed_origins: {0:?} is not an origin: write scheme://host[:port] \
         (no path, no trailing slash; wildcards are not accepted)"
    )]
    BadOrigin(String),
    /// Not a host name.
    #[error("allowed_hosts: {0:?} is not a host name (e.g. profiles.example.com)")]
    BadHost(String),
}

/// An origin, normalised: lower-case scheme and host, and the port (explicit, or the
/// scheme's default; `None` for schemes without one).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl Origin {
    /// Parses `scheme://host[:port]` (what browsers send; `null` and anything with a path,
    /// user info or query is `None`).
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = host_port(rest)?;
        let port = port.or_else(|| default_port(&scheme));
        Some(Origin { scheme, host, port })
    }
}

/// The lower-case host and explicit port of an authority without user info or path.
fn host_port(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', '*']) {
        return None;
    }
    let a: Authority = authority.parse().ok()?;
    if a.host().is_empty() || (a.port().is_some() && a.port_u16().is_none()) {
        return None;
    }
    Some((a.host().to_ascii_lowercase(), a.port_u16()))
}

/// The server's own origin as this request names it.
#[derive(Debug)]
struct Own {
    /// Known from `X-Forwarded-Proto` (trusted) or the request's URI (HTTP/2).
    scheme: Option<String>,
    host: String,
    /// The port `Host` names, if any.
    port: Option<u16>,
}

impl Own {
    fn matches(&self, o: &Origin) -> bool {
        if o.host != self.host || self.scheme.as_ref().is_some_and(|s| *s != o.scheme) {
            return false;
        }
        match self
            .port
            .or_else(|| self.scheme.as_deref().and_then(default_port))
        {
            Some(p) => o.port == Some(p),
            // No port and no scheme known: the scheme's default port, whichever it is.
            None => o.port.is_some() && o.port == default_port(&o.scheme),
        }
    }

    fn describe(&self) -> String {
        let scheme = self.scheme.as_deref().unwrap_or("http(s)");
        match self.port {
            Some(p) => format!("{scheme}://{}:{p}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }
}

/// The cross-site settings, parsed once at start.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Vec<Origin>,
    allowed_hosts: Vec<String>,
    trust_proxy_headers: bool,
}

impl Policy {
    /// Parses the three settings (see [`crate::ServerConfig`]).
    pub fn new(
        allowed_origins: &[String],
        allowed_hosts: &[String],
        trust_proxy_headers: bool,
    ) -> Result<Policy, OriginError> {
        let allowed = allowed_origins
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| Origin::parse(s).ok_or_else(|| OriginError::BadOrigin(s.to_owned())))
            .collect::<Result<_, _>>()?;
        let allowed_hosts = allowed_hosts
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| match host_port(s) {
                Some((host, None)) => Ok(host),
                _ => Err(OriginError::BadHost(s.to_owned())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            allowed,
            allowed_hosts,
            trust_proxy_headers,
        })
    }

    /// A header's first value, when proxy headers are trusted.
    fn forwarded<'a>(&self, headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        if !self.trust_proxy_headers {
            return None;
        }
        let v = headers.get(name)?.to_str().ok()?;
        v.split(',').next().map(str::trim).filter(|v| !v.is_empty())
    }

    /// The server's origin as the request names it; `None` without any host.
    fn own(&self, uri: &Uri, headers: &HeaderMap) -> Option<Own> {
        let authority = self
            .forwarded(headers, "x-forwarded-host")
            .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
            .or_else(|| uri.authority().map(Authority::as_str))?;
        let (host, port) = host_port(authority)?;
        let scheme = self
            .forwarded(headers, "x-forwarded-proto")
            .or_else(|| uri.scheme_str())
            .map(str::to_ascii_lowercase);
        Some(Own { scheme, host, port })
    }

    /// Refuses a host name outside `allowed_hosts` (when set): DNS rebinding.
    fn check_host(&self, own: Option<&Own>) -> Result<(), String> {
        if self.allowed_hosts.is_empty() {
            return Ok(());
        }
        let Some(own) = own else {
            return Err("a request without a Host header; allowed_hosts is set".into());
        };
        let host = own.host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<std::net::IpAddr>().is_ok()
            || host == "localhost"
            || self.allowed_hosts.contains(&own.host)
        {
            return Ok(());
        }
        Err(format!(
            "host {:?} is not one this server answers to (allowed_hosts, --allowed-hosts)",
            own.host
        ))
    }

    /// The `Origin` header's value when it is in `allowed_origins`.
    fn allowed_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let value = origin?;
        let parsed = Origin::parse(value.to_str().ok()?)?;
        self.allowed.contains(&parsed).then(|| value.clone())
    }

    /// Refuses a state-changing request a browser sent from another site.
    fn check_unsafe(&self, headers: &HeaderMap, own: Option<&Own>) -> Result<(), String> {
        let Some(origin) = headers.get(ORIGIN) else {
            // No Origin: not a browser, or an old one; trust Sec-Fetch-Site where present.
            return match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
                Some(site @ ("cross-site" | "same-site")) => Err(format!(
                    "cross-site request refused: the browser says it came from another \
                     site (Sec-Fetch-Site: {site})"
                )),
                _ => Ok(()),
            };
        };
        let text = origin.to_str().unwrap_or("");
        if let Some(parsed) = Origin::parse(text) {
            if own.is_some_and(|own| own.matches(&parsed)) || self.allowed.contains(&parsed) {
                return Ok(());
            }
        }
        let own = own.map_or_else(|| "unknown (no Host header)".into(), Own::describe);
        Err(format!(
            "cross-site request refused: Origin {text:?} is neither this server's origin \
             ({own}) nor in allowed_origins (--allowed-origins)"
        ))
    }
}

/// The policy the router layers, from a configuration `embers server` has validated
/// (`ServerConfig::origin_policy`). An invalid one here (a library caller that skipped
/// that) falls back to no allow-lists: stricter, never looser.
pub fn layer_state(config: &crate::ServerConfig) -> Arc<Policy> {
    Arc::new(config.origin_policy().unwrap_or_else(|e| {
        tracing::error!(error = %e, "ignoring the cross-site allow-lists");
        Policy {
            trust_proxy_headers: config.trust_proxy_headers,
            ..Policy::default()
        }
    }))
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What the policy makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Serve it; `cors` is the allowed origin to name in `Access-Control-Allow-Origin`.
    Pass {
        /// The request's `Origin`, when it is in `allowed_origins`.
        cors: Option<HeaderValue>,
    },
    /// A CORS preflight from this allowed origin, answered without the handler.
    Preflight(HeaderValue),
    /// Refused (403), for this reason.
    Refuse(String),
}

impl Policy {
    /// Judges a request by its method, URI and headers (all it reads; the body is not
    /// looked at, so a refusal costs nothing).
    pub fn judge(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Verdict {
        let own = self.own(uri, headers);
        if let Err(why) = self.check_host(own.as_ref()) {
            return Verdict::Refuse(why);
        }
        let cors = self.allowed_origin(headers.get(ORIGIN));
        if method == Method::OPTIONS
            && headers.contains_key(ORIGIN)
            && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        {
            return match cors {
                Some(origin) => Verdict::Preflight(origin),
                None => Verdict::Refuse(
                    "CORS preflight refused: this origin is not in allowed_origins \
                     (--allowed-origins)"
                        .into(),
                ),
            };
        }
        if is_unsafe(method) {
            if let Err(why) = self.check_unsafe(headers, own.as_ref()) {
                return Verdict::Refuse(why);
            }
        }
        Verdict::Pass { cors }
    }
}

/// The middleware (outside authentication, so preflights, which carry no credentials,
/// are answered, and refusals of unauthenticated requests carry CORS headers).
pub async fn check(State(policy): State<Arc<Policy>>, request: Request, next: Next) -> Response {
    let cors = match policy.judge(request.method(), request.uri(), request.headers()) {
        Verdict::Pass { cors } => cors,
        Verdict::Preflight(origin) => return preflight(origin),
        Verdict::Refuse(why) => return refuse(&request, why),
    };
    let mut response = next.run(request).await;
    if let Some(origin) = cors {
        let h = response.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        h.append(VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// The answer to an allowed origin's preflight.
fn preflight(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.insert(VARY, HeaderValue::from_static("origin"));
    response
}

/// A 403 in the route's own error shape; logged (the origin is not a secret).
fn refuse(request: &Request, why: String) -> Response {
    tracing::warn!(method = %request.method(), path = request.uri().path(), reason = %why, "request refused");
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/grpc") {
        let mut response = Response::new(Body::empty());
        let h = response.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from_static("7"));
        // grpc-message is percent-encoded text; ours is printable ASCII apart from quotes
        // of the origin, which HeaderValue accepts.
        if let Ok(v) = HeaderValue::from_str(&why.replace('%', "%25")) {
            h.insert("grpc-message", v);
        }
        return response;
    }
    // Connect and gRPC paths are `/package.Service/Method`.
    let path = request.uri().path().trim_start_matches('/');
    if path
        .split_once('/')
        .is_some_and(|(service, method)| service.contains('.') && !method.contains('/'))
    {
        let body = serde_json::json!({ "code": "permission_denied", "message": why });
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], hosts: &[&str], trust: bool) -> Policy {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Policy::new(&s(origins), &s(hosts), trust).unwrap()
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(method).uri("/ingest");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    fn unsafe_verdict(p: &Policy, headers: &[(&str, &str)]) -> Result<(), String> {
        let r = request("POST", headers);
        match p.judge(r.method(), r.uri(), r.headers()) {
            Verdict::Refuse(why) => Err(why),
            _ => Ok(()),
        }
    }

    #[test]
    fn own_origin_passes_foreign_and_null_do_not() {
        let p = policy(&[], &[], false);
        let host = ("host", "profiles.lan:4040");
        assert!(unsafe_verdict(&p, &[host, ("origin", "http://profiles.lan:4040")]).is_ok());
        assert!(unsafe_verdict(&p, &[host, ("origin", "HTTPS://Profiles.LAN:4040")]).is_ok());
        assert!(unsafe_verdict(&p, &[host, ("origin", "http://evil.example")]).is_err());
        assert!(unsafe_verdict(&p, &[host, ("origin", "http://profiles.lan:4041")]).is_err());
        assert!(unsafe_verdict(&p, &[host, ("origin", "http://profiles.lan")]).is_err());
        assert!(unsafe_verdict(&p, &[host, ("origin", "null")]).is_err());
        assert!(unsafe_verdict(&p, &[host, ("origin", "")]).is_err());
        // No Origin: curl, SDKs and agents.
        assert!(unsafe_verdict(&p, &[host]).is_ok());
        assert!(unsafe_verdict(&p, &[host, ("sec-fetch-site", "same-origin")]).is_ok());
        assert!(unsafe_verdict(&p, &[host, ("sec-fetch-site", "cross-site")]).is_err());
        // Without a port in Host, the origin's default port.
        let bare = ("host", "profiles.lan");
        assert!(unsafe_verdict(&p, &[bare, ("origin", "https://profiles.lan")]).is_ok());
        assert!(unsafe_verdict(&p, &[bare, ("origin", "https://profiles.lan:8443")]).is_err());
    }

    #[test]
    fn proxy_headers_only_when_trusted() {
        let headers = [
            ("host", "127.0.0.1:4040"),
            ("x-forwarded-host", "profiles.example.com"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://profiles.example.com"),
        ];
        assert!(unsafe_verdict(&policy(&[], &[], false), &headers).is_err());
        assert!(unsafe_verdict(&policy(&[], &[], true), &headers).is_ok());
        // The trusted scheme is compared too.
        let mut http = headers;
        http[3] = ("origin", "http://profiles.example.com");
        assert!(unsafe_verdict(&policy(&[], &[], true), &http).is_err());
    }

    #[test]
    fn allowed_origins_are_exact() {
        let p = policy(&["https://grafana.example.com"], &[], false);
        let host = ("host", "10.0.0.5:4040");
        let ok = |o| unsafe_verdict(&p, &[host, ("origin", o)]).is_ok();
        assert!(ok("https://grafana.example.com"));
        assert!(ok("https://grafana.example.com:443"));
        assert!(!ok("http://grafana.example.com"));
        assert!(!ok("https://grafana.example.com.evil.example"));
        assert!(!ok("https://evil.grafana.example.com"));
        for bad in [
            "*",
            "https://*.example.com",
            "https://a.example/",
            "a.example",
            "null",
        ] {
            assert!(
                Policy::new(&[bad.into()], &[], false).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn allowed_hosts_refuse_rebound_names_but_not_addresses() {
        let p = policy(&[], &["profiles.lan"], false);
        let host_ok = |h: &str| {
            let r = request("GET", &[("host", h)]);
            p.judge(r.method(), r.uri(), r.headers()) == Verdict::Pass { cors: None }
        };
        assert!(host_ok("profiles.lan:4040"));
        assert!(host_ok("PROFILES.lan"));
        assert!(host_ok("127.0.0.1:4040"));
        assert!(host_ok("[::1]:4040"));
        assert!(host_ok("localhost:4040"));
        assert!(!host_ok("evil.example:4040"));
        // Rebinding: Origin equals Host, still refused by the host check.
        assert!(unsafe_verdict(
            &p,
            &[
                ("host", "evil.example:4040"),
                ("origin", "http://evil.example:4040")
            ]
        )
        .is_err());
        assert!(Policy::new(&[], &["a.example:80".into()], false).is_err());
    }
}
