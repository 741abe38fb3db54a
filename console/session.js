// What the caller's token may do (GET /api/whoami), shared by the pages.
export const session = { tokens: false, name: null, scopes: [] };
export const can = (scope) => session.scopes.includes(scope) || session.scopes.includes('admin');
