// The reference OpenID Provider of the FAPI 2.0 interop test: panva's `oidc-provider`
// (certified for FAPI 2.0 Security Profile and Message Signing) configured for both
// profiles, so that tests/js/fapi.mjs is first shown to pass against certified software
// before it runs against the broker (a failure of ours is then never a test bug).
//
//   OP_PORT=18090 REDIRECT_URI=http://127.0.0.1:18091/callback \
//   MS_CLIENT_ID=fapi-ms MS_CLIENT_KEY=ms.pem MS_CLIENT_KEY_ID=ms-1 \
//   SP_CLIENT_ID=fapi-sp SP_CLIENT_KEY=sp.pem SP_CLIENT_KEY_ID=sp-1 node tests/js/fapi-op.mjs
//
// Two confidential clients, both `private_key_jwt` only (their public keys are derived from
// the PKCS#8 PEM files named; the algorithm follows the key: PS256 for RSA, ES256 for P-256,
// EdDSA for Ed25519), PAR required, PKCE S256, DPoP-bound tokens with server nonces:
// * MS_CLIENT_ID: FAPI 2.0 Message Signing: signed request objects required, JARM, signed
//   introspection and signed UserInfo answers (SIGNED_ALG, default PS256);
// * SP_CLIENT_ID: FAPI 2.0 Security Profile only: plain query responses and JSON answers.
// Login page: `#username`, `#password`, `#submit` (accounts in ACCOUNTS, password "demo");
// consent is given at once. It prints `fapi-op listening on <issuer>` when it accepts
// connections.

import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import { escapeHtml, needFor } from './lib/common.mjs';

const PREFIX = 'fapi-op';
const need = needFor(PREFIX);

const PORT = Number(need('OP_PORT'));
const REDIRECT_URI = need('REDIRECT_URI');
const SIGNED_ALG = process.env.SIGNED_ALG || 'PS256';
const ISSUER = `http://127.0.0.1:${PORT}`;
// FAPI 2.0 Security Profile: PS256, ES256 or EdDSA (Ed25519) only.
const FAPI_ALGS = ['PS256', 'ES256', 'EdDSA'];

const ACCOUNTS = {
  an: { sub: 'op-an-1', password: 'demo', claims: { name: 'Nguyễn Văn An' } },
  lan: { sub: 'op-lan-2', password: 'demo', claims: { name: 'Trần Thị Lan' } },
};
const BY_SUB = Object.fromEntries(Object.values(ACCOUNTS).map((a) => [a.sub, a]));

/** The FAPI algorithm a key is used with. */
function algFor(jwk) {
  if (jwk.kty === 'RSA') return 'PS256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  console.error(`${PREFIX}: unsupported client key type ${jwk.kty}/${jwk.crv}`);
  process.exit(2);
}

/** The public JWK of the PKCS#8 PEM private key in `file`. */
function publicJwk(file, kid) {
  let pem;
  try {
    pem = fs.readFileSync(file);
  } catch (e) {
    console.error(`${PREFIX}: cannot read ${file}: ${e.message}`);
    process.exit(2);
  }
  const jwk = crypto.createPublicKey(crypto.createPrivateKey(pem)).export({ format: 'jwk' });
  return { ...jwk, kid, alg: algFor(jwk), use: 'sig' };
}

function clientBase(prefix) {
  const id = need(`${prefix}_CLIENT_ID`);
  const jwk = publicJwk(need(`${prefix}_CLIENT_KEY`), process.env[`${prefix}_CLIENT_KEY_ID`] || `${id}-key`);
  return {
    client_id: id,
    jwks: { keys: [jwk] },
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: jwk.alg,
    redirect_uris: [REDIRECT_URI],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    require_pushed_authorization_requests: true,
    dpop_bound_access_tokens: true,
  };
}

const clients = [
  {
    ...clientBase('MS'),
    id_token_signed_response_alg: SIGNED_ALG,
    require_signed_request_object: true,
    authorization_signed_response_alg: SIGNED_ALG,
    introspection_signed_response_alg: SIGNED_ALG,
    userinfo_signed_response_alg: SIGNED_ALG,
  },
  {
    ...clientBase('SP'),
    id_token_signed_response_alg: 'ES256',
    // oidc-provider defaults these to RS256, outside FAPI; used only if the client asks.
    authorization_signed_response_alg: 'ES256',
    introspection_signed_response_alg: 'ES256',
  },
].map((c) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)));

