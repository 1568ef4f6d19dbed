//! The conversation with the OpenID provider: discovery and JWKS (cached, refreshed when an
//! ID token names a key we do not know), the authorization URL with PKCE S256, state and
//! nonce, and the code exchange with the ID token checked by `openidconnect`.

use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EmptyAdditionalProviderMetadata, IssuerUrl, LogoutProviderMetadata, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadata, RedirectUrl, Scope, SignatureVerificationError,
    TokenResponse,
};
use tokio::sync::Mutex;

use super::config::SsoConfig;
use crate::clock::Millis;

/// Discovery with the RP-initiated logout field (`end_session_endpoint`).
type Metadata = ProviderMetadata<
    LogoutProviderMetadata<EmptyAdditionalProviderMetadata>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A client built from discovery: authorization endpoint known, token endpoint advertised.
type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// Discovery is fetched again after this long even when nothing failed.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown `kid` refreshes the JWKS at most this often, unless it is a new unknown `kid`.
const JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// ID tokens issued longer ago than this (plus skew) are refused.
const ID_TOKEN_MAX_AGE_SECONDS: i64 = 600;

struct Cached {
    metadata: Metadata,
    fetched: Instant,
    jwks_fetched: Instant,
    /// The unknown `kid` that caused the last refresh.
    refreshed_for: Option<String>,
}

/// Why the provider could not be used or its answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the identity provider could not be reached or answered badly: {0}")]
    Unreachable(String),
    #[error("the identity provider refused the authorization code: {0}")]
    CodeRejected(String),
    #[error("the ID token failed the `{check}` check: {message}")]
    TokenInvalid {
        check: &'static str,
        message: String,
    },
}

impl ProviderError {
    fn token(check: &'static str, message: impl Into<String>) -> Self {
        Self::TokenInvalid {
            check,
            message: message.into(),
        }
    }
}

/// A started sign-in: where to send the browser and the secrets to keep server-side.
pub struct Started {
    pub authorize_url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// What a checked ID token says about the person.
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub groups: Vec<String>,
}

/// The provider named in `[sso]`, with its discovery document and keys cached.
pub struct OidcProvider {
    config: SsoConfig,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
    /// Discovery and JWKS downloads (for tests and the operations page).
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer_url", &self.config.issuer_url)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    pub fn new(config: SsoConfig) -> anyhow::Result<Self> {
        // No redirects: the openidconnect docs warn they open SSRF paths.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.http_timeout_seconds))
            .build()?;
        Ok(Self {
            config,
            http,
            cache: Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &SsoConfig {
        &self.config
    }

    /// Discovery and JWKS downloads so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn issuer(&self) -> Result<IssuerUrl, ProviderError> {
        IssuerUrl::new(self.config.issuer_url.trim().to_owned())
            .map_err(|e| ProviderError::Unreachable(format!("issuer URL: {e}")))
    }

    /// The cached discovery document, fetched when missing or old.
    async fn metadata(&self) -> Result<Metadata, ProviderError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && cached.fetched.elapsed() < METADATA_MAX_AGE
        {
            return Ok(cached.metadata.clone());
        }
        let metadata = Metadata::discover_async(self.issuer()?, &self.http)
            .await
            .map_err(|e| ProviderError::Unreachable(format!("discovery: {e}")))?;
        self.fetches
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        *cache = Some(Cached {
            metadata: metadata.clone(),
            fetched: now,
            jwks_fetched: now,
            refreshed_for: None,
        });
        Ok(metadata)
    }

    /// Fetches the JWKS again because a token named `kid`, unless that was done very recently
    /// for the same key. Returns whether new keys were loaded.
    async fn refresh_jwks(&self, kid: Option<String>) -> Result<bool, ProviderError> {
        let mut cache = self.cache.lock().await;
        let Some(cached) = cache.as_mut() else {
            return Ok(false);
        };
        let same_kid = cached.refreshed_for == kid;
        if same_kid && cached.jwks_fetched.elapsed() < JWKS_REFRESH_MIN_INTERVAL {
            return Ok(false);
        }
        let jwks = CoreJsonWebKeySet::fetch_async(cached.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| ProviderError::Unreachable(format!("JWKS: {e}")))?;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        cached.metadata = cached.metadata.clone().set_jwks(jwks);
        cached.jwks_fetched = Instant::now();
        cached.refreshed_for = kid;
        Ok(true)
    }

