-- OpenID Connect single sign-on.
--
-- oidc_flows: one row per sign-in started at the identity provider. It is bound to the
-- visitor's pre-session cookie (only its SHA-256 is stored) and found by the SHA-256 of the
-- `state` sent to the provider. The nonce and PKCE verifier are sealed with the keyring. After
-- the callback has checked the ID token, the row holds the account and how MFA was asserted
-- until the same-site finishing step turns it into a session; every row is single-use.
CREATE TABLE oidc_flows (
    id            TEXT PRIMARY KEY,
    binding_hash  TEXT NOT NULL,
    state_hash    TEXT NOT NULL UNIQUE,
    nonce_enc     TEXT NOT NULL,
    verifier_enc  TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    verified_at   BIGINT,
    staff_id      TEXT REFERENCES staff(id),
    idp_mfa       INTEGER NOT NULL DEFAULT 0,
    amr           TEXT
);
CREATE INDEX oidc_flows_binding ON oidc_flows (binding_hash);
CREATE INDEX oidc_flows_expires ON oidc_flows (expires_at);

-- A staff account linked to a subject at an issuer; later logins match on this pair.
CREATE TABLE oidc_links (
    issuer         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    staff_id       TEXT NOT NULL REFERENCES staff(id),
    linked_at      BIGINT NOT NULL,
    last_login_at  BIGINT,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX oidc_links_staff ON oidc_links (staff_id);

-- How a session got its second factor (`idp_amr` or `local_totp`) and how it began
-- (`password` or `sso`); the account keeps the method of its last full login.
ALTER TABLE sessions ADD COLUMN auth_method TEXT;
ALTER TABLE sessions ADD COLUMN mfa_method TEXT;
ALTER TABLE staff ADD COLUMN last_mfa_method TEXT;