// Fresh signing keys at each start: one per FAPI algorithm, each with its own kid.
function signingKey(kid, alg, type, options) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}
const jwks = {
  keys: [
    signingKey('op-ps256-1', 'PS256', 'rsa', { modulusLength: 2048 }),
    signingKey('op-es256-1', 'ES256', 'ec', { namedCurve: 'P-256' }),
    signingKey('op-eddsa-1', 'EdDSA', 'ed25519', {}),
  ],
};

const provider = new Provider(ISSUER, {
  clients,
  jwks,
  clientAuthMethods: ['private_key_jwt'],
  enabledJWA: {
    clientAuthSigningAlgValues: FAPI_ALGS,
    idTokenSigningAlgValues: FAPI_ALGS,
    requestObjectSigningAlgValues: FAPI_ALGS,
    userinfoSigningAlgValues: FAPI_ALGS,
    introspectionSigningAlgValues: FAPI_ALGS,
    authorizationSigningAlgValues: FAPI_ALGS,
    dPoPSigningAlgValues: FAPI_ALGS,
  },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], profile: ['name'] },
  ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 300, IdToken: 300, AuthorizationCode: 60, RefreshToken: 3600 },
  pkce: { required: () => true },
  // Refresh tokens for every client registered for the grant (no offline_access dance).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: {
    fapi: { enabled: true, profile: '2.0' },
    dPoP: { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true },
    pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: true },
    requestObjects: { enabled: true },
    jwtResponseModes: { enabled: true },
    // Each client may introspect only the tokens issued to it.
    introspection: { enabled: true, allowedPolicy: async (ctx, caller, token) => token.clientId === caller.clientId },
    jwtIntrospection: { enabled: true },
    jwtUserinfo: { enabled: true },
    revocation: { enabled: true },
    devInteractions: { enabled: false },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const account = BY_SUB[sub];
    if (!account) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...account.claims }) };
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!doctype html><html><body><h1>Error</h1><pre id="error">${escapeHtml(JSON.stringify(out))}</pre></body></html>`;
  },
});

function page(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`);
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 16384) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
    req.on('error', reject);
  });
}

function loginPage(res, uid, problem) {
  page(
    res,
    200,
    'Sign in to the reference provider',
    `${problem ? `<p id="problem">${escapeHtml(problem)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Username <input id="username" name="username" required></label>
<label>Password <input id="password" name="password" type="password" required></label>
<button id="submit" type="submit">Sign in</button>
</form>`,
  );
}

async function interaction(req, res, url) {
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    page(res, 400, 'Error', '<p id="error">interaction mismatch</p>');
    return;
  }
  if (req.method === 'GET' && action === undefined) {
    if (details.prompt.name === 'login') {
      loginPage(res, uid);
      return;
    }
    // Consent is given for the test's relying parties.
    const { prompt, params, session } = details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const account = ACCOUNTS[form.username];
    if (!account || account.password !== form.password) {
      loginPage(res, uid, 'Wrong username or password.');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
    return;
  }
  page(res, 404, 'Not found', '<p id="error">no such page</p>');
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const url = new URL(req.url, ISSUER);
  if (url.pathname.startsWith('/interaction/')) {
    interaction(req, res, url).catch((e) => {
      console.error(`${PREFIX}: interaction failed: ${e?.name}: ${e?.message}`);
      if (!res.headersSent) page(res, 400, 'Error', `<p id="error">${escapeHtml(e?.message ?? e)}</p>`);
      else res.end();
    });
    return;
  }
  callback(req, res);
});

// What the provider refused, for the test's report (error codes and descriptions only).
for (const event of [
  'server_error',
  'authorization.error',
  'pushed_authorization_request.error',
  'grant.error',
  'userinfo.error',
  'introspection.error',
]) {
  provider.on(event, (ctx, err) =>
    console.error(
      `${PREFIX}: ${event}: ${err?.error ?? err?.name}: ${err?.error_description ?? err?.message}${err?.error_detail ? ` (${err.error_detail})` : ''}${err?.cause ? ` (cause: ${err.cause?.message ?? err.cause})` : ''}`,
    ),
  );
}

server.listen(PORT, '127.0.0.1', () => console.log(`${PREFIX} listening on ${ISSUER}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
