//! HTTP plumbing shared by every route: the per-request context (request id, client IP,
//! whether the client reached us over TLS), cookies, security headers, metrics, and a form
//! extractor whose failures become readable pages.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header, request::Parts};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::app::AppState;
use crate::audit::RequestMeta;
use crate::authn::session::Origin;
use crate::error::AppError;
use crate::metrics::{RequestLabels, RouteLabels};

/// Facts about the current request, set by [`context_layer`] before anything else runs.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    pub client_ip: Option<String>,
    /// The client reached us over TLS (ours, or a declared proxy's).
    pub secure: bool,
    pub user_agent: Option<String>,
}

impl RequestCtx {
    pub fn meta(&self) -> RequestMeta {
        RequestMeta {
            client_ip: self.client_ip.clone(),
            request_id: Some(self.request_id.clone()),
        }
    }

    pub fn origin(&self) -> Origin {
        Origin {
            client_ip: self.client_ip.clone(),
            user_agent: self.user_agent.clone(),
        }
    }

    /// The cookie name for `base`: `__Host-` prefixed whenever the client uses TLS.
    pub fn cookie_name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// A `Set-Cookie` value for a host-only, HttpOnly cookie.
    pub fn set_cookie(
        &self,
        base: &str,
        value: &str,
        same_site: &str,
        max_age: Option<i64>,
    ) -> String {
        let mut cookie = format!(
            "{}={value}; Path=/; HttpOnly; SameSite={same_site}",
            self.cookie_name(base)
        );
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        cookie
    }

    /// A `Set-Cookie` value that deletes the cookie.
    pub fn clear_cookie(&self, base: &str) -> String {
        self.set_cookie(base, "", "Lax", Some(0))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestCtx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestCtx>()
            .cloned()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request context missing")))
    }
}

/// Reads cookie `name` from the request headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

fn valid_request_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The client address behind `hops` trusted proxies. Each proxy appends the address it saw
/// to `X-Forwarded-For` (some as a new header line, some to the existing line), so all lines
/// are read in order and the entry `hops` places from the right is taken; everything left of
/// it may have been written by the client. With fewer entries than hops, the leftmost one
/// (written by a trusted proxy) is used. An entry that is not an address yields `None`.
pub fn forwarded_client(headers: &HeaderMap, hops: usize) -> Option<String> {
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let index = entries.len().saturating_sub(hops.max(1));
    let entry = entries.get(index)?;
    parse_forwarded_address(entry).map(|ip| ip.to_string())
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, `1.2.3.4:5678` or `[2001:db8::1]:80`.
fn parse_forwarded_address(entry: &str) -> Option<std::net::IpAddr> {
    entry
        .parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The network a client address belongs to, for limits keyed per client: the IPv4 address
/// itself (/32), or the IPv6 /64 (one subscriber's allocation, so rotating addresses inside it
/// does not escape a limit). Text that is not an address is returned unchanged.
pub fn client_network_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Ok(std::net::IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
        Err(_) => ip.to_owned(),
    }
}

/// Sets up [`RequestCtx`], adds security headers, records metrics and echoes the request id.
pub async fn context_layer(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let behind_proxy = state.config.behind_proxy;
    let headers = req.headers();
    let forwarded_proto_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let secure = state.tls || (behind_proxy && forwarded_proto_https);
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let client_ip = if behind_proxy {
        forwarded_client(headers, state.config.trusted_proxy_hops).or(peer)
    } else {
        peer
    };
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| behind_proxy && valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    // Monitoring counters: /v1 answers per key (or per network when refused), demo answers
    // per network. The key extractor fills the slot in.
    let path = req.uri().path();
    let monitored_demo = path.starts_with("/demo/");
    let caller_slot = ((monitored_demo || path.starts_with("/v1/")) && state.signals.counting())
        .then(crate::alerts::signals::CallerSlot::default);
    if let Some(slot) = &caller_slot {
        req.extensions_mut().insert(slot.clone());
    }
    let signal_ip = client_ip.clone();
    req.extensions_mut().insert(RequestCtx {
        request_id: request_id.clone(),
        client_ip,
        secure,
        user_agent,
    });

    let span = tracing::info_span!("request", %method, %route, request_id = %request_id);
    let mut response = next.run(req).instrument(span.clone()).await;

    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(slot) = caller_slot {
        let bytes = axum::body::HttpBody::size_hint(response.body())
            .exact()
            .and_then(|b| i64::try_from(b).ok())
            .unwrap_or(0);
        state.signals.record_api(
            state.now(),
            signal_ip.as_deref(),
            slot.get(),
            monitored_demo,
            status,
            bytes,
        );
    }
    state.metrics.answered.inc();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(elapsed);
    // The route template, never the raw URI: links may carry one-time tokens.
    tracing::info!(parent: &span, status, elapsed_ms = elapsed * 1000.0, "request");

    let h = response.headers_mut();
    let mut set = |name: &'static str, value: &'static str| {
        if !h.contains_key(name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'",
    );
    set("x-content-type-options", "nosniff");
    set("referrer-policy", "no-referrer");
    set("x-frame-options", "DENY");
    set("cross-origin-opener-policy", "same-origin");
    set("cross-origin-resource-policy", "same-origin");
    set(
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    set("cache-control", "no-store");
    if secure {
        set(
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        );
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", value);
    }
    response
}

/// Like `axum::Form`, but a body that cannot be parsed becomes a readable 400 page.
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(Form(value)),
            Err(rejection) => {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Err(AppError::TooLarge)
                } else {
                    Err(AppError::BadRequest(
                        "The form could not be read: a field is missing or malformed. Nothing was changed."
                            .into(),
                    ))
                }
            }
        }
    }
}

