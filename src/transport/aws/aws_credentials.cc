// The AWS credentials chain (aws_credentials.h).
#include "transport/aws/aws_credentials.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string_view>

namespace herald::detail {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' ||
                        s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

std::string HomeFile(const char* env, const char* relative) {
  std::string path = Env(env);
  if (!path.empty()) {
    if (path[0] == '~' && (path.size() == 1 || path[1] == '/')) {
      path = Env("HOME") + path.substr(1);
    }
    return path;
  }
  return Env("HOME") + "/" + relative;
}

// The keys of section `section` of an INI file (AWS's flavour: '#' and ';'
// comments, "key = value"), or an empty map.
std::map<std::string, std::string> ReadSection(const std::string& path,
                                               const std::string& section,
                                               bool* found) {
  std::map<std::string, std::string> out;
  *found = false;
  std::ifstream f(path);
  std::string line;
  bool in = false;
  while (std::getline(f, line)) {
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[') {
      size_t close = t.find(']');
      std::string name = Trim(std::string_view(t).substr(
          1, close == std::string::npos ? std::string::npos : close - 1));
      in = name == section;
      if (in) *found = true;
      continue;
    }
    if (!in) continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) continue;
    out[Trim(std::string_view(t).substr(0, eq))] =
        Trim(std::string_view(t).substr(eq + 1));
  }
  return out;
}

}  // namespace

Result<AwsCredentials> AwsCredentialsProvider::Get() {
  std::string key = Env("AWS_ACCESS_KEY_ID");
  std::string secret = Env("AWS_SECRET_ACCESS_KEY");
  if (!key.empty() || !secret.empty()) {
    if (key.empty() || secret.empty()) {
      return Status::InvalidArgument(
          std::string(key.empty() ? "AWS_SECRET_ACCESS_KEY"
                                  : "AWS_ACCESS_KEY_ID") +
          " is set but " +
          (key.empty() ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY") +
          " is not");
    }
    AwsCredentials c;
    c.access_key_id = key;
    c.secret_access_key = secret;
    c.session_token = Env("AWS_SESSION_TOKEN");
    c.origin = "the environment (AWS_ACCESS_KEY_ID)";
    return c;
  }

  std::string profile = Env("AWS_PROFILE");
  if (profile.empty()) profile = "default";
  FileStamp now[2];
  now[0].path = HomeFile("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
  now[1].path = HomeFile("AWS_CONFIG_FILE", ".aws/config");
  for (FileStamp& s : now) {
    struct stat st;
    if (::stat(s.path.c_str(), &st) == 0) {
      s.mtime = st.st_mtime;
      s.size = static_cast<long long>(st.st_size);
    }
  }
  if (cached_ && now[0] == stamps_[0] && now[1] == stamps_[1]) {
    // The profile may have changed with the environment: part of the key.
    if (cache_.ok() &&
        cache_->origin.find("'" + profile + "'") != std::string::npos) {
      return cache_;
    }
  }
  stamps_[0] = now[0];
  stamps_[1] = now[1];
  cached_ = true;

  const std::string sections[2] = {
      profile, profile == "default" ? profile : "profile " + profile};
  for (int i = 0; i < 2; ++i) {
    bool found = false;
    auto keys = ReadSection(now[i].path, sections[i], &found);
    if (!found) continue;
    AwsCredentials c;
    c.access_key_id = keys["aws_access_key_id"];
    c.secret_access_key = keys["aws_secret_access_key"];
    c.session_token = keys["aws_session_token"];
    c.origin = "profile '" + profile + "' of " + now[i].path;
    if (c.access_key_id.empty() && c.secret_access_key.empty()) continue;
    if (c.access_key_id.empty() || c.secret_access_key.empty()) {
      cache_ = Status::InvalidArgument(c.origin + " has " +
                                       (c.access_key_id.empty()
                                            ? "aws_secret_access_key but no "
                                              "aws_access_key_id"
                                            : "aws_access_key_id but no "
                                              "aws_secret_access_key"));
      return cache_;
    }
    cache_ = c;
    return cache_;
  }
  cache_ = Status::NotFound(
      "no AWS credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not "
      "set, and profile '" +
      profile + "' has no aws_access_key_id in " + now[0].path + " or " +
      now[1].path);
  return cache_;
}

}  // namespace herald::detail
