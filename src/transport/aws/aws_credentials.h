// AWS credentials, found as the AWS CLI and SDKs find them (first match):
//  1. the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and,
//     for temporary credentials, AWS_SESSION_TOKEN;
//  2. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default
//     ~/.aws/credentials), section [PROFILE];
//  3. the config file (AWS_CONFIG_FILE, default ~/.aws/config), section
//     [profile PROFILE] ([default] for the default profile);
// where PROFILE is AWS_PROFILE, else "default". Keys aws_access_key_id,
// aws_secret_access_key, aws_session_token. Not supported: instance
// metadata (IMDS), container credentials, SSO, assume-role and
// credential_process profiles.
//
// A provider re-reads the files when they change (a rotated session
// token is picked up by the next request).
//
// Thread safety: a provider is used by one thread at a time.
#pragma once

#include <ctime>
#include <string>

#include "herald/status.h"

namespace herald::detail {

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;  // never printed
  std::string session_token;      // never printed; "" without one
  // Where they came from, for messages: "the environment (AWS_ACCESS_KEY_ID)"
  // or "profile 'x' of /root/.aws/credentials".
  std::string origin;
};

class AwsCredentialsProvider {
 public:
  // The current credentials. NotFound (its message says where herald
  // looked) when there are none; InvalidArgument for a profile with an
  // access key but no secret.
  Result<AwsCredentials> Get();

 private:
  struct FileStamp {
    std::string path;
    time_t mtime = 0;
    long long size = -1;
    bool operator==(const FileStamp&) const = default;
  };
  FileStamp stamps_[2];
  bool cached_ = false;
  Result<AwsCredentials> cache_ = Status::NotFound("not read yet");
};

}  // namespace herald::detail
