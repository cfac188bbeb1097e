// The relying party of the browser tests: a tiny node:http server on 127.0.0.1 using panva's
// openid-client. GET /login starts an authorization (PKCE, state, nonce; pushed first with
// `?par=1`); GET /callback
// finishes it with every check openid-client makes, fetches UserInfo, records the outcome in
// `results` and shows it to the browser (`#claims` or `#error`).

import http from 'node:http';
import * as client from 'openid-client';
import { describeError, escapeHtml } from './common.mjs';

// Authorization parameters a scenario may choose through the query of /login.
const PASSED_THROUGH = ['ui_locales', 'acr_values'];

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5rem}pre{background:#f4f6f8;padding:1rem;border-radius:6px;white-space:pre-wrap}</style>
</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

export class RelyingParty {
  /**
   * `issuer` without a trailing slash; `scope` what /login asks for; `idTokenAlg` the
   * client's registered id_token_signed_response_alg.
   */
  constructor({ issuer, clientId, clientSecret, port, scope, idTokenAlg }) {
    Object.assign(this, { issuer, clientId, clientSecret, port, scope, idTokenAlg });
    this.origin = `http://127.0.0.1:${port}`;
    this.redirectUri = `${this.origin}/callback`;
    this.config = null; // openid-client Configuration, from discovery
    this.pending = new Map(); // state -> { nonce, verifier }
    this.results = []; // one entry per callback: { claims, userinfo, idTokenHeader } or { error }
    this.server = null;
  }

  start() {
    const server = http.createServer((req, res) => {
      const url = new URL(req.url, this.origin);
      let work;
      if (req.method === 'GET' && url.pathname === '/login') work = this.startLogin(res, url);
      else if (req.method === 'GET' && url.pathname === '/callback') work = this.finishLogin(res, url);
      else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
        return;
      }
      work.catch((e) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(describeError(e));
      });
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        this.server = server;
        resolve();
      });
    });
  }

  /** Discovery; returns the server metadata. */
  async discover() {
    this.config = await client.discovery(
      new URL(this.issuer),
      this.clientId,
      { redirect_uris: [this.redirectUri], response_types: ['code'], id_token_signed_response_alg: this.idTokenAlg },
      client.ClientSecretBasic(this.clientSecret),
      // http on loopback, and verify ID token signatures against the JWKS.
      { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
    );
    return this.config.serverMetadata();
  }

  async close() {
    if (!this.server) return;
    this.server.closeAllConnections?.();
    await new Promise((r) => this.server.close(() => r()));
  }

  async startLogin(res, url) {
    const verifier = client.randomPKCECodeVerifier();
    const challenge = await client.calculatePKCECodeChallenge(verifier);
    const state = client.randomState();
    const nonce = client.randomNonce();
    this.pending.set(state, { nonce, verifier });
    const params = {
      redirect_uri: this.redirectUri,
      response_type: 'code',
      scope: this.scope,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state,
      nonce,
    };
    for (const k of PASSED_THROUGH) {
      const v = url.searchParams.get(k);
      if (v) params[k] = v;
    }
    // /login?par=1: the request is pushed first (RFC 9126) and the browser carries only
    // client_id and request_uri.
    const target =
      url.searchParams.get('par') === '1'
        ? await client.buildAuthorizationUrlWithPAR(this.config, params)
        : client.buildAuthorizationUrl(this.config, params);
    res.writeHead(302, { location: target.href, 'cache-control': 'no-store' });
    res.end();
  }

  failed(res, status, e) {
    this.results.push({ error: describeError(e) });
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page('Login failed', `<pre id="error">${escapeHtml(describeError(e))}</pre>`));
  }

  async finishLogin(res, url) {
    const state = url.searchParams.get('state');
    const checks = state !== null ? this.pending.get(state) : undefined;
    if (!checks) {
      this.failed(res, 400, new Error(`callback with unknown or missing state: ${url.search}`));
      return;
    }
    this.pending.delete(state);
    try {
      // RFC 9207: the broker announces authorization_response_iss_parameter_supported, so
      // openid-client requires and checks `iss`; check it here too so that a broker that
      // stops sending it fails the tests even if the metadata changes.
      if (url.searchParams.get('iss') !== this.issuer && !url.searchParams.has('error')) {
        throw new Error(`authorization response iss is ${JSON.stringify(url.searchParams.get('iss'))}, expected ${this.issuer}`);
      }
      // Checks state, iss, the code exchange with client_secret_basic and PKCE, and the ID
      // token: signature against the JWKS (non-repudiation checks), iss, aud, exp, iat,
      // nonce, alg.
      const tokens = await client.authorizationCodeGrant(this.config, url, {
        pkceCodeVerifier: checks.verifier,
        expectedNonce: checks.nonce,
        expectedState: state,
        idTokenExpected: true,
      });
      const claims = tokens.claims();
      const idTokenHeader = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url').toString('utf8'));
      const userinfo = await client.fetchUserInfo(this.config, tokens.access_token, claims.sub);
      this.results.push({ claims, userinfo, idTokenHeader });
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(
        page(
          'Signed in',
          `<h2>ID token claims</h2><pre id="claims">${escapeHtml(JSON.stringify(claims, null, 2))}</pre>` +
            `<h2>UserInfo</h2><pre id="userinfo">${escapeHtml(JSON.stringify(userinfo, null, 2))}</pre>`,
        ),
      );
    } catch (e) {
      this.failed(res, 500, e);
    }
  }
}
