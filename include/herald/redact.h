// Redaction: the one function herald passes every URL, and every message
// that may quote a URL or a connection string, through before it prints,
// stores or serves it.
//
// Pure functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace herald {

// `text` with every secret replaced by "***":
//  - the password of each URL's userinfo ("scheme://user:PASSWORD@host"; a
//    userinfo without ':' is kept, it names the user);
//  - the value of each password-like parameter: in a URL query or
//    fragment, and as "key=value" in a libpq connection string or any
//    message. The names (case-insensitive) are password, passwd, pwd,
//    token, secret, access_token, api_key, apikey, sig, signature,
//    x-amz-signature, x-amz-security-token and x-amz-credential;
//  - a header value after "Authorization:" (to the end of the line, a
//    quote or a comma) and the token after "Bearer ".
// Works on a bare URL and on free text that quotes URLs anywhere (a libcurl
// message, "HTTP 400 from http://u:p@host/x?token=..."). Text without
// secrets comes back unchanged. Idempotent.
std::string RedactSecrets(std::string_view text);

}  // namespace herald
