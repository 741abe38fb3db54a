// Signed AWS Query requests on libcurl (see aws_request.h).
#include "transport/aws/aws_request.h"

namespace herald::detail {

std::string AwsSigV4Param(const AwsOptions& o) {
  return "aws:amz:" + o.region + ":" + std::string(o.service_name());
}

void ConfigureAwsCurl(CURL* c, const AwsOptions& o, const std::string& sigv4,
                      const char* user_agent) {
  curl_easy_setopt(c, CURLOPT_URL, o.endpoint.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(o.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(o.timeout.count()));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, o.tls_verify ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, o.tls_verify ? 2L : 0L);
  if (!o.ca_file.empty())
    curl_easy_setopt(c, CURLOPT_CAINFO, o.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
}

curl_slist* SetAwsCredentials(CURL* c, const AwsCredentials& creds) {
  curl_slist* h = nullptr;
  h = curl_slist_append(
      h, "Content-Type: application/x-www-form-urlencoded; charset=utf-8");
  if (!creds.session_token.empty()) {
    std::string token = "X-Amz-Security-Token: " + creds.session_token;
    h = curl_slist_append(h, token.c_str());
  }
  // No "Expect:" line to turn 100-continue off: libcurl 7.88 lists a
  // header removed that way in SignedHeaders although it sends none, and
  // every request fails its signature check. (It adds Expect only for
  // bodies over 1 MiB, outside the signed headers.)
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_USERNAME, creds.access_key_id.c_str());
  curl_easy_setopt(c, CURLOPT_PASSWORD, creds.secret_access_key.c_str());
  return h;
}

}  // namespace herald::detail
