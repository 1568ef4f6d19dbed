// A real OpenID provider (npm `oidc-provider`) for trustplane's SSO tests, on loopback only.
//
//   node tests/oidc/provider.mjs            listens on a free 127.0.0.1 port, prints
//                                           `listening <port>` on stdout
//
// Test-only admin endpoints (loopback, no auth — never run this anywhere else):
//   POST /__test/setup   {"redirect_uris": [...], "post_logout_redirect_uris": [...]}
//                        registers the clients `trustplane` and `other-client` and (re)builds
//                        the provider with a fresh signing key: calling it again rotates the
//                        JWKS, as a provider restart with new keys would.
//   POST /__test/tamper  {"aud": "...", "nonce": "...", "exp_offset": -600}
//                        the next token response's ID token gets these claims, re-signed
//                        with the provider's real key, so only the claim check can refuse it.
//   GET  /__test/stats   {"jwks": n, "discovery": n, "token": n, "kid": "..."}
//
// Users (password `provider-password` for all), chosen on the provider's own login page:
//   mfa         mfa@example.com, verified, amr ["pwd","otp"]
//   pwd         pwd@example.com, verified, amr ["pwd"]
//   unverified  unverified@example.com, NOT verified, amr ["pwd","otp"]
//   unknown     nobody@example.com, verified, amr ["pwd","otp"] (no trustplane account)
//   outsider    outsider@elsewhere.test, verified, amr ["pwd","otp"]
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import * as jose from 'jose';

export const PASSWORD = 'provider-password';
export const CLIENT_SECRET = 'test-client-secret-0123456789abcdef';

const USERS = {
  mfa: { email: 'mfa@example.com', email_verified: true, amr: ['pwd', 'otp'], name: 'Mia Factor' },
  pwd: { email: 'pwd@example.com', email_verified: true, amr: ['pwd'], name: 'Pat Word' },
  unverified: { email: 'unverified@example.com', email_verified: false, amr: ['pwd', 'otp'], name: 'Una Verified' },
  unknown: { email: 'nobody@example.com', email_verified: true, amr: ['pwd', 'otp'], name: 'No Body' },
  outsider: { email: 'outsider@elsewhere.test', email_verified: true, amr: ['pwd', 'otp'], name: 'Out Sider' },
};

const stats = { jwks: 0, discovery: 0, token: 0, kid: null };
let tamper = null;
let current = null; // { provider, privateKey, kid }
let issuer = null;

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 65536) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function loginPage(uid, error) {
  const options = Object.keys(USERS)
    .map((id) => `<option value="${id}">${escapeHtml(USERS[id].email)}</option>`)
    .join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body><main><h1>Test identity provider</h1>
${error ? `<p role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label for="login">Account</label> <select id="login" name="login">${options}</select>
<label for="password">Password</label> <input id="password" type="password" name="password" autocomplete="current-password">
<button type="submit">Sign in</button>
</form></main></body></html>`;
}

async function build({ redirect_uris, post_logout_redirect_uris }) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = crypto.randomBytes(8).toString('hex');
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
  const configuration = {
    clients: [
      {
        client_id: 'trustplane',
        client_secret: CLIENT_SECRET,
        redirect_uris,
        post_logout_redirect_uris,
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'other-client',
        client_secret: 'other-client-secret-0123456789abcdef',
        redirect_uris,
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    claims: { openid: ['sub', 'amr'], email: ['email', 'email_verified'], profile: ['name'] },
    // Claims asked for with scopes go into the ID token (as Okta, Entra ID and Google do).
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const user = USERS[id];
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: user.email, email_verified: user.email_verified, name: user.name };
        },
      };
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><html lang="en"><head><title>IdP error</title></head><body><h1>Error</h1><pre>${escapeHtml(JSON.stringify(out))}</pre></body></html>`;
    },
  };
  const provider = new Provider(issuer, configuration);
  provider.use(async (ctx, next) => {
    if (ctx.path === '/jwks') stats.jwks += 1;
    if (ctx.path === '/.well-known/openid-configuration') stats.discovery += 1;
    await next();
    if (ctx.path === '/token' && ctx.method === 'POST') {
      stats.token += 1;
      if (tamper && ctx.status === 200 && ctx.body && ctx.body.id_token) {
        const changes = tamper;
        tamper = null;
        const claims = jose.decodeJwt(ctx.body.id_token);
        if (changes.aud !== undefined) claims.aud = changes.aud;
        if (changes.nonce !== undefined) claims.nonce = changes.nonce;
        if (changes.exp_offset !== undefined) {
          const now = Math.floor(Date.now() / 1000);
          claims.exp = now + changes.exp_offset;
          claims.iat = Math.min(claims.iat, claims.exp - 60);
        }
        const key = await jose.importJWK(jwk, 'RS256');
        ctx.body = {
          ...ctx.body,
          id_token: await new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(key),
        };
      }
    }
  });
  stats.kid = kid;
  return { provider, kid };
}

async function interaction(req, res, url) {
  const { provider } = current;
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  if (prompt.name === 'consent') {
    // First-party client: consent is granted without a page.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === 'GET') {
    send(res, 200, 'text/html; charset=utf-8', loginPage(uid));
    return;
  }
  if (req.method === 'POST' && url.pathname.endsWith('/login')) {
    const form = new URLSearchParams(await readBody(req));
    const id = form.get('login');
    const user = USERS[id];
    if (!user || form.get('password') !== PASSWORD) {
      send(res, 401, 'text/html; charset=utf-8', loginPage(uid, 'Wrong account or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: id, amr: user.amr } }, { mergeWithLastSubmission: false });
    return;
  }
  send(res, 405, 'text/plain', 'method not allowed');
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/__test/setup' && req.method === 'POST') {
      current = await build(JSON.parse(await readBody(req)));
      send(res, 200, 'application/json', JSON.stringify({ kid: current.kid }));
      return;
    }
    if (url.pathname === '/__test/tamper' && req.method === 'POST') {
      tamper = JSON.parse(await readBody(req));
      send(res, 200, 'application/json', '{}');
      return;
    }
    if (url.pathname === '/__test/stats') {
      send(res, 200, 'application/json', JSON.stringify(stats));
      return;
    }
    if (!current) {
      send(res, 503, 'text/plain', 'call /__test/setup first');
      return;
    }
    if (url.pathname.startsWith('/interaction/')) {
      await interaction(req, res, url);
      return;
    }
    current.provider.callback()(req, res);
  } catch (err) {
    send(res, 500, 'text/plain', String(err && err.message));
  }
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  // ISSUER_HOST=localhost puts the provider on another site than a portal on 127.0.0.1.
  issuer = `http://${process.env.ISSUER_HOST || '127.0.0.1'}:${port}`;
  process.stdout.write(`listening ${port}\n`);
});

// Ends with the test that started it.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