/// A form's `datetime-local` value (`2027-01-15T09:30`), read as UTC because the forms say
/// so; an empty field means `default`.
pub fn datetime_local_utc(
    raw: &str,
    default: crate::clock::Millis,
    what: &str,
) -> Result<crate::clock::Millis, AppError> {
    if raw.trim().is_empty() {
        return Ok(default);
    }
    chrono::NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%dT%H:%M")
        .map(|t| t.and_utc().timestamp_millis())
        .map_err(|_| AppError::BadRequest(format!("The {what} `{raw}` is not a date and time.")))
}

/// Truncates user input to `max` characters for safe display in messages.
pub fn clip(input: &str, max: usize) -> String {
    input.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    #[test]
    fn a_client_line_before_the_proxy_line_is_ignored() {
        // HAProxy `option forwardfor` adds its own line after the client's forged one.
        let headers = xff(&["127.0.0.1", "203.0.113.7"]);
        assert_eq!(
            forwarded_client(&headers, 1).as_deref(),
            Some("203.0.113.7")
        );
    }

    #[test]
    fn entries_are_counted_from_the_right_across_lines_and_commas() {
        let headers = xff(&["10.9.9.9, 198.51.100.1", "203.0.113.7, 192.0.2.10"]);
        assert_eq!(forwarded_client(&headers, 1).as_deref(), Some("192.0.2.10"));
        assert_eq!(
            forwarded_client(&headers, 2).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            forwarded_client(&headers, 3).as_deref(),
            Some("198.51.100.1")
        );
    }

    #[test]
    fn fewer_entries_than_hops_take_the_leftmost_and_garbage_is_refused() {
        assert_eq!(
            forwarded_client(&xff(&["192.0.2.10"]), 2).as_deref(),
            Some("192.0.2.10")
        );
        assert_eq!(forwarded_client(&xff(&["127.0.0.1, nonsense"]), 1), None);
        assert_eq!(forwarded_client(&HeaderMap::new(), 1), None);
    }

    #[test]
    fn ports_and_mapped_addresses_are_normalised() {
        assert_eq!(
            forwarded_client(&xff(&["[2001:db8::1]:443"]), 1).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            forwarded_client(&xff(&["::ffff:192.0.2.1"]), 1).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            forwarded_client(&xff(&["192.0.2.1:8080"]), 1).as_deref(),
            Some("192.0.2.1")
        );
    }

    #[test]
    fn ipv6_clients_share_a_key_per_slash_64() {
        assert_eq!(
            client_network_key("2001:db8:1:2:aaaa::1"),
            client_network_key("2001:db8:1:2:bbbb::9")
        );
        assert_ne!(
            client_network_key("2001:db8:1:2::1"),
            client_network_key("2001:db8:1:3::1")
        );
        assert_eq!(client_network_key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(client_network_key("192.0.2.1"), "192.0.2.1");
        assert_eq!(client_network_key("::ffff:192.0.2.1"), "192.0.2.1");
    }
}