    fn client_for(&self, metadata: Metadata, redirect_uri: &str) -> Result<Client, ProviderError> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| ProviderError::Unreachable(format!("redirect URL: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider's end-session endpoint, if it advertises one.
    pub async fn end_session_endpoint(&self) -> Option<String> {
        let metadata = self.metadata().await.ok()?;
        metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.url().to_string())
    }

    /// Builds the authorization request: code flow, PKCE S256, fresh state and nonce.
    pub async fn start(&self, redirect_uri: &str) -> Result<Started, ProviderError> {
        let metadata = self.metadata().await?;
        let client = self.client_for(metadata, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.config.scopes {
            if scope != "openid" && !scope.trim().is_empty() {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Started {
            authorize_url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code and checks the ID token (signature, iss, aud, azp, exp, iat,
    /// nonce), refreshing the keys once if the token was signed with one we do not know.
    pub async fn finish(
        &self,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: Millis,
    ) -> Result<VerifiedIdentity, ProviderError> {
        let metadata = self.metadata().await?;
        let client = self.client_for(metadata, redirect_uri)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| ProviderError::Unreachable(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| ProviderError::CodeRejected(code_error(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| ProviderError::token("present", "the token response has no ID token"))?
            .clone();
        let raw = id_token.to_string();
        let nonce = Nonce::new(nonce.to_owned());
        let checked = match self.verify(&client, &id_token, &nonce, now) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                if self.refresh_jwks(header_kid(&raw)).await? {
                    let metadata = self.metadata().await?;
                    let client = self.client_for(metadata, redirect_uri)?;
                    self.verify(&client, &id_token, &nonce, now)
                } else {
                    Err(ClaimsVerificationError::SignatureVerification(
                        SignatureVerificationError::NoMatchingKey,
                    ))
                }
            }
            other => other,
        };
        let claims = checked.map_err(|e| ProviderError::token(check_name(&e), e.to_string()))?;

        // The crate leaves `azp` to the client (OIDC Core 3.1.3.7, steps 4 and 5).
        let client_id = &self.config.client_id;
        match claims.authorized_party() {
            Some(azp) if azp.as_str() != client_id => {
                return Err(ProviderError::token(
                    "azp",
                    "authorized party is another client",
                ));
            }
            None if claims.audiences().len() > 1 => {
                return Err(ProviderError::token("azp", "several audiences and no azp"));
            }
            _ => {}
        }
        Ok(VerifiedIdentity {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string().to_lowercase()),
            email_verified: claims.email_verified() == Some(true),
            amr: claims
                .auth_method_refs()
                .map(|v| v.iter().map(|m| m.to_string()).collect())
                .unwrap_or_default(),
            acr: claims.auth_context_ref().map(|a| a.to_string()),
            groups: payload_groups(&raw),
        })
    }

    fn verify<'t>(
        &self,
        client: &Client,
        id_token: &'t openidconnect::core::CoreIdToken,
        nonce: &Nonce,
        now: Millis,
    ) -> Result<&'t openidconnect::core::CoreIdTokenClaims, ClaimsVerificationError> {
        let skew = self.config.clock_skew_seconds * 1000;
        // `exp` is compared with our clock moved back by the allowed skew; `iat` must be
        // neither in the future nor older than the nonce may live.
        let verifier = client
            .id_token_verifier()
            .set_time_fn(move || to_datetime(now - skew))
            .set_issue_time_verifier_fn(move |iat| {
                let iat_ms = iat.timestamp_millis();
                if iat_ms > now + skew {
                    Err(format!("issued in the future ({iat})"))
                } else if iat_ms < now - skew - ID_TOKEN_MAX_AGE_SECONDS * 1000 {
                    Err(format!("issued too long ago ({iat})"))
                } else {
                    Ok(())
                }
            });
        id_token.claims(&verifier, nonce)
    }
}

fn to_datetime(ms: Millis) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A short, stable name for the failed check (audited, asserted by tests).
fn check_name(error: &ClaimsVerificationError) -> &'static str {
    match error {
        ClaimsVerificationError::Expired(m) if m.starts_with("issued") => "iat",
        ClaimsVerificationError::Expired(_) => "exp",
        ClaimsVerificationError::InvalidAudience(_) => "aud",
        ClaimsVerificationError::InvalidIssuer(_) => "iss",
        ClaimsVerificationError::InvalidNonce(_) => "nonce",
        ClaimsVerificationError::SignatureVerification(_) => "signature",
        ClaimsVerificationError::InvalidSubject(_) => "sub",
        _ => "other",
    }
}

/// The token endpoint's error without response bodies (they may echo the code).
fn code_error<E: std::error::Error>(error: &E) -> String {
    error.to_string().chars().take(200).collect()
}

fn decode_segment(raw: &str, index: usize) -> Option<serde_json::Value> {
    let segment = raw.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `kid` of a JWT's header.
fn header_kid(raw: &str) -> Option<String> {
    decode_segment(raw, 0)?
        .get("kid")?
        .as_str()
        .map(str::to_owned)
}

/// The `groups` claim of an ID token whose signature has already been checked.
fn payload_groups(raw: &str) -> Vec<String> {
    decode_segment(raw, 1)
        .and_then(|p| p.get("groups").cloned())
        .and_then(|g| serde_json::from_value::<Vec<String>>(g).ok())
        .unwrap_or_default()
}
