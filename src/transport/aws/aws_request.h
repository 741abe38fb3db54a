// What every signed AWS Query request of herald has, shared by the SQS and
// SNS senders and the SQS consumer source: libcurl's SigV4 signing
// parameter, the request options, and the signed headers.
//
// Signing: libcurl's CURLOPT_AWS_SIGV4 ("aws:amz:REGION:SERVICE") signs
// each request with the current credentials; it signs every header it
// sends, so the Content-Type and, for temporary credentials, the
// X-Amz-Security-Token header (added here: libcurl 7.88 does not) are
// covered by the signature.
#pragma once

#include <curl/curl.h>

#include <string>

#include "transport/aws/aws_credentials.h"
#include "transport/aws/aws_scheme.h"

namespace herald::detail {

// "aws:amz:REGION:SERVICE" for CURLOPT_AWS_SIGV4.
std::string AwsSigV4Param(const AwsOptions& o);

// Sets what every request of `o` has: POST to o.endpoint, signed with
// `sigv4` (AwsSigV4Param; must outlive the handle's use), o's timeouts and
// TLS checks, `user_agent`, http/https only.
void ConfigureAwsCurl(CURL* c, const AwsOptions& o, const std::string& sigv4,
                      const char* user_agent);

// The signed headers of a request with `creds` (the form content type,
// and X-Amz-Security-Token for temporary credentials), and the
// credentials themselves on `c`. The list is the caller's (free it after
// the request).
curl_slist* SetAwsCredentials(CURL* c, const AwsCredentials& creds);

}  // namespace herald::detail
