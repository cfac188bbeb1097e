// Helpers with no third-party imports, shared by every script here (upstream-idp.mjs
// included, which must not load the browser side).

/**
 * `need(name)` for a script whose messages start with `prefix`: the value of a required
 * environment variable. A missing one is a mistake of the caller, not a test failure, so
 * it stops the script at once with status 2.
 */
export function needFor(prefix) {
  return function need(name) {
    const v = process.env[name];
    if (v === undefined || v === '') {
      console.error(`${prefix}: environment variable ${name} is required`);
      process.exit(2);
    }
    return v;
  };
}

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** An error with everything openid-client and oidc-provider attach to it, for reports. */
export function describeError(e) {
  const parts = [`${e?.name ?? 'Error'}: ${e?.message ?? e}`];
  if (e?.code) parts.push(`code: ${e.code}`);
  if (e?.error) parts.push(`error: ${e.error}`);
  if (e?.error_description) parts.push(`error_description: ${e.error_description}`);
  if (e?.status) parts.push(`status: ${e.status}`);
  if (e?.cause !== undefined) {
    let cause;
    try {
      cause = e.cause instanceof Error ? `${e.cause.name}: ${e.cause.message}` : JSON.stringify(e.cause);
    } catch {
      cause = String(e.cause);
    }
    parts.push(`cause: ${cause}`);
  }
  return parts.join('\n');
}
