//! The public information pages: `security.txt` (RFC 9116) at `/.well-known/security.txt`
//! and `/security.txt`, the disclosure policy at `/security` (built in, or the operator's
//! Markdown file), and the opt-in acknowledgements page.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

use crate::app::AppState;
use crate::clock::{DAY, format_ms};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute};
use crate::web::RequestCtx;

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get(
            "/.well-known/security.txt",
            Access::Public,
            security_txt_get,
        ),
        PortalRoute::get("/security.txt", Access::Public, security_txt_get),
        PortalRoute::get("/security", Access::Public, policy_get),
        PortalRoute::get("/security/acknowledgements", Access::Public, thanks_get),
    ]
}

/// Where links in `security.txt` and emails point: `public_url`, else the listen address.
pub fn base_url(state: &AppState) -> String {
    match state.config.listen_addr() {
        Ok(addr) => state.config.base_url(addr),
        Err(_) => state.config.public_url.trim_end_matches('/').to_owned(),
    }
}

/// The `security.txt` body at `now`: `Expires` is regenerated on every request, so it is
/// always `security_txt_expires_days` ahead (under a year, as RFC 9116 recommends). A signed
/// file keeps `Expires` on the start of the day, so one signature serves the whole day.
pub fn security_txt(state: &AppState, now: crate::clock::Millis) -> String {
    let config = &state.config;
    let now = if state.security_txt_signer.is_some() {
        now - now.rem_euclid(DAY)
    } else {
        now
    };
    let base = base_url(state);
    let mut lines = vec![
        "# Report security vulnerabilities through the form below; no account needed.".to_owned(),
        format!("Contact: {base}/security/report"),
    ];
    if !config.disclosure_contact_email.trim().is_empty() {
        lines.push(format!(
            "Contact: mailto:{}",
            config.disclosure_contact_email.trim()
        ));
    }
    let expires = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(
        now + config.security_txt_expires_days * DAY,
    )
    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    .unwrap_or_default();
    lines.push(format!("Expires: {expires}"));
    if !config.security_txt_encryption.trim().is_empty() {
        lines.push(format!(
            "Encryption: {}",
            config.security_txt_encryption.trim()
        ));
    }
    lines.push(format!("Acknowledgments: {base}/security/acknowledgements"));
    lines.push(format!(
        "Preferred-Languages: {}",
        config.security_txt_languages.trim()
    ));
    lines.push(format!("Canonical: {base}/.well-known/security.txt"));
    lines.push(format!("Policy: {base}/security"));
    if !config.security_txt_hiring.trim().is_empty() {
        lines.push(format!("Hiring: {}", config.security_txt_hiring.trim()));
    }
    let mut body = lines.join("\n");
    body.push('\n');
    body
}

async fn security_txt_get(State(state): State<AppState>, ctx: RequestCtx) -> AppResult<Response> {
    if let Err(wait) = state.trust_limiter.check_ip(ctx.client_ip.as_deref()) {
        return super::public::pages_limited(wait);
    }
    let body = security_txt(&state, state.now());
    let body = match &state.security_txt_signer {
        Some(signer) => signer.sign(&body).map_err(AppError::Internal)?,
        None => body,
    };
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// One block of the policy: a heading, a paragraph or a list.
enum Block {
    Heading(String),
    Paragraph(String),
    List(Vec<String>),
}

/// A small, safe Markdown subset for the operator's policy file: `#` headings, `-` lists
/// and paragraphs separated by blank lines. Everything is shown as text (escaped), so the
/// file cannot bring scripts or remote content into the page.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    for chunk in markdown.replace("\r\n", "\n").split("\n\n") {
        let lines: Vec<&str> = chunk
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            continue;
        }
        if lines
            .iter()
            .all(|l| l.starts_with("- ") || l.starts_with("* "))
        {
            out.push(Block::List(
                lines.iter().map(|l| l[2..].trim().to_owned()).collect(),
            ));
            continue;
        }
        for (i, line) in lines.iter().enumerate() {
            if let Some(heading) = line.strip_prefix('#') {
                out.push(Block::Heading(
                    heading.trim_start_matches('#').trim().to_owned(),
                ));
                if i + 1 < lines.len() {
                    out.push(Block::Paragraph(lines[i + 1..].join(" ")));
                }
                break;
            }
            if i == 0 {
                out.push(Block::Paragraph(lines.join(" ")));
                break;
            }
        }
    }
    out
}

#[derive(Template)]
#[template(path = "disclosures/policy.html")]
struct PolicyPage {
    custom: Option<Vec<Block>>,
    contact_email: String,
}

async fn policy_get(State(state): State<AppState>, ctx: RequestCtx) -> AppResult<Response> {
    if let Err(wait) = state.trust_limiter.check_ip(ctx.client_ip.as_deref()) {
        return super::public::pages_limited(wait);
    }
    let path = state.config.disclosure_policy_file.trim();
    let custom = if path.is_empty() {
        None
    } else {
        let text = tokio::fs::read_to_string(path).await.map_err(|e| {
            AppError::Internal(anyhow::anyhow!("disclosure_policy_file {path}: {e}"))
        })?;
        Some(blocks(&text))
    };
    Ok(Html(
        PolicyPage {
            custom,
            contact_email: state.config.disclosure_contact_email.trim().to_owned(),
        }
        .render()?,
    )
    .into_response())
}

#[derive(Template)]
#[template(path = "disclosures/thanks.html")]
struct ThanksPage {
    names: Vec<(String, String)>,
}

async fn thanks_get(State(state): State<AppState>, ctx: RequestCtx) -> AppResult<Response> {
    if let Err(wait) = state.trust_limiter.check_ip(ctx.client_ip.as_deref()) {
        return super::public::pages_limited(wait);
    }
    let mut conn = state.db.pool.acquire().await?;
    let names = super::store::credited(&mut conn)
        .await?
        .into_iter()
        .map(|(name, at)| (name, format_ms(at).chars().take(10).collect()))
        .collect();
    Ok(Html(ThanksPage { names }.render()?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_subset_makes_headings_lists_and_paragraphs() {
        let b = blocks("# Scope\nAll of *.example.com\n\n- one\n- two\n\nplain <b>text</b>");
        assert!(matches!(&b[0], Block::Heading(h) if h == "Scope"));
        assert!(matches!(&b[1], Block::Paragraph(p) if p == "All of *.example.com"));
        assert!(matches!(&b[2], Block::List(items) if items.len() == 2));
        assert!(matches!(&b[3], Block::Paragraph(p) if p.contains("<b>")));
    }
}
