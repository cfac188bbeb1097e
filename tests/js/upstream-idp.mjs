// An upstream identity provider for the broker's `oidc` connector, built with panva's
// `oidc-provider` (real third-party OpenID Provider software). It stands for a national
// identity app: one client (the broker), a minimal login page of its own (the
// "interaction"), test accounts whose claims use their own names and formats
// (`national_id`, `birth_date` as DD/MM/YYYY), and `acr`/`amr` values the broker maps to its
// levels. Started by tests/e2e/upstream_oidc.rs:
//
//   IDP_PORT=18090 CLIENT_ID=broker-at-upstream CLIENT_SECRET=... \
//   REDIRECT_URI=http://127.0.0.1:18080/callback/idp node tests/js/upstream-idp.mjs
//
// With CLIENT_JWKS_URI=http://127.0.0.1:18080/connectors/idp/jwks instead of CLIENT_SECRET,
// the broker is registered for `private_key_jwt`: it signs a client assertion with its key,
// which oidc-provider fetches from that URL (the broker publishes it). With
// USERINFO_SIGNED_ALG=RS256 its UserInfo answers are signed JWTs (application/jwt).
//
// It prints `upstream-idp listening on <issuer>` once it accepts connections.

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import { escapeHtml, needFor } from './lib/common.mjs';

const PREFIX = 'upstream-idp';

const need = needFor(PREFIX);

const PORT = Number(need('IDP_PORT'));
const CLIENT_ID = need('CLIENT_ID');
const CLIENT_JWKS_URI = process.env.CLIENT_JWKS_URI || '';
const CLIENT_SECRET = CLIENT_JWKS_URI ? '' : need('CLIENT_SECRET');
const REDIRECT_URI = need('REDIRECT_URI');
// Set (e.g. RS256): the client is registered for signed UserInfo answers (application/jwt).
const USERINFO_SIGNED_ALG = process.env.USERINFO_SIGNED_ALG || '';
const ISSUER = `http://127.0.0.1:${PORT}`;

// Test accounts (password "demo"). `sub` is the provider's own identifier.
const ACCOUNTS = {
  an: {
    sub: 'idp-7c1e4b2a-an',
    password: 'demo',
    acr: 'urn:idp:loa:high',
    amr: ['pwd', 'hwk'],
    claims: {
      name: 'Nguyễn Văn An',
      family_name: 'Nguyễn',
      given_name: 'An',
      birth_date: '15/03/1990',
      national_id: '0792-0100-1234',
    },
  },
  lan: {
    sub: 'idp-93d0f6c1-lan',
    password: 'demo',
    acr: 'urn:idp:loa:substantial',
    amr: ['pwd'],
    claims: {
      name: 'Trần Thị Lan',
      family_name: 'Trần',
      given_name: 'Lan',
      birth_date: '02/11/1995',
      national_id: '001195006789',
    },
  },
};
const BY_SUB = Object.fromEntries(Object.values(ACCOUNTS).map((a) => [a.sub, a]));

function page(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:30rem}label{display:block;margin:.5rem 0}
input{padding:.4rem;font-size:1rem}button{padding:.5rem 1rem;margin:.8rem .5rem 0 0}</style>
</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`);
}

// A fresh RS256 signing key at each start.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'idp-rs256-1', alg: 'RS256', use: 'sig' };

const provider = new Provider(ISSUER, {
  clients: [
    {
      client_id: CLIENT_ID,
      ...(CLIENT_JWKS_URI
        ? { jwks_uri: CLIENT_JWKS_URI, token_endpoint_auth_method: 'private_key_jwt' }
        : { client_secret: CLIENT_SECRET, token_endpoint_auth_method: 'client_secret_basic' }),
      redirect_uris: [REDIRECT_URI],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      id_token_signed_response_alg: 'RS256',
      ...(USERINFO_SIGNED_ALG ? { userinfo_signed_response_alg: USERINFO_SIGNED_ALG } : {}),
    },
  ],
  jwks: { keys: [jwk] },
  // oidc-provider refuses to fetch from loopback addresses (SSRF protection); in this test
  // the broker's jwks_uri is on 127.0.0.1, so its requests go out without that guard.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: {
    // `amr` with every ID token, like a national identity app that tells how the citizen
    // proved who they are.
    openid: ['sub', 'amr'],
    profile: ['name', 'family_name', 'given_name', 'birth_date'],
    cccd: ['national_id'],
  },
  acrValues: ['urn:idp:loa:substantial', 'urn:idp:loa:high'],
  ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 300, IdToken: 300 },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false }, jwtUserinfo: { enabled: Boolean(USERINFO_SIGNED_ALG) } },
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
    'Sign in to the national identity app',
    `${problem ? `<p id="problem">${escapeHtml(problem)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Username <input id="username" name="username" autocomplete="username" required></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label>
<button id="submit" type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button id="cancel" type="submit">Cancel</button></form>`,
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
    // The broker is this provider's own relying party: consent is given for it.
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
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: account.sub, acr: account.acr, amr: account.amr } },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  if (req.method === 'POST' && action === 'abort') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'End-User aborted interaction' },
      { mergeWithLastSubmission: false },
    );
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

// Operators of this test need to see what the provider refused (no personal data here:
// only error codes and descriptions).
for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (ctx, err) => console.error(`${PREFIX}: ${event}: ${err?.error ?? err?.name}: ${err?.error_description ?? err?.message}${err?.error_detail ? ` (${err.error_detail})` : ''}${err?.cause ? ` (cause: ${err.cause?.message ?? err.cause})` : ''}`));
}

server.listen(PORT, '127.0.0.1', () => console.log(`${PREFIX} listening on ${ISSUER}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
